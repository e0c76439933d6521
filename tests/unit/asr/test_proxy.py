"""Which proxy a recognizer connection goes through: the environment's, as websockets reads it, looked up once
per vendor URL rather than on every call's connection."""

from __future__ import annotations

import pytest

from ivr.asr import stream


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "_PROXIES", {})
    for name in ("http_proxy", "https_proxy", "ws_proxy", "wss_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def test_the_environment_names_the_proxy_and_no_proxy_exempts_a_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.internal:3128")
    monkeypatch.setenv("NO_PROXY", "asr.example.internal")
    assert stream._proxy("wss://cloud.example.com/asr") == "http://proxy.example.internal:3128"
    assert stream._proxy("ws://asr.example.internal:8025/asr") is None


def test_no_proxy_configured_means_a_direct_connection() -> None:
    assert stream._proxy("ws://127.0.0.1:8765/asr") is None


def test_the_lookup_is_made_once_per_url(monkeypatch: pytest.MonkeyPatch) -> None:
    assert stream._proxy("ws://vendor.example.com/asr") is None
    monkeypatch.setenv("HTTP_PROXY", "http://late.example.internal:3128")  # read at the first connection only
    assert stream._proxy("ws://vendor.example.com/asr") is None
    assert stream._proxy("ws://other.example.com/asr") == "http://late.example.internal:3128"

"""server.py: trunks and their passwords from the environment or a secrets file; one call's failure stays in
that call; drain with nothing to wait for."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from ivr.config import Settings, TrunkSettings
from ivr.dialplan.loader import load_dialplan
from ivr.server import Bridge, ConfigurationError, load_trunks
from ivr.sip.events import CallEnded, InfoDtmf, SipEvent


def _settings(tmp: Path, **kw: object) -> Settings:
    return Settings.model_validate({"cdr_path": str(tmp / "cdr.jsonl"), **kw})


@pytest.mark.parametrize(
    ("environ", "secrets", "expected"),
    [
        ({"IVR_TRUNK_CARRIER_PASSWORD": "from-env"}, None, "from-env"),
        ({}, "carrier: from-file\n", "from-file"),
        ({"IVR_TRUNK_CARRIER_PASSWORD": "from-env"}, "carrier: from-file\n", "from-env"),  # env wins
    ],
)
def test_trunk_password_sources(
    tmp_path: Path, environ: dict[str, str], secrets: str | None, expected: str
) -> None:
    extra: dict[str, object] = {}
    if secrets is not None:
        (tmp_path / "secrets.yaml").write_text(secrets)
        extra["secrets_file"] = str(tmp_path / "secrets.yaml")
    settings = _settings(
        tmp_path,
        trunks=[TrunkSettings(name="carrier", allow=["10.0.0.0/8"], username="u1")],
        trunk_allow=["127.0.0.0/8"],
        **extra,
    )
    carrier, default = load_trunks(settings, environ)
    assert (carrier.name, default.name) == ("carrier", "default")  # named trunks are matched first
    assert carrier.credentials is not None and carrier.credentials.password == expected
    assert default.credentials is None and default.contains("127.0.0.5") and not carrier.contains("127.0.0.5")
    assert expected not in repr([carrier, default, settings])


def test_username_without_password_is_an_error_not_an_open_trunk(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="IVR_TRUNK_DEFAULT_PASSWORD"):
        load_trunks(_settings(tmp_path, trunk_username="u1"), {})


def _bridge(tmp: Path) -> Bridge:
    with wave.open(str(tmp / "hold.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(1600))
    plan = tmp / "hold.yaml"
    plan.write_text("name: hold\nstart: hold\nsteps:\n  hold:\n    play: hold.wav\n    hangup: true\n")
    return Bridge(_settings(tmp, dialplan=str(plan)), load_dialplan(plan), plan)


class _Failing:
    """A call whose SIP event handler fails (a bug in one call's code)."""

    def __init__(self) -> None:
        self.ended_with: str | None = None
        self.log = _Log()

    def on_sip_event(self, event: SipEvent) -> None:
        raise RuntimeError("bug in this call")

    def end(self, cause: str) -> None:
        self.ended_with = cause


class _Healthy:
    def __init__(self) -> None:
        self.events: list[SipEvent] = []

    def on_sip_event(self, event: SipEvent) -> None:
        self.events.append(event)


class _Log:
    def exception(self, *args: object, **kw: object) -> None:
        pass


async def test_one_calls_failing_handler_ends_that_call_only(tmp_path: Path) -> None:
    bridge = _bridge(tmp_path)
    failing, healthy = _Failing(), _Healthy()
    bridge.calls["bad"] = failing  # type: ignore[assignment]
    bridge.calls["good"] = healthy  # type: ignore[assignment]
    bridge._on_sip_event(InfoDtmf("bad", "1"))  # does not raise into the transport
    bridge._on_sip_event(CallEnded("good", "remote-bye"))
    assert failing.ended_with == "internal-error"
    assert healthy.events == [CallEnded("good", "remote-bye")]


async def test_drain_with_no_calls_is_immediate_and_sets_draining(tmp_path: Path) -> None:
    bridge = _bridge(tmp_path)
    assert not bridge.draining
    report = await bridge.drain(timeout=30.0)
    assert bridge.draining and bridge.sip.ua.draining
    assert (report.finished, report.hung_up) == (0, 0)
    await bridge.close()

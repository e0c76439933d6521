"""Vendor endpoints: URL from settings or the environment, credentials from the environment only."""

from __future__ import annotations

import base64

from ivr.config import Settings, vendor_endpoint


def test_credentials_become_a_basic_handshake_header_and_never_show_in_a_repr() -> None:
    settings = Settings(asr_urls={"cpqd": "wss://speech.example/asr/ws/v3/recognize"})
    env = {"IVR_CPQD_USER": "acme", "IVR_CPQD_PASSWORD": "s3cr3t:x", "IVR_AMIVOICE_APPKEY": "APPKEY1"}
    endpoint = vendor_endpoint(settings, "cpqd", env)
    assert endpoint is not None and endpoint.url == "wss://speech.example/asr/ws/v3/recognize"
    scheme, token = endpoint.headers["Authorization"].split()
    assert scheme == "Basic" and base64.b64decode(token).decode() == "acme:s3cr3t:x"
    assert "s3cr3t" not in repr(endpoint) and token not in repr(endpoint)
    assert endpoint.credentials == {}


def test_an_appkey_goes_to_the_codec_and_the_url_can_come_from_the_environment() -> None:
    env = {"IVR_AMIVOICE_URL": "wss://acp-api.example/v1/", "IVR_AMIVOICE_APPKEY": "APPKEY1"}
    endpoint = vendor_endpoint(Settings(), "amivoice", env)
    assert endpoint is not None and endpoint.url == "wss://acp-api.example/v1/"
    assert endpoint.credentials == {"appkey": "APPKEY1"} and endpoint.headers == {}
    assert "APPKEY1" not in repr(endpoint)


def test_a_vendor_without_a_url_has_no_endpoint() -> None:
    assert vendor_endpoint(Settings(asr_urls={}), "cpqd", {}) is None

"""Bridge settings: defaults < YAML file < IVR_* environment. Secrets come only from the environment."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

BUNDLED_DIALPLAN = Path(__file__).resolve().parent.parent / "dialplans" / "demo.yaml"
EMBEDDED = "embedded"


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sip_host: str = "127.0.0.1"
    sip_port: int = 5060
    # Address written into Contact, Via and SDP c=; differs from sip_host behind NAT or when bound to 0.0.0.0.
    advertised_host: str | None = None
    rtp_host: str = "127.0.0.1"
    rtp_port_low: int = 20000
    rtp_port_high: int = 29998
    rtp_timeout: float = 30.0
    # Accept media from an address other than the SDP's (a caller behind NAT) after 5 consecutive packets,
    # before any latch; off: only the SDP address (any port of it) is ever accepted.
    rtp_nat: bool = False
    dialplan: Path = BUNDLED_DIALPLAN
    # vendor name -> WebSocket URL; "embedded" starts the local emulator as a child process when the
    # dialplan uses that vendor.
    asr_urls: dict[str, str] = Field(
        default_factory=lambda: {"mediazen": EMBEDDED, "cpqd": EMBEDDED, "amivoice": EMBEDDED}
    )
    emulator_port: int = 8765  # the first embedded emulator's port; the next ones take the ports after it
    max_calls: int = 1000
    # Sources allowed to send INVITE/REGISTER (the trunk allow-list), as CIDRs.
    trunk_allow: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    cdr_path: Path = Path("var/cdr.jsonl")
    log_format: str = "console"
    refer_timeout: float = 35.0
    # Seconds to ring (180) before answering; 0 answers at once.
    ring_time: float = 0.0
    # The Server / User-Agent header: no version by default (scanners read it); "" sends none.
    user_agent: str = "ivr"

    @field_validator("trunk_allow")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value

    @property
    def contact_host(self) -> str:
        return self.advertised_host or self.sip_host

    def allows(self, host: str) -> bool:
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(addr in ipaddress.ip_network(c, strict=False) for c in self.trunk_allow)


_ENV_PREFIX = "IVR_"


@dataclass(frozen=True)
class VendorEndpoint:
    """Where a vendor is and how to prove who we are; the secrets never appear in a repr or a log."""

    vendor: str
    url: str
    headers: Mapping[str, str] = dataclasses.field(
        default_factory=dict, repr=False
    )  # sent on the WebSocket handshake
    credentials: Mapping[str, str] = dataclasses.field(
        default_factory=dict, repr=False
    )  # for the codec (AmiVoice APPKEY)


def vendor_endpoint(
    settings: Settings, vendor: str, environ: Mapping[str, str] = os.environ
) -> VendorEndpoint | None:
    """The endpoint of ``vendor``: URL from settings (``IVR_<VENDOR>_URL`` overrides), credentials from the
    environment only: ``IVR_<VENDOR>_USER`` / ``IVR_<VENDOR>_PASSWORD`` become HTTP Basic on the handshake
    (CPQD), ``IVR_<VENDOR>_APPKEY`` goes to the codec (AmiVoice ``authorization``)."""
    prefix = f"{_ENV_PREFIX}{vendor.upper()}_"
    url = environ.get(prefix + "URL") or settings.asr_urls.get(vendor)
    if not url:
        return None
    headers: dict[str, str] = {}
    user, password = environ.get(prefix + "USER"), environ.get(prefix + "PASSWORD")
    if user is not None or password is not None:
        token = base64.b64encode(f"{user or ''}:{password or ''}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
    credentials = {"appkey": environ[prefix + "APPKEY"]} if prefix + "APPKEY" in environ else {}
    return VendorEndpoint(vendor, url, headers, credentials)


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: settings must be a mapping")
        data.update(loaded)
    for name, field in Settings.model_fields.items():
        raw = os.environ.get(_ENV_PREFIX + name.upper())
        if raw is None:
            continue
        # Lists and mappings are given as YAML in the environment, e.g. IVR_TRUNK_ALLOW='[10.0.0.0/8]'.
        data[name] = yaml.safe_load(raw) if field.annotation not in (str, Path) else raw
    data.update({k: v for k, v in overrides.items() if v is not None})
    return Settings.model_validate(data)

"""Bridge settings: defaults < YAML file < IVR_* environment. Secrets come only from the environment."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ivr.sip.connections import StreamLimits
from ivr.sip.tls import TlsListener, server_context


def bundled_dialplans() -> Path:
    """The bundled dialplans folder: the copy a wheel carries (ivr/bundled/dialplans, see setup.py), else the
    checkout's top-level dialplans/ (editable installs, `make run`)."""
    package = Path(__file__).resolve().parent
    installed = package / "bundled" / "dialplans"
    return installed if installed.is_dir() else package.parent / "dialplans"


BUNDLED_DIALPLAN = bundled_dialplans() / "demo.yaml"
EMBEDDED = "embedded"


DigestAlgorithm = Literal["SHA-256", "MD5"]
_DIGEST_ALGORITHMS: tuple[DigestAlgorithm, ...] = ("SHA-256", "MD5")


def _cidrs(value: list[str]) -> list[str]:
    for cidr in value:
        ipaddress.ip_network(cidr, strict=False)  # ValueError names the bad entry
    return value


Cidrs = Annotated[list[str], AfterValidator(_cidrs)]  # source networks, e.g. 198.51.100.0/24


class TrunkSettings(BaseModel):
    """A trunk: its source CIDRs and, for digest auth, a username (the password: env or secrets file only)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_]+$")  # IVR_TRUNK_<NAME>_PASSWORD must be a valid variable name
    allow: Cidrs
    username: str | None = None


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
    # RFC 3389 comfort noise when the caller's offer has CN: silence between prompts goes as one CN packet a
    # second instead of a G.711 frame every 20 ms. Off: continuous G.711 silence for every caller.
    rtp_comfort_noise: bool = True
    # Without CN in the offer, silence between prompts as one G.711 silence frame a second (each a talkspurt,
    # marker bit set) instead of a frame every 20 ms: half the bridge's packets when callers only listen.
    # For trunks whose media timers accept a packet a second, as with CN; off: continuous, which all take.
    rtp_sparse_silence: bool = False
    # Read every call's RTP through the compiled batch receiver (ivr/media/batchrx.py) when it is built: one
    # system call per ready socket and one Python call per audio frame. Off: the event loop's own datagram
    # transport, one callback per packet (the reference path, and the one without a C compiler).
    rtp_batch_receive: bool = True
    dialplan: Path = BUNDLED_DIALPLAN
    # vendor name -> WebSocket URL; "embedded" starts the local emulator as a child process when the
    # dialplan uses that vendor.
    asr_urls: dict[str, str] = Field(
        default_factory=lambda: {"mediazen": EMBEDDED, "cpqd": EMBEDDED, "amivoice": EMBEDDED}
    )
    emulator_port: int = 8765  # the first embedded emulator's port; the next ones take the ports after it
    # Circuit breaker per recognizer endpoint (ivr.asr.breaker): open after this many consecutive failed
    # recognitions, so calls go straight to a step's secondary; one probe after the cool-down (s).
    asr_breaker_failures: int = Field(default=3, ge=1)
    asr_breaker_cooldown: float = Field(default=30.0, ge=0)
    max_calls: int = 1000
    # Sources allowed to send INVITE/REGISTER (the trunk allow-list), as CIDRs.
    trunk_allow: Cidrs = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    # trunk_allow is the trunk "default"; with trunk_username its calls and REGISTERs need digest auth, the
    # password in IVR_TRUNK_DEFAULT_PASSWORD or secrets_file. Named trunks are matched first, in order.
    trunk_username: str | None = None
    trunks: list[TrunkSettings] = Field(default_factory=list)
    secrets_file: Path | None = None  # YAML mapping: trunk name -> password
    auth_realm: str = "ivr"
    # Digest challenges in order of preference (RFC 8760); ["MD5"] for UACs that read only the first one.
    auth_algorithms: list[DigestAlgorithm] = Field(default_factory=lambda: list(_DIGEST_ALGORITHMS))
    nonce_lifetime: float = 300.0
    # Admission per source, decided before any SIP state: INVITEs not yet completed by an ACK, and a token
    # bucket of INVITEs per second; refusals under load are 503 with Retry-After: busy_retry_after.
    max_unacked_per_source: int = 50
    call_rate_per_source: float = 20.0
    call_burst_per_source: int = 40
    busy_retry_after: int = 5
    # New INVITEs and OPTIONS get 503 (busy_retry_after) while the event loop runs this late on average
    # (seconds): the bridge is past what it can carry in real time. 0 turns the guard off.
    overload_lag: float = Field(default=0.1, ge=0)
    # Registrar bounds (RFC 3261 §10.3): Expires clamped to max, 423 below min.
    max_aors: int = 10000
    max_bindings_per_aor: int = 10
    min_expires: int = 60
    max_expires: int = 3600
    # SIGTERM: calls in progress may go on this long, then get a BYE; new INVITEs and OPTIONS get 503.
    drain_timeout: float = 30.0
    # The Retry-After of those 503s: when a caller or dispatcher may try this node again.
    drain_retry_after: int = Field(default=30, ge=0)
    # Seconds between checks of the dialplan file for a change (a changed file is reloaded, as on SIGHUP);
    # 0: only SIGHUP reloads.
    dialplan_watch_interval: float = Field(default=2.0, ge=0)
    # Where CDRs go (ivr.cdrstore): sqlite:///var/cdr.sqlite3 by default (one node), postgresql://user@host/db
    # for a cluster (the password from IVR_CDR_PASSWORD or PGPASSWORD, never here), or jsonl:///path.
    cdr_url: str | None = None
    cdr_path: Path | None = None  # older settings: a JSON-lines file, the same as cdr_url jsonl:///<path>
    # This bridge's name in its CDR rows: at start-up it marks its own rows left open by a crash interrupted,
    # never another node's. Default: host name and SIP port (several bridges may share a host).
    node_id: str | None = None
    log_format: str = "console"
    refer_timeout: float = 35.0
    # SIP over TCP/TLS (sip/connections.py): caps on open connections, and how long a message may take.
    # Each connection is a descriptor, as are each call's RTP socket and vendor WebSocket: keep
    # sip_max_connections + 2 * max_calls + 100 under `ulimit -n` (ivr serve raises the soft limit to the
    # hard one at start-up).
    sip_max_connections: int = 1000
    sip_max_connections_per_source: int = 64
    sip_header_timeout: float = 5.0
    sip_body_timeout: float = 5.0
    sip_idle_timeout: float = 120.0
    sip_max_body_bytes: int = 16 * 1024
    # SIP over TLS (RFC 3261 §26.2) on its own port when both files are set; the key's passphrase comes only
    # from IVR_SIP_TLS_KEY_PASSWORD.
    sip_tls_port: int = 5061
    sip_tls_cert_file: Path | None = None
    sip_tls_key_file: Path | None = None
    # vendor -> CA bundle (PEM) that verifies its wss:// certificate instead of the system's;
    # IVR_<VENDOR>_CA_FILE overrides. Verification itself is never turned off.
    asr_ca_files: dict[str, Path] = Field(default_factory=dict)
    # Seconds to ring (180) before answering; 0 answers at once.
    ring_time: float = 0.0
    # `say` (ivr/tts.py): speech synthesized by espeak-ng once, cached here by content (shared by bridges on
    # one host), the most recent tts_memory_bytes of it kept in memory; espeak-ng words per minute.
    tts_cache_dir: Path = Path("var/tts")
    tts_memory_bytes: int = Field(default=32 << 20, ge=0)
    tts_speed: int = Field(default=180, ge=80, le=450)
    # `webhook` (ivr/webhook.py): a reply larger than this is refused (the flow sees status and no reply).
    webhook_max_reply_bytes: int = Field(default=64 * 1024, ge=1)
    # The Server / User-Agent header: no version by default (scanners read it); "" sends none.
    user_agent: str = "ivr"
    # GET /metrics, /healthz, /readyz (ivr/health.py). Off by default: the endpoint is opt-in, and several
    # bridges on one host (tests, a node behind Kamailio) would clash on any fixed default port.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None

    @property
    def contact_host(self) -> str:
        return self.advertised_host or self.sip_host

    @property
    def cdr_store_url(self) -> str:
        if self.cdr_url:
            return self.cdr_url
        if self.cdr_path is not None:
            return f"jsonl:///{self.cdr_path}"  # an absolute path: jsonl:////abs, as sqlite URLs spell it
        return "sqlite:///var/cdr.sqlite3"

    @property
    def node(self) -> str:
        return self.node_id or f"{socket.gethostname()}:{self.sip_port}"


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
    ca_file: Path | None = None  # verifies the vendor's wss:// certificate instead of the system CAs


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
    ca_file = environ.get(prefix + "CA_FILE") or settings.asr_ca_files.get(vendor)
    return VendorEndpoint(vendor, url, headers, credentials, Path(ca_file) if ca_file else None)


def stream_limits(settings: Settings) -> StreamLimits:
    """The SIP TCP/TLS connection limits of these settings."""
    return StreamLimits(
        max_connections=settings.sip_max_connections,
        max_per_source=settings.sip_max_connections_per_source,
        header_timeout=settings.sip_header_timeout,
        body_timeout=settings.sip_body_timeout,
        idle_timeout=settings.sip_idle_timeout,
        max_body_bytes=settings.sip_max_body_bytes,
    )


def tls_listener(settings: Settings, environ: Mapping[str, str] = os.environ) -> TlsListener | None:
    """The SIP TLS listener when a certificate and key are configured (reads them: call at start-up)."""
    if settings.sip_tls_cert_file is None or settings.sip_tls_key_file is None:
        return None
    password = environ.get(f"{_ENV_PREFIX}SIP_TLS_KEY_PASSWORD")
    context = server_context(settings.sip_tls_cert_file, settings.sip_tls_key_file, password)
    return TlsListener(settings.sip_tls_port, context)


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

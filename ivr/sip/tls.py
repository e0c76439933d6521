"""SIP over TLS (RFC 3261 §26.2, RFC 5630): the server context the transport's TLS listener uses."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TlsListener", "server_context"]


@dataclass(frozen=True)
class TlsListener:
    """Where SIP over TLS listens (0: a free port) and with which certificate."""

    port: int
    context: ssl.SSLContext


def server_context(cert_file: Path, key_file: Path, password: str | None = None) -> ssl.SSLContext:
    """A server context for a trunk's TLS: TLS 1.2 or later (RFC 5630 §3 leaves the version to current
    practice; 1.0/1.1 are deprecated by RFC 8996). Reads the files: call it at start-up, not on the loop."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file, password=password)
    return context

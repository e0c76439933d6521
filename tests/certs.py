"""Self-signed certificates made at test time with the system's openssl (always on Debian; never skipped)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SelfSigned:
    """A certificate for 127.0.0.1 / localhost, its key, and the key's passphrase if it has one."""

    cert: Path
    key: Path
    password: str | None


def self_signed(folder: Path, password: str | None = None) -> SelfSigned:
    openssl = shutil.which("openssl")
    assert openssl is not None, "openssl is not installed (Debian package openssl)"
    cert, key = folder / "cert.pem", folder / "key.pem"
    secret = ["-passout", f"pass:{password}"] if password else ["-noenc"]
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            *secret,
        ],
        check=True,
        capture_output=True,
    )
    return SelfSigned(cert, key, password)

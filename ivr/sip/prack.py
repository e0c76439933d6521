"""Reliable provisional responses (RFC 3262): RSeq numbering and RAck matching, sans-I/O."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

__all__ = ["RAck", "first_rseq", "parse_rack"]


@dataclass(frozen=True)
class RAck:
    """A PRACK's RAck header: the RSeq it acknowledges and the CSeq of the response it came in (§7.2)."""

    rseq: int
    cseq: int
    method: str


def first_rseq() -> int:
    """A random starting RSeq, low enough that 2**31 - 1 is never passed within a dialog (§3)."""
    return 1 + secrets.randbelow(2**30)


def parse_rack(text: str | None) -> RAck | None:
    parts = (text or "").split()
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() and len(p) <= 10 for p in parts[:2]):
        return None
    return RAck(int(parts[0]), int(parts[1]), parts[2].upper())

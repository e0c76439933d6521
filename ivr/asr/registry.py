"""Vendor name -> codec factory, so configuration picks a recognizer by name (CPQD, AmiVoice later)."""

from __future__ import annotations

from collections.abc import Callable

from ivr.asr.base import RecognizerCodec
from ivr.asr.mediazen import MediazenCodec


def _make_mediazen(language: str, options: dict[str, object]) -> RecognizerCodec:
    chunk_ms = options.pop("chunk_ms", 100)
    if options:
        raise ValueError(f"unknown Mediazen options: {sorted(options)} (known: ['chunk_ms'])")
    if isinstance(chunk_ms, bool) or not isinstance(chunk_ms, int):
        raise ValueError(f"chunk_ms must be an int, not {chunk_ms!r}")
    return MediazenCodec(language=language, chunk_ms=chunk_ms)


_FACTORIES: dict[str, Callable[[str, dict[str, object]], RecognizerCodec]] = {
    "mediazen": _make_mediazen,
}


def known_vendors() -> list[str]:
    return sorted(_FACTORIES)


def make_codec(vendor: str, *, language: str, **options: object) -> RecognizerCodec:
    """A fresh codec for one recognition session of ``vendor``; ValueError for unknown vendors or options."""
    factory = _FACTORIES.get(vendor.lower())
    if factory is None:
        raise ValueError(f"unknown recognizer vendor {vendor!r}; known: {', '.join(known_vendors())}")
    return factory(language, dict(options))

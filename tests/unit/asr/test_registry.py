from __future__ import annotations

import pytest

from ivr.asr.mediazen import MediazenCodec
from ivr.asr.registry import known_vendors, make_codec


def test_mediazen_by_name() -> None:
    codec = make_codec("mediazen", language="en", chunk_ms=20)
    assert isinstance(codec, MediazenCodec)
    assert codec.language == "en" and codec.chunk_bytes == 320
    assert isinstance(make_codec("Mediazen", language="ko"), MediazenCodec)


def test_each_call_is_a_fresh_session() -> None:
    assert make_codec("mediazen", language="ko") is not make_codec("mediazen", language="ko")


def test_unknown_vendor_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="mediazen"):
        make_codec("acme", language="ko")
    assert "mediazen" in known_vendors()


def test_bad_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="colour"):
        make_codec("mediazen", language="ko", colour="red")
    with pytest.raises(ValueError, match="chunk_ms"):
        make_codec("mediazen", language="ko", chunk_ms="100")
    with pytest.raises(ValueError, match="language"):
        make_codec("mediazen", language="fr")

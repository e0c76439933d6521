from __future__ import annotations

import pytest

from ivr.asr.base import AudioFormat, Classifier
from ivr.asr.mediazen import MediazenCodec
from ivr.asr.registry import check_step, known_vendors, make_codec


def test_mediazen_by_name() -> None:
    codec = make_codec("mediazen", {"chunk_ms": 20})
    assert isinstance(codec, MediazenCodec) and codec.chunk_ms == 20
    assert isinstance(make_codec("Mediazen"), MediazenCodec)


def test_each_call_is_a_fresh_session() -> None:
    assert make_codec("mediazen") is not make_codec("mediazen")


def test_unknown_vendor_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="mediazen"):
        make_codec("acme")
    assert "mediazen" in known_vendors()


def test_bad_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="colour"):
        make_codec("mediazen", {"colour": "red"})
    with pytest.raises(ValueError, match="chunk_ms"):
        make_codec("mediazen", {"chunk_ms": "100"})


def test_check_step_says_what_the_vendor_cannot_do() -> None:
    assert check_step("mediazen", "ja", AudioFormat.PCM16, {}) == []  # sent as jp
    assert check_step("mediazen", "ko-KR", AudioFormat.PCM16, {"chunk_ms": 40}) == []
    [(key, language)] = check_step("mediazen", "pt-BR", AudioFormat.PCM16, {})
    assert key == "language" and "language 'pt-BR'" in language and "ko, en, ja" in language
    [(key, audio)] = check_step("mediazen", "ko", AudioFormat.PCMA, {})
    assert key == "audio" and "pcma" in audio
    [(key, option)] = check_step("mediazen", "ko", AudioFormat.PCM16, {"speed": 2})
    assert key == "options" and "speed" in option
    [(key, vendor)] = check_step("watson", "pt-BR", AudioFormat.PCM16, {})
    assert key == "vendor" and "not available" in vendor and "amivoice, cpqd, mediazen" in vendor
    # Speaker classifiers: CPQD 2.4 reports all three, the others none.
    assert check_step("cpqd", "pt-BR", AudioFormat.PCM16, {}, frozenset(Classifier)) == []
    [(key, lacking)] = check_step("mediazen", "ko", AudioFormat.PCM16, {}, frozenset({Classifier.EMOTION}))
    assert key == "classifiers" and "emotion" in lacking and "reports: none" in lacking
    # G.711 passes through to AmiVoice only.
    assert check_step("amivoice", "ja", AudioFormat.PCMU, {}) == []
    [(key, _)] = check_step("cpqd", "pt-BR", AudioFormat.PCMU, {})
    assert key == "audio"


def test_codecs_get_the_call_channel_and_the_appkey() -> None:
    cpqd_codec = make_codec("cpqd", {}, channel_id="698dc19d489c4e4db73e28a713eab07b")
    cpqd_codec.open(0.0)
    [create] = cpqd_codec.data_to_send()
    text = create.decode() if isinstance(create, bytes) else create
    assert "CREATE_SESSION" in text and "Channel-Identifier: 698dc19d489c4e4db73e28a713eab07b" in text
    ami = make_codec("amivoice", {}, appkey="SECRET-KEY")
    assert "SECRET-KEY" not in repr(ami)


def test_only_cpqd_takes_a_grammar_file() -> None:
    assert check_step("cpqd", "pt-BR", AudioFormat.PCM16, {}, srgs=True) == []
    for vendor, language in (("mediazen", "ko"), ("amivoice", "ja")):
        [(key, message)] = check_step(vendor, language, AudioFormat.PCM16, {}, srgs=True)
        assert key == "grammar_file" and "grammar" in message
        assert check_step(vendor, language, AudioFormat.PCM16, {}) == []

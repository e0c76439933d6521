"""Vendor name -> what the rest of the bridge may know of it: a codec factory, its languages, its options.

``ivr check`` asks here whether a vendor can do what a dialplan step wants, so a step that would fail at
call time (a language the vendor lacks, an unknown option) is refused at load with ``file:line``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ivr.asr import amivoice, cpqd, mediazen
from ivr.asr.base import AudioFormat, Classifier, OptionValue, RecognizerCodec


@dataclass(frozen=True)
class VendorInfo:
    """One recognizer vendor as configuration and ``ivr check`` see it."""

    name: str
    language: Callable[[str], str | None]  # BCP 47 -> the vendor's code, None if it has none
    languages: tuple[str, ...]  # what to suggest in an error message
    audio_formats: frozenset[AudioFormat]
    classifiers: frozenset[Classifier]  # speaker classifiers it can run beside recognition
    srgs: (
        str | None
    )  # None when it takes SRGS grammars; else why not (a grammar_file would be ignored or refused)
    validate_options: Callable[[dict[str, object]], Mapping[str, object]]  # ValueError when wrong
    # a fresh codec for one connection: the step's options, the call's Channel-Identifier, the credentials
    make: Callable[[Mapping[str, object], str, Mapping[str, str]], RecognizerCodec]


def _make_mediazen(
    options: Mapping[str, object], channel_id: str, credentials: Mapping[str, str]
) -> RecognizerCodec:
    return mediazen.MediazenCodec(**mediazen.validate_options(dict(options)))


def _make_amivoice(
    options: Mapping[str, object], channel_id: str, credentials: Mapping[str, str]
) -> RecognizerCodec:
    return amivoice.AmiVoiceCodec.from_options(options, authorization=credentials.get("appkey", ""))


def _make_cpqd(
    options: Mapping[str, object], channel_id: str, credentials: Mapping[str, str]
) -> RecognizerCodec:
    # Basic credentials travel on the handshake (the connector), not in a message.
    return cpqd.codec_from_options(options, channel_id=channel_id)


_VENDORS: dict[str, VendorInfo] = {
    "mediazen": VendorInfo(
        name="mediazen",
        language=mediazen.vendor_language,
        languages=("ko", "en", "ja"),
        audio_formats=frozenset({AudioFormat.PCM16}),
        classifiers=frozenset(),
        srgs="Mediazen recognizes free speech and takes no grammar (use phrases and routes instead)",
        validate_options=mediazen.validate_options,
        make=_make_mediazen,
    ),
    "cpqd": VendorInfo(
        name="cpqd",
        language=cpqd.vendor_language,
        languages=tuple(cpqd.LANGUAGES),
        audio_formats=cpqd.AUDIO_FORMATS,
        classifiers=frozenset(Classifier),
        srgs=None,
        validate_options=cpqd.validate_options,
        make=_make_cpqd,
    ),
    "amivoice": VendorInfo(
        name="amivoice",
        language=amivoice.vendor_language,
        languages=tuple(amivoice.LANGUAGES),
        audio_formats=amivoice.AUDIO_FORMATS,
        classifiers=frozenset(),
        srgs="AmiVoice takes no SRGS grammar (its rule grammars are registered with the vendor; name one"
        " with grammar:)",
        validate_options=amivoice.validate_options,
        make=_make_amivoice,
    ),
}


def known_vendors() -> list[str]:
    return sorted(_VENDORS)


def vendor_info(vendor: str) -> VendorInfo:
    info = _VENDORS.get(vendor.lower())
    if info is None:
        raise ValueError(f"unknown recognizer vendor {vendor!r}; known: {', '.join(known_vendors())}")
    return info


def make_codec(
    vendor: str,
    options: Mapping[str, OptionValue] | None = None,
    *,
    channel_id: str = "",
    **credentials: str,
) -> RecognizerCodec:
    """A fresh codec for one connection to ``vendor``; ValueError for unknown vendors or options.

    ``channel_id`` is the call's Channel-Identifier, which CPQD sends on every CREATE_SESSION of the call.
    ``credentials`` (from the environment: ``appkey``, the AmiVoice APPKEY) go to codecs that put them in
    a message; Mediazen has none."""
    return vendor_info(vendor).make(dict(options or {}), channel_id, credentials)


def check_step(
    vendor: str,
    language: str,
    audio: AudioFormat,
    options: Mapping[str, object],
    classifiers: frozenset[Classifier] = frozenset(),
    *,
    srgs: bool = False,
) -> list[tuple[str, str]]:
    """What ``vendor`` cannot do of a listen step: (the key at fault: vendor, language, audio, options,
    classifiers or grammar_file, the message), one per problem; empty when it can. ``srgs``: the step has
    a grammar_file."""
    info = _VENDORS.get(vendor.lower())
    if info is None:
        return [
            (
                "vendor",
                f"recognizer vendor '{vendor}' is not available in this build "
                f"(available: {', '.join(known_vendors())})",
            )
        ]
    problems: list[tuple[str, str]] = []
    if info.language(language) is None:
        offered = ", ".join(info.languages)
        problems.append(
            ("language", f"{vendor} does not recognize language '{language}' (it offers {offered})")
        )
    if audio not in info.audio_formats:
        offered = ", ".join(sorted(f.value for f in info.audio_formats))
        problems.append(("audio", f"{vendor} cannot take {audio.value} audio (it takes {offered})"))
    lacking = classifiers - info.classifiers
    if lacking:
        names = ", ".join(sorted(c.value for c in lacking))
        offered = ", ".join(sorted(c.value for c in info.classifiers)) or "none"
        problems.append(
            ("classifiers", f"{vendor} does not report the caller's {names} (it reports: {offered})")
        )
    if srgs and info.srgs is not None:
        problems.append(("grammar_file", info.srgs))
    try:
        info.validate_options(dict(options))
    except ValueError as exc:
        problems.append(("options", str(exc)))
    return problems

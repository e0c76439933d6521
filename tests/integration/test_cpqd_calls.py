"""Brazilian-Portuguese calls on CPQD over real SIP/RTP: sipp callers, `ivr serve` on the bundled bank
dialplan, the CPQD emulator (its pt-BR matcher and its prosody classifier).

What is asserted from the emulator's side comes from its status endpoint: the sessions each
Channel-Identifier opened and the recognitions they ran."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ivr.dialplan.loader import load_dialplan
from tests.integration.harness import REPO, bridge, emulator, run_sipp, scenario_with, speak
from tests.tools import SHARED

pytestmark = pytest.mark.integration

BANCO = REPO / "dialplans" / "banco.yaml"
RECORDINGS = SHARED / "audio" / "cpqd-sdk"
AGITATED = ("-a", "180", "-p", "80", "-s", "190")  # TOOLBOX.md: loud, high, fast
PORTUGUESE_ONLY = ("--language", "pt-BR")


@pytest.fixture(scope="module")
def cpqd_url() -> Iterator[str]:
    with emulator("cpqd", load_dialplan(BANCO).phrases(), *PORTUGUESE_ONLY) as url:
        yield url


def channel_status(url: str, channel: str) -> dict[str, object]:
    base = url.split("/asr/")[0].replace("ws://", "http://")
    with urllib.request.urlopen(f"{base}/status/channels/{channel}", timeout=5) as reply:
        return json.loads(reply.read())  # type: ignore[no-any-return]


def call(tmp: Path, url: str, scenario: str, audio: Path) -> tuple[dict[str, Any], str]:
    """One sipp call on the bank dialplan; its CDR and what sipp saw (messages log)."""
    script = scenario_with(scenario, tmp, AUDIO=str(audio))
    with bridge(tmp, url, asr_urls={"cpqd": url}, dialplan=str(BANCO)) as b:
        result = run_sipp(script, b.port, tmp)
        assert result.returncode == 0, result.output + b.log()
        (cdr,) = b.wait_cdrs(1)
    return cdr, (tmp / "sipp_messages.log").read_text(errors="replace")


def refer_of(messages: str) -> str:
    match = re.search(r"REFER sip:.*?(?=\n\n|\r\n\r\n)", messages, re.S)
    assert match, messages[-3000:]
    return match.group(0)


def test_a_calm_caller_gets_the_menu(tmp_path: Path, cpqd_url: str) -> None:
    audio = speak("consultar saldo", tmp_path / "calm.ulaw", voice="pt-br", ulaw_raw=True, lead=0.5)
    cdr, _ = call(tmp_path, cpqd_url, "speech_hangup.xml", audio)
    assert cdr["route"] == ["saudacao<start", "saldo<say:saldo"], cdr
    [turn] = cdr["transcripts"]  # type: ignore[misc]
    assert turn["emotion"]["label"] == "neutro", turn
    assert turn["age"] is not None and turn["gender"] is not None  # all three classifiers were asked for


def test_the_same_words_agitated_go_to_the_priority_queue_with_the_emotion_headers(
    tmp_path: Path, cpqd_url: str
) -> None:
    audio = speak(
        "consultar saldo", tmp_path / "angry.ulaw", voice="pt-br", args=AGITATED, ulaw_raw=True, lead=0.5
    )
    cdr, messages = call(tmp_path, cpqd_url, "speech_agent.xml", audio)
    assert cdr["route"][-1].startswith("prioridade<emotion:"), cdr  # type: ignore[index]
    assert cdr["transfer_target"] == "sip:prioridade@127.0.0.1:5070", cdr
    refer = refer_of(messages)
    channel = cdr["channel_id"]
    assert f"X-IVR-Channel-Id: {channel}" in refer
    emotion = re.search(r"X-IVR-Emotion: (\w+);p=[\d.]+;group=negativo_ativado", refer)
    assert emotion and emotion.group(1) in ("irritado", "enojado", "frustrado"), refer
    assert "X-IVR-Transcript: consultar saldo" in refer
    uui = re.search(r"User-to-User: ([0-9a-f]+);encoding=hex", refer)
    assert uui and bytes.fromhex(uui.group(1))[1:].decode().startswith(f"ch={channel};em="), refer
    assert f"X-IVR-Channel-Id%3D{channel}" in refer or f"X-IVR-Channel-Id={channel}" in refer  # Refer-To


def two_turns(tmp: Path, first: Path, second: Path) -> Path:
    """One µ-law stream: the first answer, room for the next prompt to start, the second answer."""
    out = tmp / "two-turns.ulaw"
    subprocess.run(
        ["sox", "-t", "ul", "-r", "8000", str(first), "-t", "ul", "-r", "8000", str(second),
         "-t", "ul", str(out)],
        check=True,
    )  # fmt: skip
    return out


def test_two_listen_steps_share_one_cpqd_session_with_the_calls_channel_identifier(
    tmp_path: Path, cpqd_url: str
) -> None:
    first = speak("cartão de crédito", tmp_path / "card.ulaw", voice="pt-br", ulaw_raw=True, lead=0.5, tail=4)
    second = speak("sim", tmp_path / "yes.ulaw", voice="pt-br", ulaw_raw=True, lead=0.2, tail=2)
    cdr, _ = call(tmp_path, cpqd_url, "speech_hangup.xml", two_turns(tmp_path, first, second))
    assert cdr["route"] == ["saudacao<start", "cartao<say:cartão", "bloqueado<say:sim"], cdr
    status = channel_status(cpqd_url, str(cdr["channel_id"]))
    assert status["sessions_created"] == 1 and status["recognitions"] == 2, status
    assert status["sessions_released"] == 1, status  # released at hang-up
    verify = status["verify_buffer"]
    assert isinstance(verify, dict) and verify["utterances"] == 1, status  # only the first step keeps it


def test_a_real_recording_answers_the_second_step(tmp_path: Path, cpqd_url: str) -> None:
    first = speak("cartão de crédito", tmp_path / "card.ulaw", voice="pt-br", ulaw_raw=True, lead=0.5, tail=4)
    yes = tmp_path / "yes-real.ulaw"
    subprocess.run(
        [
            "sox",
            str(RECORDINGS / "yes-8k.wav"),
            "-r",
            "8000",
            "-c",
            "1",
            "-t",
            "ul",
            str(yes),
            "pad",
            "0",
            "2",
        ],
        check=True,
    )
    cdr, _ = call(tmp_path, cpqd_url, "speech_hangup.xml", two_turns(tmp_path, first, yes))
    assert cdr["route"][-1] == "bloqueado<say:sim", cdr


@pytest.mark.parametrize("fault", ["start-failure", "invalid-action", "close-mid-utterance", "no-reply"])
def test_a_failing_vendor_gets_the_caller_the_fallback_not_dead_air(tmp_path: Path, fault: str) -> None:
    audio = speak("consultar saldo", tmp_path / "calm.ulaw", voice="pt-br", ulaw_raw=True, lead=0.5)
    phrases = load_dialplan(BANCO).phrases()
    with emulator("cpqd", phrases, *PORTUGUESE_ONLY, "--fault", fault) as url:
        cdr, _ = call(tmp_path, url, "speech_agent.xml", audio)
    # The prompt played on and the no-input timer ran out: the no_input target, an agent, not silence.
    assert cdr["route"] == ["saudacao<start", "atendente<recognizer_failed"], cdr
    assert cdr["transfer_status"] == 200 and cdr["hangup_cause"] == "transferred", cdr

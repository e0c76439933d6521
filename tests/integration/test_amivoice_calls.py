"""Japanese calls on AmiVoice over real SIP/RTP: sipp callers, `ivr serve`, the AmiVoice emulator.

The bundled `takuhai.yaml` passes the caller's G.711 through (MULAW, no decode on the bridge); a copy set to
`audio: pcm16` checks the decoded path (LSB8K). The emulator's Japanese is a best-effort local matcher: the
tests speak the phrase it recognizes reliably (オペレーター, through a µ-law line as a trunk delivers it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr.dialplan.loader import load_dialplan
from tests.integration.harness import REPO, bridge, emulator, run_sipp, scenario_with, speak

pytestmark = pytest.mark.integration

TAKUHAI = REPO / "dialplans" / "takuhai.yaml"


@pytest.fixture(scope="module")
def amivoice_url() -> Iterator[str]:
    with emulator("amivoice", load_dialplan(TAKUHAI).phrases(), "--language", "ja") as url:
        yield url


def decoded_copy(tmp: Path) -> Path:
    """takuhai.yaml with its steps sending decoded PCM (LSB8K) instead of the caller's G.711."""
    text = TAKUHAI.read_text(encoding="utf-8").replace("{audio: g711,", "{audio: pcm16,")
    assert text.count("{audio: pcm16,") == 2
    path = tmp / "takuhai-pcm16.yaml"
    path.write_text(text, encoding="utf-8")
    (tmp / "prompts").symlink_to(TAKUHAI.parent / "prompts")  # prompts/ beside the dialplan
    return path


@pytest.mark.parametrize(("audio", "sent"), [("g711", "pcmu"), ("pcm16", "pcm16")])
def test_a_spoken_request_for_an_operator_is_transferred(
    tmp_path: Path, amivoice_url: str, audio: str, sent: str
) -> None:
    dialplan = TAKUHAI if audio == "g711" else decoded_copy(tmp_path)
    speech = speak("オペレーター", tmp_path / "op.ulaw", voice="ja", ulaw_raw=True, lead=0.5, tail=2.0)
    scenario = scenario_with("speech_agent.xml", tmp_path, AUDIO=str(speech))
    with bridge(tmp_path, amivoice_url, asr_urls={"amivoice": amivoice_url}, dialplan=str(dialplan)) as b:
        result = run_sipp(scenario, b.port, tmp_path)
        assert result.returncode == 0, result.output + b.log()
        (cdr,) = b.wait_cdrs(1)
    assert cdr["route"] == ["uketsuke<start", "operator<say:オペレーター"], cdr
    assert cdr["transcripts"][0]["text"] == "オペレーター", cdr
    assert cdr["transfer_target"] == "sip:operator@127.0.0.1:5070" and cdr["transfer_status"] == 200
    assert cdr["codec"] == "PCMU"
    # pcmu: the caller's µ-law went out as received (MULAW), with no decode on the bridge
    assert f'"audio": "{sent}"' in b.log(), b.log()

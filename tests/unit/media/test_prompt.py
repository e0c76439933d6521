import struct
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from ivr.media import g711
from ivr.media.prompt import PromptError, frames, load_prompt
from tests.tools import require_tool


def tone(rate: int, seconds: float = 0.5, freq: float = 400.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def write_wav(path: Path, samples: np.ndarray, rate: int, width: int, channels: int = 1) -> Path:
    scale = float(2 ** (8 * width - 1) - 1)
    ints = np.round(samples * scale).astype(np.int64)
    if channels == 2:
        ints = np.repeat(ints, 2)
    if width == 1:
        raw = (ints + 128).astype(np.uint8).tobytes()
    elif width == 3:
        raw = b"".join(int(v).to_bytes(3, "little", signed=True) for v in ints)
    else:
        raw = ints.astype(f"<i{width}").tobytes()
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(raw)
    return path


def write_g711_wav(path: Path, samples: np.ndarray, tag: int) -> Path:
    pcm = np.round(samples * 32767).astype("<i2").tobytes()
    data = g711.encode(pcm, g711.PCMU if tag == 7 else g711.PCMA)
    fmt = struct.pack("<HHIIHHH", tag, 1, 8000, 8000, 1, 8, 0)
    fact = struct.pack("<I", len(data))
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"fact" + struct.pack("<I", 4) + fact
    body += b"data" + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b"")
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def check_tone(pcm: bytes, seconds: float = 0.5, freq: float = 400.0, amplitude: float = 0.5) -> None:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768
    assert abs(len(samples) - 8000 * seconds) <= 2
    peak = np.abs(samples[100:-100]).max()
    assert peak == pytest.approx(amplitude, rel=0.05)
    crossings = np.count_nonzero(np.diff(np.signbit(samples[100:-100])))
    assert crossings / 2 / ((len(samples) - 200) / 8000) == pytest.approx(freq, rel=0.05)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
@pytest.mark.parametrize("rate", [8000, 16000, 44100])
def test_pcm_widths_and_rates(tmp_path: Path, width: int, rate: int) -> None:
    check_tone(load_prompt(write_wav(tmp_path / "p.wav", tone(rate), rate, width)))


def test_stereo_is_mixed_to_mono(tmp_path: Path) -> None:
    check_tone(load_prompt(write_wav(tmp_path / "s.wav", tone(16000), 16000, 2, channels=2)))


@pytest.mark.parametrize("tag", [6, 7])
def test_g711_wav_format_tags(tmp_path: Path, tag: int) -> None:
    check_tone(load_prompt(write_g711_wav(tmp_path / "law.wav", tone(8000), tag)))


@pytest.mark.parametrize("args", [["-e", "u-law"], ["-e", "a-law"], ["-b", "24"], ["-c", "2", "-b", "32"]])
def test_files_written_by_sox(tmp_path: Path, args: list[str]) -> None:
    require_tool("sox")
    source = write_wav(tmp_path / "in.wav", tone(22050), 22050, 2)
    out = tmp_path / "out.wav"
    subprocess.run(["sox", str(source), *args, str(out)], check=True)
    check_tone(load_prompt(out))


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.wav"
    with pytest.raises(PromptError, match=r"missing\.wav"):
        load_prompt(missing)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"not a wav at all")
    with pytest.raises(PromptError, match=r"garbage\.wav"):
        load_prompt(garbage)
    float_wav = tmp_path / "float.wav"
    fmt = struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32)
    body = b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 4) + b"\x00" * 4
    float_wav.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(PromptError, match=r"float\.wav.*format tag 3"):
        load_prompt(float_wav)


@pytest.mark.parametrize("payload_type", [g711.PCMU, g711.PCMA])
def test_frames_pad_last_with_silence(payload_type: int) -> None:
    pcm = np.full(400, 1000, dtype="<i2").tobytes()
    out = frames(pcm, payload_type)
    assert [len(f) for f in out] == [160, 160, 160]
    assert out[2][80:] == g711.silence(payload_type, 80)
    assert b"".join(out)[:400] == g711.encode(pcm, payload_type)
    assert frames(b"", payload_type) == []
    assert len(frames(pcm, payload_type, samples_per_frame=80)) == 5

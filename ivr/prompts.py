"""Generate a dialplan's missing prompt WAVs from its `prompts:` text table.

    python -m ivr.prompts dialplans/demo.yaml [--force] [--speed 180]

espeak-ng speaks the text in the dialplan's ASR language; sox trims the leading/trailing silence espeak adds
and writes 8 kHz mono 16-bit PCM, the format the trunk plays without resampling. The generated files are
meant to be committed, so running a dialplan never needs espeak.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import wave
from collections.abc import Sequence
from pathlib import Path

from ivr.dialplan import Dialplan, DialplanError, load_dialplan

__all__ = ["main", "referenced_prompts", "synthesize"]


def referenced_prompts(dialplan: Dialplan) -> list[str]:
    """Every prompt file the steps play (sub-flows' too), in order of appearance."""
    steps = [step for flow in dialplan.flows() for step in flow.steps.values()]
    return list(dict.fromkeys(p for step in steps for _, p in step.prompts()))


def synthesize(text: str, out: Path, *, voice: str, speed: int = 180) -> float:
    """Speak `text` into `out` (8 kHz mono 16-bit WAV); return its duration in seconds."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed (Debian: apt-get install {tool})")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "espeak.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text],
            check=True,
            capture_output=True,
            timeout=60,
        )
        trim = ["silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02", "0.5%", "reverse"]
        subprocess.run(
            ["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(out), *trim],
            check=True,
            capture_output=True,
            timeout=60,
        )
    with wave.open(str(out), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ivr.prompts", description=__doc__.splitlines()[0])
    parser.add_argument("dialplan", type=Path)
    parser.add_argument("--force", action="store_true", help="regenerate prompts that already exist")
    parser.add_argument("--speed", type=int, default=180, help="espeak-ng words per minute (default 180)")
    args = parser.parse_args(argv)
    try:
        dialplan = load_dialplan(args.dialplan, check_prompts=False)
    except DialplanError as exc:
        print(exc, file=sys.stderr)
        return 2
    status = 0
    # Each flow (the dialplan, then every sub-flow it calls) speaks its own prompts: texts from its own
    # `prompts:`, files beside it, in its language.
    for flow in dialplan.flows():
        voice = flow.asr.language.lower().replace("_", "-")
        steps = flow.steps.values()
        for name in dict.fromkeys(p for step in steps for _, p in step.prompts()):
            out = flow.prompt_path(name)
            if out.exists() and not args.force:
                continue
            text = flow.prompts.get(name)
            if text is None:
                where = str(args.dialplan) + ("" if flow is dialplan else f" (sub-flow '{flow.name}')")
                print(f"{where}: no text for '{name}' under prompts:, cannot generate it", file=sys.stderr)
                status = 1
                continue
            seconds = synthesize(text, out, voice=voice, speed=args.speed)
            print(f"wrote {out} ({seconds:.1f} s)")
    return status


if __name__ == "__main__":
    sys.exit(main())

"""Runs case files: finds them, starts a bridge per dialplan, places the calls concurrently, judges them."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.dialplan.loader import DialplanError, load_dialplan
from ivr.dialplan.schema import Dialplan
from ivr.media import g711
from ivr.media.prompt import PromptError, frames, load_prompt
from ivr.testing.audio import Synthesizer
from ivr.testing.bridge import BridgeError, TestBridge
from ivr.testing.caller import ScriptedCall
from ivr.testing.cases import SUFFIX, CaseFileError, LoadedCases, cases_of, declared_dialplan, load_cases
from ivr.testing.report import (
    CaseResult,
    Coverage,
    RunReport,
    SuiteResult,
    evaluate,
    infer_steps,
    steps_of,
)


class UsageError(ValueError):
    """A path that names no case file."""


def find_case_files(paths: Sequence[Path]) -> list[Path]:
    """X.test.yaml files: named, found in folders, or beside a named dialplan X.yaml."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(path.rglob(f"*{SUFFIX}"))
        elif not path.exists():
            raise UsageError(f"{path}: no such case file, dialplan or folder")
        elif path.name.endswith(SUFFIX):
            found.append(path)
        elif path.suffix in (".yaml", ".yml"):
            beside = cases_of(path)
            if not beside.exists():
                raise UsageError(f"{path}: no case file {beside.name} beside it")
            found.append(beside)
        else:
            raise UsageError(f"{path}: neither a case file (*{SUFFIX}) nor a dialplan nor a folder")
    if not found:
        raise UsageError(f"no case files (*{SUFFIX}) in {', '.join(map(str, paths))}")
    return list(dict.fromkeys(found))


def _prompt_frames(dialplan: Dialplan) -> dict[str, list[bytes]]:
    """µ-law frames of every prompt file the dialplan plays, as the bridge frames them."""
    # Text prompts (`say:`) are synthesized by the bridge: no file to match them by (the caller still waits
    # for them to end).
    out: dict[str, list[bytes]] = {}
    for flow in dialplan.flows():
        for name in sorted({name for step in flow.steps.values() for _, name in step.prompts()}):
            with contextlib.suppress(PromptError):
                out.setdefault(name, frames(load_prompt(flow.prompt_path(name)), g711.PCMU))
    return out


@dataclass
class _Suite:
    result: SuiteResult
    loaded: LoadedCases | None = None
    bridge: TestBridge | None = None
    address: tuple[str, int] | None = None
    prompts: dict[str, list[bytes]] | None = None
    records: list[dict[str, Any]] = field(default_factory=list)


def _load(path: Path) -> _Suite:
    dialplan_path = declared_dialplan(path)
    suite = _Suite(SuiteResult(str(path), str(dialplan_path)))
    try:
        dialplan = load_dialplan(dialplan_path)
    except DialplanError as exc:
        suite.result.problems = [f"dialplan {dialplan_path}: {line}" for line in str(exc).splitlines()]
        return suite
    except OSError as exc:
        suite.result.problems = [f"{path}: cannot read its dialplan {dialplan_path}: {exc}"]
        return suite
    try:
        suite.loaded = load_cases(path, dialplan, dialplan_path)
    except CaseFileError as exc:
        suite.result.problems = [str(p) for p in exc.problems]
        return suite
    suite.prompts = _prompt_frames(dialplan)
    return suite


class Runner:
    """One `ivr test` run."""

    def __init__(
        self, jobs: int = 4, bridge: tuple[str, int] | None = None, workdir: Path | None = None,
        synthesizer: Synthesizer | None = None,
    ) -> None:  # fmt: skip
        self.jobs = max(1, jobs)
        self.external = bridge
        self.workdir = workdir
        self.synthesizer = synthesizer or Synthesizer()

    async def run(self, paths: Sequence[Path]) -> RunReport:
        loop = asyncio.get_running_loop()
        started = loop.time()
        files = find_case_files(paths)
        suites = await asyncio.gather(*(asyncio.to_thread(_load, path) for path in files))
        work = self.workdir or Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="ivr-test-"))
        runnable = [s for s in suites if s.loaded is not None]
        try:
            await asyncio.gather(*(self._start(s, work / f"bridge-{i}") for i, s in enumerate(runnable)))
            slots = asyncio.Semaphore(self.jobs)
            jobs = [
                self._case(s, name, slots)
                for s in runnable
                if s.address is not None and s.loaded is not None
                for name in s.loaded.cases.cases
            ]
            results = await asyncio.gather(*jobs)
        finally:
            await asyncio.gather(*(s.bridge.stop() for s in runnable if s.bridge is not None))
            if self.workdir is None:  # bridge logs and CDRs are kept only in a given --workdir
                await asyncio.to_thread(shutil.rmtree, work, True)
        for suite, result, record in results:
            suite.result.cases.append(result)
            if record is not None:
                suite.records.append(record)
        for suite in runnable:
            if self.external is None and suite.address is not None and suite.loaded is not None:
                suite.result.coverage = Coverage.of(suite.loaded.dialplan, suite.records)
        shown = f"{self.external[0]}:{self.external[1]}" if self.external else ""
        return RunReport([s.result for s in suites], loop.time() - started, shown)

    async def _start(self, suite: _Suite, workdir: Path) -> None:
        if self.external is not None:
            suite.address = self.external
            return
        assert suite.loaded is not None
        suite.bridge = TestBridge(suite.loaded.dialplan_path, suite.loaded.dialplan, workdir)
        try:
            await suite.bridge.start()
        except BridgeError as exc:
            suite.result.problems.append(f"{suite.loaded.dialplan_path}: bridge did not start: {exc}")
            return
        suite.address = ("127.0.0.1", suite.bridge.port)

    async def _case(
        self, suite: _Suite, name: str, slots: asyncio.Semaphore
    ) -> tuple[_Suite, CaseResult, dict[str, Any] | None]:
        assert suite.loaded is not None and suite.address is not None
        case = suite.loaded.cases.cases[name]
        language = suite.loaded.dialplan.asr.language
        async with slots:
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:  # synthesized before the call, so speaking starts the moment its turn comes
                speech = {
                    i: await self.synthesizer.speech(turn.say, language, turn.style)
                    for i, turn in enumerate(case.turns) if turn.say is not None
                }  # fmt: skip
            except Exception as exc:
                return suite, CaseResult(name, (f"speech synthesis: {exc}",), (), "", None, 0.0), None
            call = ScriptedCall(case, suite.address, speech, suite.prompts or {})
            outcome = await call.run()
            record = None
            if suite.bridge is not None and outcome.answered is not None:
                record = await suite.bridge.record(outcome.call_id)
            inferred = None
            if record is None and suite.bridge is None:  # --bridge: the caller's view is all there is
                inferred = infer_steps(suite.loaded.dialplan, [h.name for h in outcome.prompts])
                at = outcome.trace[-1][0] if outcome.trace else 0.0
                outcome.trace.append((at, f"steps inferred from the prompts heard (no CDR): {inferred}"))
            failures = evaluate(case, outcome, record, inferred)
            steps = tuple(steps_of(record)) if record is not None else None
            if record is not None:
                at = outcome.trace[-1][0] if outcome.trace else 0.0
                outcome.trace.append((at, f"CDR: route {' > '.join(record.get('route') or [])}, "
                                      f"hangup_cause {record.get('hangup_cause')}"))  # fmt: skip
            result = CaseResult(name, tuple(failures), tuple(outcome.trace), outcome.call_id, steps,
                                loop.time() - started)  # fmt: skip
            return suite, result, record

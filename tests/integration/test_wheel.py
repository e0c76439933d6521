"""The built wheel runs with no checkout: the bundled dialplans, prompts and CLI come from the wheel alone.

The wheel is installed with `--no-deps` into a target directory put first on PYTHONPATH of .venv's
interpreter (which supplies the dependencies), and every command runs from a directory outside the checkout,
so nothing can be read from the repository by accident.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ivr import __version__
from tests.integration.harness import REPO, _read_until, free_port, http_get

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class InstalledWheel:
    wheel: Path
    target: Path  # the --target directory
    cwd: Path  # outside the checkout

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.target)}

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=120)


def _poll(port: int, path: str, proc: subprocess.Popen[str], timeout: float = 30.0) -> tuple[int, str]:
    """The first answer from the endpoint once the process has opened it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ConnectionRefusedError):
            return http_get(port, path)
        assert proc.poll() is None, "ivr serve exited"
        time.sleep(0.02)
    raise AssertionError(f"nothing listening on {port} within {timeout} s")


def _source_tree(dest: Path) -> Path:
    """The checkout's files (tracked and new, not ignored), copied, so the build leaves no build/ in it."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest / name)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InstalledWheel]:
    root = tmp_path_factory.mktemp("wheel")
    source = _source_tree(root / "src")
    dist = root / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(dist), str(source)], check=True, timeout=300)
    (wheel,) = dist.glob("ivr-*.whl")
    target = root / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, timeout=300
    )
    cwd = root / "elsewhere"
    cwd.mkdir()
    yield InstalledWheel(wheel, target, cwd)


def test_the_wheel_carries_the_bundled_dialplans_and_prompts(installed: InstalledWheel) -> None:
    bundled = installed.target / "ivr" / "bundled" / "dialplans"
    for name in ("demo.yaml", "banco.yaml", "takuhai.yaml"):
        assert (bundled / name).read_bytes() == (REPO / "dialplans" / name).read_bytes()
    prompts = sorted(p.name for p in (REPO / "dialplans" / "prompts").glob("*.wav"))
    assert prompts and sorted(p.name for p in (bundled / "prompts").glob("*.wav")) == prompts


def test_the_installed_package_is_the_one_imported(installed: InstalledWheel) -> None:
    done = installed.run(
        sys.executable, "-c", "import ivr.config as c; print(c.__file__, c.BUNDLED_DIALPLAN)"
    )
    module, demo = done.stdout.split()
    assert Path(module).is_relative_to(installed.target), done
    assert Path(demo) == installed.target / "ivr" / "bundled" / "dialplans" / "demo.yaml"


def test_version_from_the_console_script_and_python_m(installed: InstalledWheel) -> None:
    script = installed.target / "bin" / "ivr"
    for argv in ((str(script), "--version"), (sys.executable, "-m", "ivr", "--version")):
        done = installed.run(*argv)
        assert done.returncode == 0, done
        assert done.stdout.strip() == f"ivr {__version__}"
    assert __version__ != "0+unknown"


def test_python_m_ivr_checks_the_bundled_demo(installed: InstalledWheel) -> None:
    done = installed.run(sys.executable, "-m", "ivr", "check")
    assert done.returncode == 0, done
    demo = installed.target / "ivr" / "bundled" / "dialplans" / "demo.yaml"
    assert done.stdout.strip() == f"{demo}: ok"


def test_python_m_ivr_prints_the_dialplan_schema(installed: InstalledWheel) -> None:
    done = installed.run(sys.executable, "-m", "ivr", "schema")
    assert done.returncode == 0, done
    assert '"title": "Dialplan"' in done.stdout


def test_ivr_serve_answers_from_the_wheel(installed: InstalledWheel) -> None:
    port, emulator_port, metrics_port = free_port(), free_port(), free_port()
    rtp_low = 20000 + (port % 400) * 100
    env = {
        **installed.env,
        "IVR_SIP_PORT": str(port),
        "IVR_EMULATOR_PORT": str(emulator_port),
        "IVR_RTP_PORT_LOW": str(rtp_low),
        "IVR_RTP_PORT_HIGH": str(rtp_low + 98),
        "IVR_METRICS_PORT": str(metrics_port),
    }
    proc = subprocess.Popen(
        [str(installed.target / "bin" / "ivr"), "serve"],
        cwd=installed.cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # The endpoints come up before the embedded emulator has loaded its model: alive, not ready yet.
        health = _poll(metrics_port, "/healthz", proc)
        ready_before = http_get(metrics_port, "/readyz")
        lines = _read_until(proc, "answering on", timeout=90)
        ready_after = http_get(metrics_port, "/readyz")
        scrape = http_get(metrics_port, "/metrics")
    finally:
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(40)
    banner = "".join(lines)
    assert f"sip:127.0.0.1:{port}" in banner
    assert "prompt unreadable" not in banner  # every prompt came from the wheel
    assert str(installed.target / "ivr" / "bundled" / "dialplans" / "demo.yaml") in banner
    assert status == 0
    assert health == (200, "ok\n")
    assert ready_before == (503, "not ready\n")
    assert ready_after == (200, "ready\n")
    assert scrape[0] == 200 and "ivr_calls_active 0.0" in scrape[1]
    assert (installed.cwd / "var" / "cdr.jsonl").parent.is_dir()  # the default CDR folder, relative to cwd

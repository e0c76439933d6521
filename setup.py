"""Build hooks: the wheel carries the top-level `dialplans/` (YAML, prompts, grammars) as ivr/bundled/dialplans,
and the optional C half of the batched RTP receiver (ivr/media/_batchrx.c).

The bundled dialplans stay at the top of the repository, where `make run` and the docs point; they live
outside the `ivr` package, which package-data cannot reach, so build_py copies them into the build tree.
Editable installs skip the copy: `ivr.config.bundled_dialplans()` finds the checkout's folder instead.
All other metadata is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

DIALPLANS = Path(__file__).resolve().parent / "dialplans"
TARGET = Path("ivr", "bundled", "dialplans")


class BuildWithDialplans(build_py):
    """build_py that also copies `dialplans/` into the package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for source in sorted(DIALPLANS.rglob("*")):
            if source.is_file() and "__pycache__" not in source.parts:
                target = Path(self.build_lib, TARGET, source.relative_to(DIALPLANS))
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)


# The batched RTP receiver (ivr/media/batchrx.py). Optional: without a C compiler the build still succeeds, and
# every call reads its RTP through the event loop's own datagram transport instead.
BATCHRX = Extension("ivr.media._batchrx", ["ivr/media/_batchrx.c"], optional=True, extra_compile_args=["-O2"])

setup(cmdclass={"build_py": BuildWithDialplans}, ext_modules=[BATCHRX])

"""Debian test tools (sipp, espeak-ng, sox): `make test` installs them; a test that needs one says so."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# The read-only neighbour of the repository: the vendors' documents and the test recordings.
SHARED = Path(__file__).resolve().parents[2] / "shared"

# The Korean menu phrases TOOLBOX.md measured Vosk on (espeak-ng speech): the card-company menu and yes/no.
KOREAN_MENU = (
    "상담원 연결해 주세요",
    "상담원 연결해 줘",
    "상담사 바꿔 주세요",
    "잔액 조회",
    "카드 분실 신고",
    "네",
    "아니요",
    "메인 메뉴",
)


def require_tool(name: str) -> str:
    """Fail under CI, skip on a developer's machine, with a message saying how to get the tool."""
    path = shutil.which(name)
    if path is None:
        packages = "sip-tester, espeak-ng, sox, baresip-core, kamailio, sipvicious, postgresql"
        message = f"{name} is not installed: `make test` installs it (Debian packages {packages})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path

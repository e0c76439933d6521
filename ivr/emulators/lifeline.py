"""An embedded emulator dies with the bridge that started it, even when the bridge is killed with SIGKILL.

Without this, `kill -9` of `ivr serve` leaves the emulator running and holding its port, so the next
`ivr serve` cannot start its own. Linux delivers a chosen signal to a process when its parent dies once the
process asks with prctl(PR_SET_PDEATHSIG) (prctl(2)); the request is not inherited across fork, and a parent
that died before the request is caught by comparing getppid() with the pid the parent passed down.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Mapping

PARENT_PID_VARIABLE = "IVR_PARENT_PID"  # set by ivr.embedded for its children
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(environ: Mapping[str, str] | None = None) -> bool:
    """Ask for SIGKILL when the parent named in IVR_PARENT_PID dies; exit now if it already has.

    Returns False where there is nothing to do (not started by the bridge) or the platform cannot do it.
    """
    env = os.environ if environ is None else environ
    expected = env.get(PARENT_PID_VARIABLE)
    if not expected or not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return False
    if os.getppid() != int(expected):
        # The bridge died between our fork and the prctl: the signal will never come.
        os._exit(1)
    return True

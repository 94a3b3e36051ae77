"""No process left behind when the one that started it is killed outright.

``vigie up`` and ``vigie bench`` start the broker (Tansu, a Rust binary) and the worker in
sessions of their own, so that Ctrl-C at the terminal reaches the supervisor alone and it
stops them in order. A supervisor killed outright (SIGKILL, the out-of-memory killer, a CI
timeout) used to leave both running: a broker on its port and a worker on the warehouse,
with nobody to stop them (seen: a Tansu broker still up after its ``vigie bench`` was
killed). The kernel's parent-death signal covers it: the child gets SIGTERM — the graceful
stop for the worker and the broker alike — when the thread that started it ends. Both get
it at once, so the worker's last commits may race the broker's exit: what is not committed
is read again at the next start (at least once; the warehouse keeps one row per record).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def stop_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen`` that asks the kernel to SIGTERM the child
    when its parent ends; None where that cannot hold. The signal follows the parent
    *thread*: only a process started from the main thread gets it (a child started from a
    short-lived thread would otherwise be stopped when that thread returns)."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
    prctl.restype = ctypes.c_int
    sigterm = int(signal.SIGTERM)
    parent = os.getpid()

    def preexec() -> None:  # runs in the child, between fork and exec
        prctl(PR_SET_PDEATHSIG, sigterm, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request: nobody to follow
            os._exit(1)

    return preexec

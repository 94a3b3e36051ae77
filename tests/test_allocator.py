"""The worker caps glibc's malloc arenas (vigie/runtime/allocator.py), so that the embedded
engine's threads cannot each keep freed memory in an arena of their own."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Eight threads each allocating and freeing 64 KiB blocks (below glibc's mmap threshold, so they
# come from arenas), then glibc's own report of its arenas on stderr.
_PROGRAM = """
import ctypes, sys, threading
from vigie.runtime.allocator import limit_malloc_arenas
print(limit_malloc_arenas(int(sys.argv[1])))
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
start = threading.Barrier(8)
def churn():
    start.wait()
    for _ in range(2000):
        blocks = [libc.malloc(65536) for _ in range(8)]
        for b in blocks:
            libc.free(b)
threads = [threading.Thread(target=churn) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
libc.malloc_stats()
"""


def _arenas(cap: int) -> tuple[str, int]:
    done = subprocess.run([sys.executable, "-c", _PROGRAM, str(cap)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip(), done.stderr.count("Arena ")


def test_the_cap_bounds_the_arenas_threads_create() -> None:
    if not hasattr(__import__("ctypes").CDLL(None), "mallopt"):
        pytest.fail("this test needs glibc (the worker's platform)")
    applied, capped = _arenas(2)
    assert applied == "True"
    assert 1 <= capped <= 2
    # Without the cap, the same threads spread over more arenas: the cap is what bounds them.
    applied, free = _arenas(0)
    assert applied == "False"
    assert free > 2


"""The C allocator's settings for the long-lived worker process (glibc's malloc).

The embedded warehouse engine (chDB) allocates with glibc's malloc from many threads (inserts,
background merges). glibc gives threads their own arenas — up to eight per core — and each
arena keeps what was freed in it, so the worker's peak RSS depends on which threads happened to
allocate where: the same 7 M-row insert into ``attendance_marks``, alone in chDB, added between
+314 and +779 MB to the process over nine runs, and 279–437 MB over nine runs with the arenas
capped (issue 18; the README has the figures).
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` for this process (0 leaves glibc's default).
    Applies to arenas created from now on: call it before the engine starts its threads.
    Returns whether the cap applies (False off glibc, e.g. musl or macOS)."""
    if arenas <= 0:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        log.info("no glibc mallopt here: malloc arenas left as they are")
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas))

"""glibc malloc tuned for a small machine: fewer arenas, large buffers given back to the OS.

Measured on the whole stack (bench/memory.py, docs/performance.md): by default glibc gives each
thread up to 8 x cores arenas, and after the first large buffer is freed it raises its mmap
threshold (up to 32 MB), so the camera's and the detector's frame-sized buffers (0.9 MB at
640x480) come from the heap from then on, fragment it and are never returned. A fixed mmap
threshold keeps such buffers in their own mappings, unmapped when freed; a trim threshold of
the same size gives the top of the heap back. Applied once per process, before the services'
buffers exist (forks inherit it); a no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("homesec.malloc")

# mallopt parameters (<malloc.h>)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

ARENA_MAX = 2
"""Arenas for all threads: the services' threads are few and mostly waiting."""
MMAP_THRESHOLD_BYTES = 128 * 1024
"""glibc's initial threshold, kept fixed (a fixed value turns the dynamic raise off)."""
TRIM_THRESHOLD_BYTES = 128 * 1024
"""Free memory at the top of the heap beyond this goes back to the OS."""

_applied = False


def tune_malloc() -> bool:
    """Apply the settings above; True when glibc took them (once per process)."""
    global _applied
    if _applied:
        return True
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: musl and macOS lack it
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = all(
        mallopt(param, value) == 1
        for param, value in (
            (M_ARENA_MAX, ARENA_MAX),
            (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
            (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
        )
    )
    if not ok:
        log.warning("glibc refused a malloc setting; running with its defaults")
    _applied = ok
    return ok

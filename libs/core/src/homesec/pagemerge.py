"""Kernel same-page merging (KSM) for a service's memory: pages with the same bytes held once.

The services are forks of one preloaded parent (``homesec run``). Many of the pages a fork
copies on write end up holding exactly what its siblings' copies and the parent's page hold:
CPython 3.11 writes an object's reference count when it uses the object and writes it back
when it is done, so the page is copied for a value that is the old one again a moment later.
A process opted in with ``prctl(PR_SET_MEMORY_MERGE)`` (Linux 6.4 and newer; inherited by its
forks) lets the kernel's ``ksmd`` find such pages and keep one copy-on-write copy of them:
~21 MB less for the forked local stack (docs/performance.md; under Docker, where every
container is its own interpreter, hardly a page matches). ``ksmd`` runs only where the host
switched it on (``/sys/kernel/mm/ksm/run`` = 1, as root; docs/deployment.md): the opt-in alone
costs nothing. Pure standard library: the runner uses it too.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("homesec.pagemerge")

PR_SET_MEMORY_MERGE = 67  # <linux/prctl.h>, Linux 6.4
PR_GET_MEMORY_MERGE = 68
KSM_DIR = Path("/sys/kernel/mm/ksm")
"""The host's KSM switches and counters (absent where the kernel has no KSM)."""
KSM_RUN = KSM_DIR / "run"
"""0: ksmd stopped (the kernel's default), 1: merging, 2: stopped and every merge undone."""
KSM_STAT = Path("/proc/self/ksm_stat")


def _prctl(option: int, value: int) -> int | None:
    """``prctl(option, value, 0, 0, 0)``; None where it failed (errno) or there is no prctl."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.restype = ctypes.c_int
    prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    result = int(prctl(option, value, 0, 0, 0))
    return None if result < 0 else result


def set_page_merging(enabled: bool) -> bool:
    """Opt this process, and the processes it forks from now on, in or out of same-page
    merging. True when the kernel took it; False where it cannot (a kernel without KSM or
    older than 6.4, not Linux, a sandbox that refuses the call)."""
    taken = _prctl(PR_SET_MEMORY_MERGE, 1 if enabled else 0) is not None
    if enabled and not taken:
        log.debug("kernel same-page merging unavailable (needs Linux 6.4+ with KSM)")
    return taken


def page_merging() -> bool:
    """Whether this process is opted in."""
    return _prctl(PR_GET_MEMORY_MERGE, 0) == 1


def ksm_running() -> bool | None:
    """Whether the host's ``ksmd`` merges pages now; None where this kernel has no KSM."""
    try:
        return KSM_RUN.read_text().strip() == "1"
    except OSError:
        return None


def merged_bytes(stat: Path = KSM_STAT) -> float:
    """This process's pages that are merged with another's now (``ksm_merging_pages``), in
    bytes; 0 where the kernel does not say."""
    try:
        for line in stat.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "ksm_merging_pages":
                return float(int(value) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError):
        pass
    return 0.0

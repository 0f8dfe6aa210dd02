"""Services as forks of one preloaded parent: what ``homesec run`` uses to share memory.

Every service pays the interpreter, pydantic, paho, prometheus-client and the core library
(~28 MB of heap each); the camera and the detector add NumPy and OpenCV. ``fork_services``
forks a short-lived *preloader* that imports those once, freezes them out of the garbage
collector's reach (``gc.freeze``: a collection in a child would otherwise write to every
object's header and copy the page), forks each service and exits. The services share its
pages copy-on-write, and PSS divides them among the services; once the preloader has exited,
the pages that every service has copied (reference counts written to) are freed instead of
staying in a parent that no longer needs them. The caller is made the services' *subreaper*
(``prctl(PR_SET_CHILD_SUBREAPER)``), so they become its children when the preloader exits: it
waits for them, signals them and restarts them as it would its own.

A fork runs ``python -m <module>`` in-process (``runpy``), so a service behaves as it does when
started on its own; its process title (``ps``, ``/proc/<pid>/cmdline``) is ``homesec <service>``.
Each service still is its own process with its own crash, restart and memory.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import importlib
import json
import logging
import os
import runpy
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import NoReturn

from setproctitle import setproctitle

from homesec.malloc import tune_malloc
from homesec.services import ServiceInfo

log = logging.getLogger("homesec.forking")

# What every service imports before its own code: the core library and its dependencies, and
# the codec a connection to the broker by name imports (``socket`` encodes host names with it).
COMMON_IMPORTS: tuple[str, ...] = (
    "homesec.service",
    "homesec.contract",
    "homesec.outbox",
    "encodings.idna",
)
PRELOADER_TITLE = "homesec preload"
PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


def process_title(info: ServiceInfo) -> str:
    """The title a forked service shows in ``ps`` and ``/proc/<pid>/cmdline``."""
    return f"homesec {info.name}"


def become_subreaper() -> bool:
    """Make this process the parent of its orphaned descendants (Linux); True when it is."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return False
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return bool(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


def preload(services: Iterable[ServiceInfo]) -> list[str]:
    """Import what forks will share: the core library, every service's ``main`` module with
    all it imports (NumPy and OpenCV for the camera and the detector; each service's settings
    models, built once here instead of in every child) and what each imports only once it
    runs (``ServiceInfo.runtime_imports``); then build each service's settings from the
    environment (``ServiceInfo.settings``; its fork takes them). A service whose modules fail
    to import, or whose settings do not validate, is left to fail in its own fork (with its
    own message, exit status and restarts), not to stop the others.
    Returns what was imported."""
    imported = []
    for module in COMMON_IMPORTS:
        importlib.import_module(module)
        imported.append(module)
    for info in services:
        for module in (f"{info.module}.main", *info.runtime_imports):
            try:
                importlib.import_module(module)
            except Exception as exc:  # its own fork reports it
                log.warning(
                    "not preloaded; the service imports it itself",
                    extra={"service": info.name, "import": module, "error": repr(exc)},
                )
                continue
            imported.append(module)
        if info.settings:
            _prebuild(info)
    gc.collect()
    gc.freeze()
    return imported


def _prebuild(info: ServiceInfo) -> None:
    from homesec.settings import prebuild_settings  # in the preloader: the runner has no pydantic

    module, _, name = info.settings.partition(":")
    try:
        settings_cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return  # its fork imports its own modules and fails there, as a service would
    prebuild_settings(settings_cls)


class ForkedService:
    """A forked service that is this process's child; the part of ``subprocess.Popen`` the
    runner uses."""

    def __init__(self, info: ServiceInfo, pid: int) -> None:
        self.info = info
        self.pid = pid
        self.args = [process_title(info)]
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            time.sleep(0.05)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def fork_services(services: Sequence[ServiceInfo], env: dict[str, str]) -> list[ForkedService]:
    """Fork ``services`` from a preloader that exits once they run; the caller must be a
    subreaper (:func:`become_subreaper`). Returns the services that were forked: none when
    the preloader itself failed (its traceback is on stderr; the caller restarts them
    later)."""
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    # out of the collector's reach in the forks: a collection there would write to the header
    # of every object this process holds and so copy all its pages
    gc.collect()
    gc.freeze()
    pid = os.fork()
    if pid == 0:  # the preloader never returns from here
        os.close(read_end)
        _run_preloader(services, env, write_end)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read()
    os.waitpid(pid, 0)  # once it is reaped, its forks are this process's children
    try:
        pids: dict[str, int] = json.loads(report) if report else {}
    except ValueError:
        pids = {}
    return [ForkedService(info, pids[info.name]) for info in services if info.name in pids]


def exit_after(body: Callable[[], None]) -> NoReturn:
    """In a forked process: run ``body`` and end the process with the status the interpreter
    would give it (0; ``SystemExit``'s code, or 1 and its message; 1 and the traceback), never
    returning into the parent's code."""
    code = 1
    try:
        body()
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:  # SystemExit("message"): printed, status 1, as the interpreter does
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _run_preloader(services: Sequence[ServiceInfo], env: dict[str, str], report_fd: int) -> None:
    """In the preloader: import the shared modules, fork every service, report their pids."""

    def preload_and_fork() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        setproctitle(PRELOADER_TITLE)
        os.environ.clear()  # the services' environment: what the imports and settings read
        os.environ.update(env)
        tune_malloc()  # before the shared imports: the forks inherit the heap and its settings
        preload(services)
        pids: dict[str, int] = {}
        for info in services:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # the service never returns from here
                os.close(report_fd)
                exit_after(functools.partial(_become, info, env))
            pids[info.name] = pid
        os.write(report_fd, json.dumps(pids).encode())

    exit_after(preload_and_fork)


def _become(info: ServiceInfo, env: dict[str, str]) -> None:
    """In the forked service: become ``python -m <module>``."""
    # the handlers a fresh interpreter starts with, not the runner's
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    setproctitle(process_title(info))  # first: it finds argv through the environment
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [info.module]
    runpy.run_module(info.module, run_name="__main__", alter_sys=True)

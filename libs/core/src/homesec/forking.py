"""Services as forks of one preloaded parent: what ``homesec run`` uses to share memory.

Every service pays the interpreter, pydantic, paho, prometheus-client and the core library
(~28 MB of heap each); the camera and the detector add NumPy and OpenCV. ``homesec run``
imports those once, freezes them out of the garbage collector's reach (``gc.freeze``: a
collection in a child would otherwise write to every object's header and copy the page), and
then forks each service: the children share those pages copy-on-write, and PSS divides them
among all the processes. Each service still is its own process with its own crash, restart
and memory; only pages nobody writes to are shared.

A fork runs ``python -m <module>`` in-process (``runpy``), so a service behaves as it does
when started on its own; its process title (``ps``, ``/proc/<pid>/cmdline``) is
``homesec <service>``.
"""

from __future__ import annotations

import gc
import importlib
import os
import runpy
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterable

from setproctitle import setproctitle

from homesec.services import ServiceInfo

# What every service imports before its own code: the core library and its dependencies.
COMMON_IMPORTS: tuple[str, ...] = ("homesec.service", "homesec.contract", "homesec.outbox")


def process_title(info: ServiceInfo) -> str:
    """The title a forked service shows in ``ps`` and ``/proc/<pid>/cmdline``."""
    return f"homesec {info.name}"


def preload(services: Iterable[ServiceInfo]) -> list[str]:
    """Import what forks will share: the core library and every service's ``main`` module with
    all it imports (NumPy and OpenCV for the camera and the detector; each service's settings
    models, built once here instead of in every child). Returns what was imported."""
    wanted = [*COMMON_IMPORTS, *(f"{info.module}.main" for info in services)]
    for module in wanted:
        importlib.import_module(module)
    gc.collect()
    gc.freeze()
    return wanted


class ForkedService:
    """A service forked from this process; the part of ``subprocess.Popen`` the runner uses."""

    def __init__(self, info: ServiceInfo, env: dict[str, str]) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child never returns from here
            _run_child(info, env)
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


def _run_child(info: ServiceInfo, env: dict[str, str]) -> None:
    """In the forked child: become ``python -m <module>`` and exit with its code."""
    code = 1
    try:
        # the handlers a fresh interpreter starts with, not the runner's
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        setproctitle(process_title(info))  # first: it finds argv through the environment
        os.environ.clear()
        os.environ.update(env)
        sys.argv = [info.module]
        runpy.run_module(info.module, run_name="__main__", alter_sys=True)
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

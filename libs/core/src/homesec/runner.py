"""``homesec run``: the whole system as local processes (development and demo).

Starts a private Mosquitto unless one already answers on the configured port, then each
installed service as a child process; restarts a crashed child with backoff; stops everything
on Ctrl-C / SIGTERM. On Linux the children are forks of a preloader that has imported what
they share and exits once they run (``homesec.forking``), which saves about 40 % of the
stack's memory; a service that crashed is forked again from a new preloader.
``HOMESEC_RUN_FORK=false`` starts each as a fresh ``python -m`` instead.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from homesec.backoff import backoff_delay
from homesec.broker import MosquittoProcess, port_open
from homesec.forking import become_subreaper, exit_after, fork_services
from homesec.pagemerge import ksm_running, set_page_merging
from homesec.services import CATALOGUE, ServiceInfo

log = logging.getLogger("homesec.runner")


@dataclass(frozen=True)
class RunPlan:
    """What ``homesec run`` starts and how it restarts: :class:`RunnerSettings` as plain
    values, so the runner itself needs no pydantic (``read_plan``)."""

    broker_host: str
    broker_port: int
    start_broker: bool
    data_dir: Path
    services: tuple[str, ...]
    restart_min_seconds: float
    restart_max_seconds: float
    healthy_after_seconds: float
    fork: bool
    merge_pages: bool = True

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> RunPlan:
        """A plan from ``run_settings.plan_values`` (JSON-able: paths and lists as such)."""
        return cls(
            **{
                **values,
                "data_dir": Path(values["data_dir"]),
                "services": tuple(values["services"]),
            }
        )


class ChildProcess(Protocol):
    """What the runner needs of a child: ``subprocess.Popen`` or a ``ForkedService``."""

    pid: int

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


@dataclass
class Child:
    info: ServiceInfo
    proc: ChildProcess | None = None
    started_at: float = 0.0
    failures: int = 0
    next_start: float = 0.0
    restarts: int = field(default=0)


def repo_root() -> Path:
    """The repository checkout this package lives in (for mosquitto/ config), or the CWD."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "mosquitto").is_dir() and (parent / "services").is_dir():
            return parent
    return Path.cwd()


class Runner:
    def __init__(self, settings: RunPlan) -> None:
        self.settings = settings
        self.children: list[Child] = []
        self.broker: MosquittoProcess | None = None
        self._stop = threading.Event()
        self.fork = settings.fork

    def plan(self) -> list[ServiceInfo]:
        wanted = set(self.settings.services)
        unknown = wanted - {s.name for s in CATALOGUE}
        if unknown:
            raise SystemExit(f"homesec run: unknown services {sorted(unknown)}")
        chosen = []
        for info in CATALOGUE:
            if info.name not in wanted:
                continue
            if not info.installed():
                log.warning("service not installed; skipped", extra={"service": info.name})
                continue
            chosen.append(info)
        return chosen

    def ensure_broker(self) -> None:
        host, port = self.settings.broker_host, self.settings.broker_port
        if port_open(host, port):
            log.info("using running broker", extra={"host": host, "port": port})
            return
        if not self.settings.start_broker or host not in ("127.0.0.1", "localhost", "::1"):
            log.info("broker not reachable yet; services will keep retrying", extra={"port": port})
            return
        self.broker = MosquittoProcess(
            data_dir=self.settings.data_dir / "mosquitto",
            port=port,
            host="127.0.0.1" if host == "localhost" else host,
            repo_config=repo_root() / "mosquitto" / "mosquitto.dev.conf",
        )
        self.broker.start()
        print(f"homesec: mosquitto listening on {host}:{port} (data in {self.broker.data_dir})")

    def spawn(self, children: list[Child]) -> None:
        """Start ``children``: forked together from one preloader, or each ``python -m``."""
        env = dict(os.environ)
        env.setdefault("HOMESEC_DATA_DIR", str(self.settings.data_dir))
        forked = {}
        if self.fork:
            forked = {p.info.name: p for p in fork_services([c.info for c in children], env)}
        for child in children:
            if self.fork:
                child.proc = forked.get(child.info.name)
            else:
                child.proc = subprocess.Popen([sys.executable, "-m", child.info.module], env=env)
            child.started_at = time.monotonic()
            if child.proc is None:
                self.failed(child, "the preloader failed")
                continue
            log.info("service started", extra={"service": child.info.name, "pid": child.proc.pid})

    def failed(self, child: Child, why: object) -> None:
        """Schedule a restart of ``child`` after the backoff."""
        child.failures += 1
        delay = backoff_delay(
            child.failures, self.settings.restart_min_seconds, self.settings.restart_max_seconds
        )
        log.error(
            "service exited; restarting",
            extra={"service": child.info.name, "code": why, "in_seconds": delay},
        )
        child.proc = None
        child.next_start = time.monotonic() + delay

    def supervise_once(self) -> None:
        now = time.monotonic()
        due = []
        for child in self.children:
            if child.proc is None:
                if now >= child.next_start:
                    child.restarts += 1
                    due.append(child)
                continue
            code = child.proc.poll()
            if code is None:
                if now - child.started_at > self.settings.healthy_after_seconds:
                    child.failures = 0
                continue
            self.failed(child, code)
        if due:
            self.spawn(due)
        self.reap_orphans()

    def reap_orphans(self) -> None:
        """Reap exited processes that are neither a service nor the broker: as the services'
        subreaper this process inherits whatever a service started and left behind."""
        if not self.fork:
            return
        known = {c.proc.pid for c in self.children if c.proc is not None}
        if self.broker is not None and self.broker.proc is not None:
            known.add(self.broker.proc.pid)
        while True:
            try:
                found = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if found is None or found.si_pid in known:
                return  # nothing exited, or a known child its owner reaps
            os.waitpid(found.si_pid, 0)

    def run(self) -> int:
        services = self.plan()
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.ensure_broker()
        self.children = [Child(info) for info in services]
        if self.fork and not become_subreaper():
            log.warning("cannot adopt forked services here; starting fresh interpreters")
            self.fork = False
        if self.fork:
            # one BLAS thread: no worker threads exist at fork time, and none of the services
            # does the large matrix products that more threads would speed up
            os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        # before the fork: the preloader and the services inherit it (each applies its own
        # HOMESEC_<SERVICE>_MERGE_PAGES); the runner's copies of the shared pages merge too
        set_page_merging(self.settings.merge_pages)
        self.spawn(self.children)
        self.print_endpoints(services)
        if self.settings.merge_pages and ksm_running() is False:
            print(
                "homesec: the kernel's same-page merging is off here; as root, "
                "`echo 1 > /sys/kernel/mm/ksm/run` lets the services hold ~20 MB less "
                "(docs/deployment.md)"
            )
        try:
            while not self._stop.wait(0.5):
                self.supervise_once()
                if self.broker is not None and not self.broker.running:
                    log.error("local mosquitto died; restarting it")
                    self.broker.start()
        finally:
            self.shutdown()
        return 0

    def print_endpoints(self, services: list[ServiceInfo]) -> None:
        lines = ["homesec: running " + ", ".join(s.name for s in services) or "nothing"]
        for info in services:
            port = os.environ.get(f"{info.env_prefix}METRICS_PORT", str(info.metrics_port))
            lines.append(f"  {info.name:<14} metrics http://127.0.0.1:{port}/metrics")
            if info.http_port:
                http = os.environ.get(f"{info.env_prefix}PORT", str(info.http_port))
                lines.append(f"  {'':<14} Slack Request URL http://127.0.0.1:{http}/slack/events")
        lines.append("  Ctrl-C stops everything")
        print("\n".join(lines), flush=True)

    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def shutdown(self) -> None:
        for child in self.children:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for child in self.children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        if self.broker is not None:
            self.broker.stop()
        print("homesec: stopped", flush=True)


def read_plan(overrides: dict[str, Any]) -> RunPlan:
    """The run plan from ``HOMESEC_RUN_*`` (``homesec.run_settings``), read in a forked child
    where ``os.fork`` exists: pydantic then never loads into the runner, which stays small
    for as long as the stack runs. An invalid setting ends the run with the settings' error."""
    if not hasattr(os, "fork"):
        from homesec.run_settings import plan_values

        return RunPlan.from_values(plan_values(overrides))
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child never returns from here
        os.close(read_end)

        def write_plan() -> None:
            from homesec.run_settings import plan_values

            os.write(write_end, json.dumps(plan_values(overrides)).encode())

        exit_after(write_plan)  # a bad setting: load_settings' message and status 2
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0 or not report:
        raise SystemExit(code or 2)
    return RunPlan.from_values(json.loads(report))


def run(settings: RunPlan) -> int:
    runner = Runner(settings)
    signal.signal(signal.SIGTERM, runner.request_stop)
    signal.signal(signal.SIGINT, runner.request_stop)
    return runner.run()

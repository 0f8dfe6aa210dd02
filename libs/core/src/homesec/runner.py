"""``homesec run``: the whole system as local processes (development and demo).

Starts a private Mosquitto unless one already answers on the configured port, then each
installed service as a child process; restarts a crashed child with backoff; stops everything
on Ctrl-C / SIGTERM. On Linux the children are forks of this process after it has imported
what they share (``homesec.forking``), which saves about a third of the stack's memory;
``HOMESEC_RUN_FORK=false`` starts each as a fresh ``python -m`` instead.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydantic import Field
from pydantic_settings import BaseSettings

from homesec.backoff import backoff_delay
from homesec.broker import MosquittoProcess, port_open
from homesec.forking import ForkedService, preload
from homesec.malloc import tune_malloc
from homesec.services import CATALOGUE, ServiceInfo
from homesec.settings import BrokerSettings, settings_config

log = logging.getLogger("homesec.runner")


class RunnerSettings(BaseSettings):
    """``HOMESEC_RUN_*``: what ``homesec run`` starts."""

    model_config = settings_config("HOMESEC_RUN_")

    broker: BrokerSettings = Field(default_factory=lambda: BrokerSettings())
    services: list[str] = Field(
        default_factory=lambda: [s.name for s in CATALOGUE],
        description="Services to start (comma-separated JSON list in env); missing ones are skipped",
    )
    start_broker: bool = Field(True, description="Start a local Mosquitto if none is reachable")
    data_dir: Path = Field(default_factory=lambda: Path(os.environ.get("HOMESEC_DATA_DIR", "var")))
    restart_min_seconds: float = Field(1.0, gt=0)
    restart_max_seconds: float = Field(30.0, gt=0)
    healthy_after_seconds: float = Field(30.0, gt=0, description="Uptime that resets the backoff")
    fork: bool = Field(
        default_factory=lambda: sys.platform == "linux",
        description="Fork services from one preloaded parent (shares memory; Linux only)",
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
    def __init__(self, settings: RunnerSettings) -> None:
        self.settings = settings
        self.children: list[Child] = []
        self.broker: MosquittoProcess | None = None
        self._stop = threading.Event()

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
        b = self.settings.broker
        if port_open(b.host, b.port):
            log.info("using running broker", extra={"host": b.host, "port": b.port})
            return
        if not self.settings.start_broker or b.host not in ("127.0.0.1", "localhost", "::1"):
            log.info(
                "broker not reachable yet; services will keep retrying", extra={"port": b.port}
            )
            return
        self.broker = MosquittoProcess(
            data_dir=self.settings.data_dir / "mosquitto",
            port=b.port,
            host="127.0.0.1" if b.host == "localhost" else b.host,
            repo_config=repo_root() / "mosquitto" / "mosquitto.dev.conf",
        )
        self.broker.start()
        print(f"homesec: mosquitto listening on {b.host}:{b.port} (data in {self.broker.data_dir})")

    def spawn(self, child: Child) -> None:
        env = dict(os.environ)
        env.setdefault("HOMESEC_DATA_DIR", str(self.settings.data_dir))
        if self.settings.fork:
            child.proc = ForkedService(child.info, env)
        else:
            child.proc = subprocess.Popen([sys.executable, "-m", child.info.module], env=env)
        child.started_at = time.monotonic()
        log.info("service started", extra={"service": child.info.name, "pid": child.proc.pid})

    def supervise_once(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.proc is None:
                if now >= child.next_start:
                    child.restarts += 1
                    self.spawn(child)
                continue
            code = child.proc.poll()
            if code is None:
                if now - child.started_at > self.settings.healthy_after_seconds:
                    child.failures = 0
                continue
            child.failures += 1
            delay = backoff_delay(
                child.failures, self.settings.restart_min_seconds, self.settings.restart_max_seconds
            )
            log.error(
                "service exited; restarting",
                extra={"service": child.info.name, "code": code, "in_seconds": delay},
            )
            child.proc = None
            child.next_start = now + delay

    def run(self) -> int:
        services = self.plan()
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.ensure_broker()
        self.children = [Child(info) for info in services]
        if self.settings.fork:
            # one BLAS thread: no worker threads exist at fork time, and none of the services
            # does the large matrix products that more threads would speed up
            os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
            tune_malloc()  # before the shared imports: the forks inherit the heap and settings
            shared = preload(services)
            log.info("preloaded for the services to share", extra={"modules": shared})
        for child in self.children:
            self.spawn(child)
        self.print_endpoints(services)
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


def run(settings: RunnerSettings) -> int:
    runner = Runner(settings)
    signal.signal(signal.SIGTERM, runner.request_stop)
    signal.signal(signal.SIGINT, runner.request_stop)
    return runner.run()

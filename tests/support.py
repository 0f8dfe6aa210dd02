"""Helpers shared by the tests: a message collector, polling, services on threads and as
processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from homesec.broker import free_port
from homesec.bus import Bus, Received
from homesec.contract import AVAILABILITY, Availability
from homesec.services import BY_NAME
from homesec.settings import BrokerSettings

T = TypeVar("T")


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


class Collector(Generic[T]):
    """A bus handler that records what it receives."""

    def __init__(self) -> None:
        self.items: list[Received[T]] = []
        self._lock = threading.Lock()

    def __call__(self, msg: Received[T]) -> None:
        with self._lock:
            self.items.append(msg)

    @property
    def payloads(self) -> list[T]:
        with self._lock:
            return [m.payload for m in self.items]

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[T]:
        wait_until(lambda: len(self.items) >= count, timeout)
        return self.payloads


def bus_metric(bus: Any, name: str, **labels: str) -> float:
    """A sample of the metrics registry a service's bus carries (0 when not exported yet)."""
    value = bus.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


def clean_environ() -> dict[str, str]:
    """This process's environment without the ``HOMESEC_*``, ``SLACK_*`` and ``AWS_*``
    settings a developer's shell may hold, so a service process sees only what a test gives."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("HOMESEC_", "SLACK_", "AWS_"))}


def assert_module_exits_2_naming(module: str, cwd: Path, **env: str) -> str:
    """Run ``python -m module`` with a :func:`clean_environ` plus ``env``; assert it exits
    with status 2 and names every given variable on stderr."""
    result = subprocess.run(
        [sys.executable, "-m", module],
        env={**clean_environ(), "HOMESEC_DATA_DIR": str(cwd), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    for name in env:
        assert name in result.stderr, result.stderr[-2000:]
    return result.stderr


class Runnable(Protocol):
    def run(self, stop: threading.Event) -> None: ...


R = TypeVar("R", bound=Runnable)


class ServiceThread(Generic[R]):
    """A service object's ``run(stop_event)`` loop on a thread, on a bus started for it
    (the service must have subscribed on ``bus`` before this starts it)."""

    def __init__(self, service: R, bus: Bus) -> None:
        self.service = service
        self.bus = bus
        bus.start()
        assert bus.wait_connected(10), "service bus did not connect"
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=service.run, args=(self.stop_event,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(10)
        self.bus.stop(timeout=2)

    def metric(self, name: str, **labels: str) -> float:
        return bus_metric(self.bus, name, **labels)


class ServiceProcess:
    """``python -m <module>`` of a catalogued service as a real process on the test broker.

    The environment is :func:`clean_environ` plus the broker, ``HOMESEC_DATA_DIR=data_dir``
    (also the working directory), text logs, metrics on a free port of 127.0.0.1 and ``env``.
    As a context manager it starts the process and waits until its availability is
    ``online``; on leaving it kills a process still running and, when the block failed,
    prints the process output (pytest shows it with the failure)."""

    def __init__(
        self, service: str, broker_settings: BrokerSettings, data_dir: Path, **env: str
    ) -> None:
        info = BY_NAME[service]
        self.service = service
        self.module = info.module
        self.metrics_port = free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.env = {
            **clean_environ(),
            "HOMESEC_BROKER_HOST": broker_settings.host,
            "HOMESEC_BROKER_PORT": str(broker_settings.port),
            "HOMESEC_DATA_DIR": str(data_dir),
            f"{info.env_prefix}LOG_FORMAT": "text",
            f"{info.env_prefix}METRICS_PORT": str(self.metrics_port),
            f"{info.env_prefix}METRICS_HOST": "127.0.0.1",
            **env,
        }
        self.availability: Collector[Availability] = Collector()
        self._watcher = Bus(broker_settings, f"{service}-watch", persistent=False)
        self._watcher.subscribe(AVAILABILITY, self.availability, service=service)
        self._chunks: list[bytes] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> ServiceProcess:
        try:
            return self.start()
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._watcher.stop(timeout=1)
        if exc_type is not None:
            print(f"--- output of {self.module} ---\n{self._collect()}")

    def start(self, timeout: float = 20.0, *, wait_online: bool = True) -> ServiceProcess:
        """Launch the process and wait until it reports ``online`` (with ``wait_online=False``
        only launch it: e.g. before its broker exists)."""
        self._watcher.start()
        if wait_online:
            assert self._watcher.wait_connected(10), "availability watcher did not connect"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module],
            env=self.env,
            cwd=self.data_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        if wait_online:
            self.wait_online(timeout)
        return self

    def wait_online(self, timeout: float = 20.0) -> None:
        wait_until(lambda: self._last_availability("online"), timeout)

    def kill(self) -> None:
        """SIGKILL, as a power cut would (no clean stop, no ``offline``)."""
        assert self.proc is not None, "not started"
        self.proc.kill()
        self.proc.wait(10)

    def metrics_text(self) -> str:
        """The body of the service's ``/metrics``."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())

    def stop(self, timeout: float = 20.0) -> str:
        """SIGTERM the service; assert it exits 0 within ``timeout`` and reports ``offline``.

        Returns everything it wrote to stdout and stderr."""
        assert self.proc is not None, "not started"
        self.proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        output = self._collect()
        assert code == 0, f"{self.module} exited {code} on SIGTERM:\n{output[-3000:]}"
        wait_until(lambda: self._last_availability("offline"), 10)
        return output

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:  # drained all along: a full pipe would block the service
            self._chunks.append(line)

    def _collect(self) -> str:
        """The output so far, complete once the process has exited."""
        if self._reader is not None and self.proc is not None and self.proc.poll() is not None:
            self._reader.join(5)
        return b"".join(self._chunks).decode(errors="replace")

    def _last_availability(self, state: str) -> bool:
        """Whether the last availability is ``state``; fails at once if the process died."""
        payloads = self.availability.payloads
        if payloads and payloads[-1].root == state:
            return True
        assert self.proc is not None
        if state == "online" and self.proc.poll() is not None:
            raise AssertionError(
                f"{self.module} exited {self.proc.returncode} before going online:\n"
                + self._collect()[-3000:]
            )
        return False

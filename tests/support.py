"""Helpers shared by the tests: a message collector and polling."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from homesec.bus import Bus, Received

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


def assert_module_exits_2_naming(module: str, cwd: Path, **env: str) -> str:
    """Run ``python -m module`` with no inherited ``HOMESEC_*``/``SLACK_*`` settings plus
    ``env``; assert it exits with status 2 and names every given variable on stderr."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HOMESEC_", "SLACK_"))}
    result = subprocess.run(
        [sys.executable, "-m", module],
        env={**clean, "HOMESEC_DATA_DIR": str(cwd), **env},
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
        value = self.bus.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

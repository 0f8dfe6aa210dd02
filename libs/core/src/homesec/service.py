"""The shell every service runs in: settings → logging → metrics → bus → loop → clean stop.

Each service's ``main`` is one call::

    def main(argv: list[str] | None = None) -> int:
        return run_service("ptz", PtzSettings, lambda rt, s: PtzController(rt.bus, s, rt.metrics))

The factory builds the service object (it subscribes on ``rt.bus`` before the bus starts); its
``run(stop_event)`` loop runs until SIGTERM/SIGINT; ``close()`` is called if it has one.
"""

from __future__ import annotations

import logging
import signal
import sqlite3
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Protocol, TypeVar

from homesec.bus import Bus
from homesec.logs import configure_logging
from homesec.malloc import tune_malloc
from homesec.metrics import MetricsServer, ServiceMetrics
from homesec.pagemerge import set_page_merging
from homesec.settings import ServiceSettings, load_settings

log = logging.getLogger("homesec.service")


class ServiceRuntime:
    """Owns a service's bus, metrics server and stop signal."""

    def __init__(
        self,
        service: str,
        settings: ServiceSettings,
        *,
        install_signal_handlers: bool = True,
        configure_logs: bool = True,
    ) -> None:
        self.service = service
        self.settings = settings
        if configure_logs:
            configure_logging(service, settings.log_level, settings.log_format)
        self.metrics = ServiceMetrics(service)
        self.metrics_server = MetricsServer(
            self.metrics, settings.metrics_host, settings.metrics_port
        )
        self.bus = Bus(
            settings.broker,
            service,
            self.metrics,
            instance=settings.instance,
            outbox_path=settings.data_dir / "outbox" / f"{service}.sqlite3",
        )
        self.stop_event = threading.Event()
        self._install_signals = install_signal_handlers

    def __enter__(self) -> ServiceRuntime:
        if self._install_signals and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        self.metrics_server.start()
        if self.settings.metrics_port:
            log.info(
                "metrics listening",
                extra={
                    "url": f"http://{self.settings.metrics_host}:{self.metrics_server.port}/metrics"
                },
            )
        return self

    def start(self) -> None:
        """Connect the bus; waits (retrying with backoff) unless a connect timeout is set."""
        timeout = self.settings.broker.connect_timeout_seconds
        self.bus.start()
        if timeout > 0 and not self.bus.wait_connected(timeout):
            log.error("broker unreachable", extra={"seconds": timeout})
            raise SystemExit(1)

    def wait(self) -> None:
        """Block until SIGTERM/SIGINT or :meth:`request_stop`."""
        while not self.stop_event.wait(0.5):
            pass

    def request_stop(self) -> None:
        self.stop_event.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        self.stop_event.set()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_event.set()
        self.bus.stop()
        self.metrics_server.stop()
        log.info("stopped")


class Runnable(Protocol):
    def run(self, stop: threading.Event) -> None: ...


S = TypeVar("S", bound=ServiceSettings)

STARTUP_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, sqlite3.Error)
"""What a service factory may raise for a bad environment (unwritable data folder, unreadable
file...): reported as a clear error and exit status 2, like a bad setting."""


def run_service(
    name: str,
    settings_cls: type[S],
    factory: Callable[[ServiceRuntime, S], Runnable],
) -> int:
    """Load settings (exit 2 naming a bad one), build the service, connect, run until
    SIGTERM/SIGINT, stop cleanly; returns the exit status."""
    tune_malloc()
    settings = load_settings(settings_cls)
    set_page_merging(settings.merge_pages)
    with ServiceRuntime(name, settings) as rt:
        try:
            service = factory(rt, settings)
        except STARTUP_ERRORS as exc:
            log.error(f"cannot start the {name} service", extra={"error": str(exc)})
            return 2
        try:
            rt.start()
            service.run(rt.stop_event)
        finally:
            close = getattr(service, "close", None)
            if callable(close):
                close()
    return 0

"""The shell every service runs in: settings → logging → metrics → bus → loop → clean stop.

def main() -> None:
    settings = load_settings(PtzSettings)
    with ServiceRuntime("ptz", settings) as rt:
        controller = PtzController(rt.bus, ...)
        rt.start()
        rt.wait()
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType

from homesec.bus import Bus
from homesec.logs import configure_logging
from homesec.metrics import MetricsServer, ServiceMetrics
from homesec.settings import ServiceSettings

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
        self.bus = Bus(settings.broker, service, self.metrics, instance=settings.instance)
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

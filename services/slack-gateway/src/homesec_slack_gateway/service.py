"""Wiring: bus subscriptions, durable queue, Slack clients, HTTP server or Socket Mode."""

from __future__ import annotations

import logging
import threading
import time

import uvicorn
from prometheus_client import CollectorRegistry

from homesec.backoff import Backoff
from homesec.bus import Bus
from homesec.contract import ServiceState
from homesec.state import SystemStateView
from homesec_slack_gateway.alerts import AlertIntake, AlertSender
from homesec_slack_gateway.clips import ClipSender
from homesec_slack_gateway.handlers import Gateway
from homesec_slack_gateway.http_app import create_app
from homesec_slack_gateway.labels import LabelOutbox
from homesec_slack_gateway.metrics import GatewayMetrics
from homesec_slack_gateway.mirror import Mirror
from homesec_slack_gateway.pin_release import AlertPinRelease
from homesec_slack_gateway.settings import SlackGatewaySettings
from homesec_slack_gateway.slack_api import web_client
from homesec_slack_gateway.socket_mode import SocketModeRunner
from homesec_slack_gateway.store import Store
from homesec_slack_gateway.training import TrainingDesk

log = logging.getLogger("homesec.slack_gateway")


class GatewayService:
    """The whole gateway. Construct (subscribes), start the bus, then :meth:`run`."""

    def __init__(
        self, bus: Bus, settings: SlackGatewaySettings, registry: CollectorRegistry
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.registry = registry
        self.metrics = GatewayMetrics(registry)
        self.store = Store(settings.state_dir / "outbox.sqlite3")
        self.state = SystemStateView(bus, alarm=True)
        self.mirror = Mirror(bus)
        self.wake = threading.Event()
        bot_token = SlackGatewaySettings.reveal(settings.slack_bot_token)
        self.bot = web_client(settings, self.metrics, bot_token) if bot_token else None
        if self.bot is None:
            log.warning("SLACK_BOT_TOKEN is not set: commands work, alerts cannot be posted")
        self.labels = LabelOutbox(bus, self.store, self.metrics)
        self.training = TrainingDesk(bus, self.store, settings, self.metrics, self.bot)
        self.gateway = Gateway(
            bus,
            settings,
            self.metrics,
            self.store,
            self.mirror,
            self.state,
            self.labels,
            self.bot,
            report=self.training.report,
        )
        self.intake = AlertIntake(
            bus,
            self.store,
            self.mirror,
            self.state,
            self.metrics,
            settings.media_dir,
            settings.alert_min_interval_seconds,
            self.wake,
            clips=settings.alert_clips,
        )
        self.sender = AlertSender(
            self.store,
            self.bot,
            settings.alert_channel,
            self.metrics,
            self.wake,
            settings.retry_initial_seconds,
            settings.retry_max_seconds,
            on_health=self._alert_health,
        )
        self.clips = ClipSender(
            self.store,
            self.bot,
            settings.alert_channel,
            settings.media_dir,
            self.metrics,
            wait=settings.clip_wait_seconds,
            max_bytes=settings.clip_max_bytes,
            poll=settings.clip_poll_seconds,
            initial_delay=settings.retry_initial_seconds,
            max_delay=settings.retry_max_seconds,
        )
        self.pin_release = AlertPinRelease(self.gateway.pins, self.store, self.metrics)
        # Socket Mode needs no HTTP app (and no signing secret)
        self.app = (
            None if settings.socket_mode else create_app(self.gateway, settings, self.metrics)
        )
        self.server: uvicorn.Server | None = None
        self.socket: SocketModeRunner | None = None
        self.ready = threading.Event()

    def _alert_health(self, problem: str | None) -> None:
        """Degraded (with the sender's reason) while alerts are in trouble, ok once one goes out."""
        if problem is None:
            self.bus.set_status(ServiceState.OK, "")
        else:
            self.bus.set_status(ServiceState.DEGRADED, problem[:500])

    @property
    def http_port(self) -> int | None:
        """The bound HTTP port once serving (useful with port 0)."""
        if self.server is None or not self.server.started:
            return None
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    def run(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set, then shut everything down."""
        self.gateway.start()
        self.sender.start(stop)
        self.clips.start(stop)
        self.labels.start(stop)
        self.pin_release.start(stop)
        self.training.start(stop)
        server_thread: threading.Thread | None = None
        try:
            if self.settings.socket_mode:
                app_token = SlackGatewaySettings.reveal(self.settings.slack_app_token)
                if not app_token:
                    log.error("socket mode needs SLACK_APP_TOKEN (xapp-...); not connecting")
                else:
                    self.socket = SocketModeRunner(
                        self.gateway, self.settings, self.metrics, app_token
                    )
                    self._connect_socket(stop)
            else:
                assert self.app is not None
                config = uvicorn.Config(
                    self.app,
                    host=self.settings.host,
                    port=self.settings.port,
                    log_config=None,
                    access_log=False,
                    lifespan="off",
                )
                self.server = uvicorn.Server(config)
                server_thread = threading.Thread(
                    target=self.server.run, name="slack-http", daemon=True
                )
                server_thread.start()
                deadline = time.monotonic() + 10
                while not self.server.started and time.monotonic() < deadline:
                    if not server_thread.is_alive():
                        raise SystemExit(
                            f"HTTP server could not start on port {self.settings.port}"
                        )
                    time.sleep(0.02)
                log.info("http listening", extra={"port": self.http_port})
            self.ready.set()
            stop.wait()
        finally:
            stop.set()
            self.wake.set()  # let the sender notice the stop now
            self.labels.wake()
            if self.server is not None:
                self.server.should_exit = True
            if server_thread is not None:
                server_thread.join(5)
            if self.socket is not None:
                self.socket.close()
            self.sender.join(5)
            self.clips.join(5)
            self.labels.join(5)
            self.pin_release.join(5)
            self.training.join(5)
            self.gateway.close()
            self.store.close()

    def _connect_socket(self, stop: threading.Event) -> None:
        assert self.socket is not None
        backoff = Backoff(self.settings.retry_initial_seconds, self.settings.retry_max_seconds)
        while not stop.is_set():
            try:
                self.socket.start()
                return
            except Exception as exc:
                log.warning("socket mode connect failed; retrying", extra={"error": str(exc)[:200]})
                stop.wait(backoff.next_delay())

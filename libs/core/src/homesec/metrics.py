"""Prometheus metrics: the common set every service exports, and the /metrics server.

Each service owns one :class:`ServiceMetrics` with its own registry (so tests can run several
services in one process). Service-specific metrics are registered on ``metrics.registry``.
Names follow Prometheus conventions: ``homesec_`` prefix, base units, counters end in ``_total``.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from homesec import __version__
from homesec.pagemerge import merged_bytes

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Buckets for per-frame and per-message latencies (milliseconds to seconds)."""


class ServiceMetrics:
    """The metrics every homesec service exports."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.merged_memory = Gauge(
            "homesec_process_merged_memory_bytes",
            "This process's memory the kernel holds once with another process's identical "
            "pages (same-page merging, KSM; 0 where the host does not run it)",
            registry=r,
        )
        self.merged_memory.set_function(merged_bytes)
        self.build_info = Info("homesec_build", "homesec build information", registry=r)
        self.build_info.info({"service": service, "version": __version__})
        self.mqtt_connected = Gauge(
            "homesec_mqtt_connected", "1 while connected to the MQTT broker", registry=r
        )
        self.mqtt_reconnects = Counter(
            "homesec_mqtt_reconnects", "Connections to the broker after the first", registry=r
        )
        self.messages_received = Counter(
            "homesec_mqtt_messages_received",
            "MQTT messages received, by topic class",
            ["topic_class"],
            registry=r,
        )
        self.messages_published = Counter(
            "homesec_mqtt_messages_published",
            "MQTT messages handed to the broker connection, by topic class",
            ["topic_class"],
            registry=r,
        )
        self.messages_dropped = Counter(
            "homesec_mqtt_messages_dropped",
            "Messages not handed to the broker: QoS 0 while unreachable, or a full queue",
            ["topic_class"],
            registry=r,
        )
        self.invalid_messages = Counter(
            "homesec_mqtt_invalid_messages",
            "Received messages rejected by the contract (logged and skipped), by topic class",
            ["topic_class"],
            registry=r,
        )
        self.messages_unhandled = Counter(
            "homesec_mqtt_messages_unhandled",
            "Messages that arrived before any handler was registered for their topic",
            registry=r,
        )
        self.handler_errors = Counter(
            "homesec_mqtt_handler_errors",
            "Exceptions raised by message handlers (logged, the service continues)",
            ["topic_class"],
            registry=r,
        )
        self.handler_retries_pending = Gauge(
            "homesec_mqtt_handler_retries_pending",
            "QoS 1 messages whose handler failed, waiting for a retry (not acknowledged yet)",
            registry=r,
        )
        self.dead_letters = Counter(
            "homesec_mqtt_dead_letters",
            "QoS 1 messages parked on the dead-letter topic after their last retry",
            ["topic_class"],
            registry=r,
        )
        self.acks_abandoned = Counter(
            "homesec_mqtt_acks_abandoned",
            "Messages left unacknowledged because their connection closed (the broker resends)",
            registry=r,
        )
        self.messages_refused = Counter(
            "homesec_mqtt_messages_refused",
            "Published QoS 1 messages the broker refused (PUBACK with an error, e.g. an ACL)",
            registry=r,
        )
        self.subscriptions_refused = Counter(
            "homesec_mqtt_subscriptions_refused",
            "Subscriptions the broker refused (the service stays offline and retries)",
            registry=r,
        )
        self.outbox_errors = Counter(
            "homesec_mqtt_outbox_errors",
            "Durable outbox failures (the message is then sent from memory, not dropped)",
            registry=r,
        )
        self.handler_seconds = Histogram(
            "homesec_mqtt_handler_seconds",
            "Time spent in message handlers, by topic class",
            ["topic_class"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.up_since = Gauge(
            "homesec_start_time_seconds", "Unix time the service started", registry=r
        )
        self.up_since.set_to_current_time()


class MetricsServer:
    """``/metrics`` over HTTP in a daemon thread (prometheus-client's own server)."""

    def __init__(self, metrics: ServiceMetrics, host: str, port: int) -> None:
        self._metrics = metrics
        self._host = host
        self._port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0 in tests... see ``start``)."""
        return self._server.server_port if self._server else self._port

    def start(self) -> None:
        if self._port == 0:
            return
        self._server, self._thread = start_http_server(
            self._port, addr=self._host, registry=self._metrics.registry
        )

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

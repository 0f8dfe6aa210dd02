"""The MQTT bus every service talks through (paho-mqtt 2.x, MQTT v5).

* connects in the background and keeps retrying with exponential backoff (start-up included);
* re-subscribes after every reconnect, so retained state is re-delivered;
* publishes retained ``online``/``offline`` on ``<prefix>/<service>/availability`` with a Last Will;
* persistent session (fixed client id, ``clean_start=False``, session expiry) so QoS 1
  commands, events and labels published while the service was down arrive when it returns;
* typed publish/subscribe through :mod:`homesec.contract` channels: a payload that fails
  validation is logged with its topic, counted, and skipped; a handler that raises is logged and
  counted — neither stops the service.

Handlers run on paho's network thread: keep them short (hand heavy work to a worker, as the
detector does with :class:`homesec.latest.LatestSlot`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel

from homesec import __version__
from homesec.contract import (
    AVAILABILITY,
    SERVICE_STATUS,
    Availability,
    Channel,
    InvalidPayload,
    ServiceState,
    ServiceStatus,
    is_identifier,
)
from homesec.metrics import ServiceMetrics
from homesec.settings import BrokerSettings

log = logging.getLogger("homesec.bus")

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Received(Generic[M]):
    """A decoded message: the payload model plus where and how it arrived."""

    payload: M
    topic: str
    params: dict[str, str]
    retained: bool
    received_at: float


Handler = Callable[[Received[M]], None]


@dataclass
class _Subscription(Generic[M]):
    channel: Channel[M]
    pattern: str
    handler: Handler[M]
    qos: int


class Bus:
    """One service's connection to the broker."""

    def __init__(
        self,
        settings: BrokerSettings,
        service: str,
        metrics: ServiceMetrics | None = None,
        *,
        instance: str | None = None,
        persistent: bool = True,
    ) -> None:
        self.settings = settings
        self.service = service
        self.prefix = settings.topic_prefix
        self.metrics = metrics if metrics is not None else ServiceMetrics(service)
        self.client_id = f"{self.prefix.replace('/', '-')}-{service}" + (
            f"-{instance}" if instance else ""
        )
        self._persistent = persistent
        self._subscriptions: list[_Subscription[Any]] = []
        self._connect_listeners: list[Callable[[bool], None]] = []
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._ever_connected = False
        self._session_present = False
        self._ready_mid: int | None = None
        self._started = False
        self._status = ServiceStatus(service=service, version=__version__)
        self.availability_topic = AVAILABILITY.topic(self.prefix, service=service)

        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=True,
        )
        if settings.username:
            password = settings.password.get_secret_value() if settings.password else None
            client.username_pw_set(settings.username, password)
        if settings.tls:
            client.tls_set(ca_certs=str(settings.tls_ca_file) if settings.tls_ca_file else None)
            client.tls_insecure_set(settings.tls_insecure)
        client.will_set(self.availability_topic, b"offline", qos=1, retain=True)
        client.reconnect_delay_set(
            min_delay=max(1, int(settings.reconnect_min_seconds)),
            max_delay=max(1, int(settings.reconnect_max_seconds)),
        )
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client

    # ---- lifecycle ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self, wait_seconds: float | None = None) -> bool:
        """Connect in the background (retrying forever); optionally wait for the first CONNACK.

        Returns whether the bus is connected when it returns."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = (
            self.settings.session_expiry_seconds if self._persistent else 0
        )
        self._client.connect_async(
            self.settings.host,
            self.settings.port,
            keepalive=self.settings.keepalive_seconds,
            clean_start=not self._persistent,
            properties=props,
        )
        self._client.loop_start()
        self._started = True
        log.info(
            "connecting to broker",
            extra={
                "host": self.settings.host,
                "port": self.settings.port,
                "client_id": self.client_id,
            },
        )
        if wait_seconds is None:
            return self.connected
        return self.wait_connected(wait_seconds)

    def on_connected(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(session_present)`` after every (re)connection, on the network thread
        (e.g. to re-publish Home Assistant discovery documents)."""
        self._connect_listeners.append(listener)

    def wait_connected(self, timeout: float | None = None) -> bool:
        return self._connected.wait(timeout)

    def stop(self, timeout: float = 3.0) -> None:
        """Publish ``offline``, flush QoS 1 messages in flight and disconnect cleanly."""
        if not self._started:
            return
        if self.connected:
            info = self._client.publish(self.availability_topic, b"offline", qos=1, retain=True)
            self._wait_published(info, timeout)
            self.flush(timeout)
        self._started = False
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
        self.metrics.mqtt_connected.set(0)

    def flush(self, timeout: float = 3.0) -> bool:
        """Wait until no QoS 1 message is awaiting its acknowledgement."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._client._out_messages:  # paho has no public accessor for its queue
                return True
            time.sleep(0.01)
        return False

    # ---- publishing --------------------------------------------------------------------------

    def topic(self, channel: Channel[Any], **params: str) -> str:
        return channel.topic(self.prefix, **params)

    def publish(
        self, channel: Channel[M], payload: M, **params: str
    ) -> mqtt.MQTTMessageInfo | None:
        """Publish ``payload`` on ``channel``'s topic with the channel's QoS and retain flag.

        QoS 1 messages are queued by paho while disconnected and sent on reconnect. QoS 0
        (frames) are dropped while disconnected and counted. Returns paho's message info."""
        topic = channel.topic(self.prefix, **params)
        data, user_props = channel.encode(payload)
        props: Properties | None = None
        if user_props:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.UserProperty = list(user_props.items())
        if channel.qos == 0 and not self.connected:
            self.metrics.messages_dropped.labels(channel.name).inc()
            return None
        info = self._client.publish(
            topic,
            data,
            qos=channel.qos,
            retain=channel.retain,
            properties=props,
        )
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("publish failed", extra={"topic": topic, "rc": str(info.rc)})
            self.metrics.messages_dropped.labels(channel.name).inc()
            return info
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and channel.qos == 0:
            self.metrics.messages_dropped.labels(channel.name).inc()
            return info
        self.metrics.messages_published.labels(channel.name).inc()
        return info

    def publish_confirmed(
        self, channel: Channel[M], payload: M, timeout: float = 10.0, **params: str
    ) -> bool:
        """Publish and wait for the broker's PUBACK (QoS 1): True once the broker has it."""
        info = self.publish(channel, payload, **params)
        return info is not None and self._wait_published(info, timeout)

    def clear_retained(self, channel: Channel[Any], **params: str) -> None:
        """Delete a retained message (empty payload)."""
        self._client.publish(channel.topic(self.prefix, **params), b"", qos=1, retain=True)

    @staticmethod
    def _wait_published(info: mqtt.MQTTMessageInfo, timeout: float) -> bool:
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def set_status(self, state: ServiceState, detail: str = "", **info: Any) -> None:
        """Publish the service's retained status (``ok``/``degraded`` with a reason)."""
        with self._lock:
            changed = state != self._status.state or detail != self._status.detail
            self._status = ServiceStatus(
                service=self.service,
                state=state,
                detail=detail,
                version=__version__,
                since=time.time() if changed else self._status.since,
                info=info,
            )
            status = self._status
        self.publish(SERVICE_STATUS, status, service=self.service)

    @property
    def status(self) -> ServiceStatus:
        return self._status

    # ---- subscribing -------------------------------------------------------------------------

    def subscribe(
        self,
        channel: Channel[M],
        handler: Handler[M],
        *,
        shared_group: str | None = None,
        **params: str,
    ) -> None:
        """Call ``handler`` for each valid message on ``channel``.

        Subscribe BEFORE :meth:`start`: a persistent session delivers queued messages right
        after connecting, and a message that arrives before its handler exists is lost.

        Parameters left out are wildcards (``+``). ``shared_group`` uses an MQTT v5 shared
        subscription so several workers split the messages. Call before or after ``start``."""
        names = set(channel.params) | {
            p.strip("{}") for p in channel.template.split("/") if p.startswith("{")
        }
        full = {name: params.get(name, "+") for name in names}
        pattern = channel.topic(self.prefix, **full) if full else channel.topic(self.prefix)
        if shared_group:
            pattern = f"$share/{shared_group}/{pattern}"
        sub = _Subscription(channel=channel, pattern=pattern, handler=handler, qos=channel.qos)
        with self._lock:
            self._subscriptions.append(sub)
        if self._client.is_connected():
            self._client.subscribe(pattern, qos=sub.qos)

    def _subscription_for(self, topic: str) -> list[_Subscription[Any]]:
        with self._lock:
            subs = list(self._subscriptions)
        return [s for s in subs if mqtt.topic_matches_sub(_strip_share(s.pattern), topic)]

    # ---- paho callbacks (network thread) -----------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.error("broker refused connection", extra={"reason": str(reason_code)})
            return
        if self._ever_connected:
            self.metrics.mqtt_reconnects.inc()
        self._ever_connected = True
        self._session_present = bool(flags.session_present)
        with self._lock:
            patterns: dict[str, int] = {}
            for sub in self._subscriptions:
                patterns[sub.pattern] = max(sub.qos, patterns.get(sub.pattern, 0))
        if not patterns:
            self._ready(client)
            return
        # Ready (and "online") only once the broker confirmed the subscriptions: a message
        # published right after wait_connected() returns must reach our handlers.
        _, mid = client.subscribe(list(patterns.items()))
        self._ready_mid = mid

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            log.error("broker refused a subscription", extra={"reasons": refused})
        if mid == self._ready_mid:
            self._ready_mid = None
            self._ready(client)

    def _ready(self, client: mqtt.Client) -> None:
        client.publish(self.availability_topic, b"online", qos=1, retain=True)
        self.metrics.messages_published.labels(AVAILABILITY.name).inc()
        data, _ = SERVICE_STATUS.encode(self._status)
        client.publish(SERVICE_STATUS.topic(self.prefix, service=self.service), data, 1, True)
        self.metrics.mqtt_connected.set(1)
        self._connected.set()
        for listener in list(self._connect_listeners):
            try:
                listener(self._session_present)
            except Exception:
                log.exception("connect listener failed")
        log.info(
            "connected to broker",
            extra={
                "session_present": self._session_present,
                "subscriptions": len(self._subscriptions),
            },
        )

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        self.metrics.mqtt_connected.set(0)
        if was_connected and self._started:
            log.warning(
                "disconnected from broker; reconnecting", extra={"reason": str(reason_code)}
            )

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        received_at = time.time()
        subs = self._subscription_for(message.topic)
        if not subs:
            # Only possible when a persistent session delivers before subscribe() was called:
            # services must subscribe before start().
            self.metrics.messages_unhandled.inc()
            log.warning("message with no handler", extra={"topic": message.topic})
        for sub in subs:
            channel = sub.channel
            params = channel.match(self.prefix, message.topic) or {}
            self.metrics.messages_received.labels(channel.name).inc()
            if not message.payload and message.retain:
                continue  # a cleared retained message
            try:
                user_props = _user_properties(message.properties)
                payload = channel.decode(bytes(message.payload), user_props)
                for key, value in params.items():
                    if not is_identifier(value):
                        raise InvalidPayload(f"topic level {key}={value!r} is not an identifier")
            except InvalidPayload as exc:
                self.metrics.invalid_messages.labels(channel.name).inc()
                log.warning(
                    "invalid message skipped",
                    extra={
                        "topic": message.topic,
                        "reason": str(exc),
                        "bytes": len(message.payload),
                    },
                )
                continue
            started = time.perf_counter()
            try:
                sub.handler(
                    Received(
                        payload=payload,
                        topic=message.topic,
                        params=params,
                        retained=bool(message.retain),
                        received_at=received_at,
                    )
                )
            except Exception:
                self.metrics.handler_errors.labels(channel.name).inc()
                log.exception("message handler failed", extra={"topic": message.topic})
            finally:
                self.metrics.handler_seconds.labels(channel.name).observe(
                    time.perf_counter() - started
                )

    # ---- raw access --------------------------------------------------------------------------

    def publish_raw(
        self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish outside the contract (Home Assistant discovery documents only)."""
        self._client.publish(topic, payload, qos=qos, retain=retain)

    def subscribe_raw(
        self, topic: str, handler: Callable[[str, bytes], None], qos: int = 1
    ) -> None:
        """Subscribe outside the contract (e.g. ``homeassistant/status``, tracker topics)."""
        channel: Channel[Any] = _RAW_CHANNEL
        sub = _Subscription(
            channel=channel,
            pattern=topic,
            handler=lambda r: handler(r.topic, r.payload.root),
            qos=qos,
        )
        with self._lock:
            self._subscriptions.append(sub)
        if self._client.is_connected():
            self._client.subscribe(topic, qos=qos)


def _strip_share(pattern: str) -> str:
    if pattern.startswith("$share/"):
        return pattern.split("/", 2)[2]
    return pattern


def _user_properties(properties: Properties | None) -> dict[str, str]:
    if properties is None:
        return {}
    pairs = getattr(properties, "UserProperty", None) or []
    return {str(k): str(v) for k, v in pairs}


class _Raw(BaseModel):
    """Carrier for raw subscriptions: the undecoded payload."""

    root: bytes


class _RawChannel(Channel[_Raw]):
    def decode(self, raw: bytes, user_properties: dict[str, str] | None = None) -> _Raw:
        return _Raw(root=raw)

    def match(self, prefix: str, topic: str) -> dict[str, str] | None:
        return {}


_RAW_CHANNEL = _RawChannel(
    name="raw",
    template="",
    model=_Raw,
    qos=1,
    retain=False,
    codec=AVAILABILITY.codec,
    description="",
    publisher="",
)

__all__ = ["Availability", "Bus", "Handler", "Received"]

"""The MQTT bus every service talks through (paho-mqtt 2.x, MQTT v5).

Delivery follows each channel's class (:class:`homesec.contract.Delivery`), on both ends:

* ``stream`` (frames): QoS 0; dropped and counted while disconnected.
* ``state`` (retained, one writer): published QoS 1 while connected; while disconnected only the
  newest value per topic is kept, and every state value this bus published is sent again after
  each reconnect (a broker that lost its store gets it back). Subscribed with QoS 0: the broker
  sends the newest value on every (re)connect and queues nothing for an offline consumer.
* ``message`` (events, commands, labels): QoS 1 on a persistent session (fixed client id,
  ``clean_start=False``, session expiry). Published through a durable :class:`~homesec.outbox.
  Outbox` when the bus has one (the message survives the process dying before the PUBACK), with
  a bounded in-memory window. Received messages are **acknowledged only after every handler
  returned**: a handler that raises is retried with backoff off the network thread and, after
  ``handler_attempts`` tries, parked on the service's dead-letter topic and then acknowledged.
  Handlers must be idempotent (events by id, commands by request id, labels by event id).

Also: connects in the background with exponential backoff (start-up included); re-subscribes
after every reconnect and is "online" (retained ``online`` on ``<prefix>/<service>/availability``,
Last Will ``offline``) only once the broker granted every subscription; typed publish/subscribe
through :mod:`homesec.contract`; a payload that fails validation is logged, counted, acknowledged
and skipped. :meth:`Bus.publish` returns a :class:`PublishFuture` fed by paho's ``on_publish``;
:meth:`Bus.subscribe` returns a :class:`Subscription` whose SUBACK can be awaited.

Handlers run on paho's network thread (retries on the bus's retry thread): keep them short.
"""

from __future__ import annotations

import base64
import heapq
import itertools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel

from homesec import __version__
from homesec.backoff import Backoff, backoff_delay
from homesec.contract import (
    AVAILABILITY,
    DEAD_LETTERS,
    SERVICE_STATUS,
    Availability,
    Channel,
    DeadLetter,
    Delivery,
    InvalidPayload,
    ServiceState,
    ServiceStatus,
    is_identifier,
)
from homesec.metrics import ServiceMetrics
from homesec.outbox import Outbox
from homesec.settings import BrokerSettings

log = logging.getLogger("homesec.bus")

M = TypeVar("M", bound=BaseModel)

OUTBOX_WINDOW = 100
"""Outbox messages handed to paho at a time while connected (the rest wait on disk)."""


class _Delivery:
    """The acknowledgement of one received message: sent once every handler finished (retries
    included) and every :meth:`Received.hold` was released."""

    def __init__(self, bus: Bus | None, message: mqtt.MQTTMessage | None, generation: int) -> None:
        self._bus = bus
        self._message = message
        self._generation = generation
        self._lock = threading.Lock()
        self._holds = 0
        self._finished = False
        self._acked = False

    def hold(self) -> Ack:
        with self._lock:
            self._holds += 1
        return Ack(self._release)

    def finish(self) -> None:
        with self._lock:
            self._finished = True
            due = self._holds == 0 and not self._acked
            self._acked = self._acked or due
        if due:
            self._send()

    def _release(self) -> None:
        with self._lock:
            self._holds -= 1
            due = self._finished and self._holds == 0 and not self._acked
            self._acked = self._acked or due
        if due:
            self._send()

    def _send(self) -> None:
        if self._bus is not None and self._message is not None:
            self._bus._ack(self._message, self._generation)


class Ack:
    """Acknowledges a held message when called (once; from any thread)."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            release, self._release = self._release, None
        if release is not None:
            release()


_NO_DELIVERY = _Delivery(None, None, 0)


@dataclass(frozen=True)
class Received(Generic[M]):
    """A decoded message: the payload model plus where and how it arrived."""

    payload: M
    topic: str
    params: dict[str, str]
    retained: bool
    received_at: float
    duplicate: bool = False
    delivery: _Delivery = field(default=_NO_DELIVERY, repr=False, compare=False)

    def hold(self) -> Ack:
        """Keep the broker's copy until the returned :class:`Ack` is called: for a handler
        that hands the message to a worker and may only acknowledge it once the work is done
        (if the process dies first, the broker delivers it again)."""
        return self.delivery.hold()


Handler = Callable[[Received[M]], None]


class PublishFuture:
    """Completes when the broker acknowledged a QoS 1 message (PUBACK), or when a QoS 0 message
    was written; ``error`` says why when it never will (dropped, refused)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.error: str | None = None

    def _resolve(self, error: str | None = None) -> None:
        self.error = error
        self._event.set()

    def done(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once the broker has the message (False on timeout or failure)."""
        return self._event.wait(timeout) and self.error is None

    @property
    def ok(self) -> bool:
        return self.done() and self.error is None

    @property
    def dropped(self) -> bool:
        """True when the message was not handed to the broker connection (e.g. a frame while
        disconnected); a pending QoS 1 message is not dropped."""
        return self.done() and self.error is not None

    @classmethod
    def failed(cls, error: str) -> PublishFuture:
        future = cls()
        future._resolve(error)
        return future

    @classmethod
    def completed(cls) -> PublishFuture:
        future = cls()
        future._resolve()
        return future


class Subscription:
    """A subscription's standing with the broker on the current connection."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._granted = threading.Event()
        self.refused: str | None = None

    @property
    def granted(self) -> bool:
        return self._granted.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the broker granted this subscription (SUBACK) on the current
        connection; retained messages for it arrive right after that."""
        return self._granted.wait(timeout)


@dataclass
class _Handler(Generic[M]):
    channel: Channel[M]
    handler: Handler[M]
    subscription: Subscription


@dataclass
class _Retry:
    due: float
    order: int
    message: mqtt.MQTTMessage
    pending: list[tuple[_Handler[Any], Received[Any]]]
    generation: int
    attempts: int
    first_failed_at: float
    error: str = ""
    delivery: _Delivery = _NO_DELIVERY

    def __lt__(self, other: _Retry) -> bool:
        return (self.due, self.order) < (other.due, other.order)


@dataclass
class _StateValue:
    data: bytes
    properties: Properties | None
    channel: str


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
        outbox_path: Path | None = None,
    ) -> None:
        self.settings = settings
        self.service = service
        self.prefix = settings.topic_prefix
        self.metrics = metrics if metrics is not None else ServiceMetrics(service)
        self.client_id = f"{self.prefix.replace('/', '-')}-{service}" + (
            f"-{instance}" if instance else ""
        )
        self._persistent = persistent
        self._handlers: list[_Handler[Any]] = []
        self._patterns: dict[str, tuple[int, Subscription]] = {}
        self._suback_mids: dict[int, list[str]] = {}
        self._suback_lock = threading.Lock()
        self._connect_listeners: list[Callable[[bool], None]] = []
        self._lock = threading.RLock()
        self._connected = threading.Event()
        self._ever_connected = False
        self._session_present = False
        self._generation = 0
        self._started = False
        self._status = ServiceStatus(service=service, version=__version__)
        self.availability_topic = AVAILABILITY.topic(self.prefix, service=service)
        # publishing
        self._futures: dict[int, PublishFuture] = {}
        self._qos0_mids: set[int] = set()  # QoS 0 writes pending: failed on a disconnect
        self._early_acks: dict[int, str] = {}  # mid -> refusal reason ("" when acknowledged)
        self._state: dict[str, _StateValue] = {}
        self._state_lock = threading.Lock()
        self._outbox: Outbox | None = None
        self._outbox_mids: dict[int, int] = {}  # paho mid -> outbox row
        self._outbox_handed: set[int] = set()  # rows paho holds in this process
        self._outbox_last = 0
        self._row_futures: dict[int, PublishFuture] = {}
        self._pump_wake = threading.Event()
        if outbox_path is not None:
            self._open_outbox(outbox_path)
        # handler retries
        self._retries: list[_Retry] = []
        self._retry_cond = threading.Condition()
        self._retry_order = itertools.count()
        self._retry_thread: threading.Thread | None = None
        self._resubscribe_backoff = Backoff(
            settings.reconnect_min_seconds,
            max(settings.reconnect_min_seconds, settings.reconnect_max_seconds),
        )

        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=True,
            manual_ack=True,
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
        client.max_queued_messages_set(settings.max_queued_messages)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        self._client = client

    def _open_outbox(self, path: Path) -> None:
        try:
            self._outbox = Outbox(path)
        except (sqlite3.Error, OSError) as exc:
            # Fail secure: without the file, messages still go out (in memory) — never dropped.
            log.error(
                "outbox unavailable; messages are kept in memory only",
                extra={"path": str(path), "error": str(exc)},
            )
            self.metrics.outbox_errors.inc()

    # ---- lifecycle ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True once connected and every subscription was granted ("online")."""
        return self._connected.is_set()

    def start(self, wait_seconds: float | None = None) -> bool:
        """Connect in the background (retrying forever); optionally wait until online.

        Returns whether the bus is online when it returns."""
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
        self._started = True
        self._retry_thread = threading.Thread(
            target=self._retry_loop, name=f"bus-retry-{self.service}", daemon=True
        )
        self._retry_thread.start()
        if self._outbox is not None:
            threading.Thread(
                target=self._pump_loop, name=f"bus-outbox-{self.service}", daemon=True
            ).start()
        self._client.loop_start()
        log.info(
            "connecting to broker",
            extra={
                "host": self.settings.host,
                "port": self.settings.port,
                "client_id": self.client_id,
                "outbox_backlog": self._outbox.count() if self._outbox else 0,
            },
        )
        if wait_seconds is None:
            return self.connected
        return self.wait_connected(wait_seconds)

    def on_connected(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(session_present)`` after every (re)connection, once online, on the
        network thread (e.g. to re-publish Home Assistant discovery documents)."""
        self._connect_listeners.append(listener)

    def wait_connected(self, timeout: float | None = None) -> bool:
        return self._connected.wait(timeout)

    def stop(self, timeout: float = 3.0) -> None:
        """Publish ``offline``, flush QoS 1 messages in flight and disconnect cleanly."""
        if not self._started:
            return
        if self.connected:
            self.flush(timeout)
            future = self._send(self.availability_topic, b"offline", 1, True, None)
            future.wait(timeout)
        self._started = False
        with self._retry_cond:
            self._retry_cond.notify_all()
        self._pump_wake.set()
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
        self.metrics.mqtt_connected.set(0)
        if self._outbox is not None:
            self._outbox.close()

    def flush(self, timeout: float = 3.0) -> bool:
        """Wait until no QoS 1 message handed to the connection awaits its PUBACK and the
        outbox is drained."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                idle = len(self._futures) == len(self._qos0_mids) and not self._outbox_handed
            if idle and (self._outbox is None or self._outbox.count() == 0):
                return True
            time.sleep(0.01)
        return False

    # ---- publishing --------------------------------------------------------------------------

    def topic(self, channel: Channel[Any], **params: str) -> str:
        return channel.topic(self.prefix, **params)

    def publish(self, channel: Channel[M], payload: M, **params: str) -> PublishFuture:
        """Publish ``payload`` on ``channel``'s topic by the channel's delivery class (see the
        module docstring). The future completes when the broker has the message."""
        topic = channel.topic(self.prefix, **params)
        data, user_props = channel.encode(payload)
        props: Properties | None = None
        if user_props:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.UserProperty = list(user_props.items())
        delivery = channel.delivery
        if delivery is Delivery.STREAM:
            if not self.connected:
                self.metrics.messages_dropped.labels(channel.name).inc()
                return PublishFuture.failed("not connected")
            return self._counted(channel.name, self._send(topic, data, 0, False, props))
        if delivery is Delivery.STATE:
            return self._publish_state(channel.name, topic, data, props)
        return self._publish_message(channel.name, topic, data, user_props, props)

    def publish_confirmed(
        self, channel: Channel[M], payload: M, timeout: float = 10.0, **params: str
    ) -> bool:
        """Publish and wait for the broker's PUBACK: True once the broker has it."""
        return self.publish(channel, payload, **params).wait(timeout)

    def clear_retained(self, channel: Channel[Any], **params: str) -> PublishFuture:
        """Delete a retained message (empty payload), now or on reconnect."""
        return self._publish_state(channel.name, channel.topic(self.prefix, **params), b"", None)

    def _counted(self, channel: str, future: PublishFuture) -> PublishFuture:
        if future.done() and future.error is not None:
            self.metrics.messages_dropped.labels(channel).inc()
        else:
            self.metrics.messages_published.labels(channel).inc()
        return future

    def _publish_state(
        self, channel: str, topic: str, data: bytes, props: Properties | None
    ) -> PublishFuture:
        # _state_lock orders this send against a resend after a reconnect, so an older value
        # can never follow a newer one onto the broker
        with self._state_lock:
            with self._lock:
                self._state[topic] = _StateValue(data, props, channel)
            if not self.connected:
                # latest-wins: kept (replacing an older unsent value) and sent on reconnect
                return PublishFuture.failed("not connected; sent on reconnect")
            return self._counted(channel, self._send(topic, data, 1, True, props))

    def _publish_message(
        self,
        channel: str,
        topic: str,
        data: bytes,
        user_props: dict[str, str],
        props: Properties | None,
    ) -> PublishFuture:
        if self._outbox is not None:
            try:
                row = self._outbox.add(topic, channel, data, user_props, time.time())
            except (sqlite3.Error, OSError) as exc:
                self.metrics.outbox_errors.inc()
                log.error(
                    "outbox write failed; sending from memory",
                    extra={"topic": topic, "error": str(exc)},
                )
            else:
                future = PublishFuture()
                with self._lock:
                    self._row_futures[row] = future
                self.metrics.messages_published.labels(channel).inc()
                self._pump_wake.set()
                return future
        return self._counted(channel, self._send(topic, data, 1, False, props))

    def _pump_loop(self) -> None:
        """Hand stored outbox rows to paho, oldest first, at most ``OUTBOX_WINDOW`` awaiting
        their PUBACK, while online (the bus's pump thread)."""
        assert self._outbox is not None
        while self._started:
            self._pump_wake.wait(1.0)
            self._pump_wake.clear()
            if not self.connected:
                continue
            with self._lock:
                room = OUTBOX_WINDOW - len(self._outbox_handed)
                after = self._outbox_last
            if room <= 0:
                continue
            try:
                rows = self._outbox.pending(after=after, limit=room)
            except sqlite3.Error as exc:
                log.error("outbox unreadable", extra={"error": str(exc)})
                continue
            for row in rows:
                props: Properties | None = None
                if row.properties:
                    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                    props.UserProperty = list(row.properties.items())
                with self._lock:
                    future = self._row_futures.get(row.id) or PublishFuture()
                    self._outbox_handed.add(row.id)
                    self._outbox_last = max(self._outbox_last, row.id)
                sent = self._send(row.topic, row.payload, 1, False, props, row.id, future)
                if sent.done() and sent.error is not None:
                    with self._lock:  # e.g. paho's queue is full: try again on the next wake
                        self._outbox_handed.discard(row.id)
                        self._outbox_last = min(self._outbox_last, row.id - 1)
                    break

    def _send(
        self,
        topic: str,
        data: bytes,
        qos: int,
        retain: bool,
        props: Properties | None,
        outbox_row: int | None = None,
        future: PublishFuture | None = None,
    ) -> PublishFuture:
        """Hand one message to paho and track it by message id (every publish is tracked, so
        an ``on_publish`` that comes before this returns is matched by :attr:`_early_acks`)."""
        info = self._client.publish(topic, data, qos=qos, retain=retain, properties=props)
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos == 0:
            return PublishFuture.failed("not connected")
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("publish failed", extra={"topic": topic, "rc": str(info.rc)})
            return PublishFuture.failed(str(info.rc))
        future = future if future is not None else PublishFuture()
        with self._lock:
            if outbox_row is not None:
                self._outbox_mids[info.mid] = outbox_row
            early = self._early_acks.pop(info.mid, None)
            if early is not None:
                self._acked(info.mid, future, early or None)
            else:
                self._futures[info.mid] = future
                if qos == 0:
                    self._qos0_mids.add(info.mid)
        return future

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        error = str(reason_code) if reason_code.is_failure else None
        with self._lock:
            future = self._futures.pop(mid, None)
            self._qos0_mids.discard(mid)
            if future is None:
                self._early_acks[mid] = error or ""  # before _send registered it
                return
            self._acked(mid, future, error)

    def _acked(self, mid: int, future: PublishFuture, error: str | None) -> None:
        """Complete a tracked publish (caller holds the lock)."""
        row = self._outbox_mids.pop(mid, None)
        if row is not None and self._outbox is not None:
            self._outbox.remove(row)
            self._outbox_handed.discard(row)
            self._row_futures.pop(row, None)
            self._pump_wake.set()
        if error is not None:
            self.metrics.messages_refused.inc()
            log.error("broker refused a message", extra={"mid": mid, "reason": error})
        future._resolve(error)

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
    ) -> Subscription:
        """Call ``handler`` for each valid message on ``channel``; returns the subscription,
        whose :meth:`Subscription.wait` returns once the broker granted it.

        Subscribe BEFORE :meth:`start`: a persistent session delivers queued messages right
        after connecting, and a message that arrives before its handler exists is lost.

        Parameters left out are wildcards (``+``). ``shared_group`` uses an MQTT v5 shared
        subscription so several workers split the messages. State is subscribed with QoS 0
        and messages with QoS 1 (:attr:`Channel.subscribe_qos`)."""
        names = set(channel.params) | {
            p.strip("{}") for p in channel.template.split("/") if p.startswith("{")
        }
        full = {name: params.get(name, "+") for name in names}
        pattern = channel.topic(self.prefix, **full) if full else channel.topic(self.prefix)
        if shared_group:
            pattern = f"$share/{shared_group}/{pattern}"
        return self._add_handler(channel, pattern, handler, channel.subscribe_qos)

    def _add_handler(
        self, channel: Channel[M], pattern: str, handler: Handler[M], qos: int
    ) -> Subscription:
        with self._lock:
            known = self._patterns.get(pattern)
            if known is None or known[0] < qos:
                sub = known[1] if known is not None else Subscription(pattern)
                self._patterns[pattern] = (qos, sub)
                renew = True
            else:
                sub, renew = known[1], False
            self._handlers.append(_Handler(channel=channel, handler=handler, subscription=sub))
        if renew and self._client.is_connected():
            sub._granted.clear()
            self._subscribe([pattern])
        return sub

    def _subscribe(self, patterns: list[str]) -> None:
        with self._lock:
            items = [(p, self._patterns[p][0]) for p in patterns]
        # _suback_lock is held across the call so a SUBACK that comes back before subscribe()
        # returns waits for its mid to be recorded (paho takes none of its own locks for it)
        with self._suback_lock:
            result, mid = self._client.subscribe(items)
            if result == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
                self._suback_mids[mid] = patterns

    def _handlers_for(self, topic: str) -> list[_Handler[Any]]:
        with self._lock:
            handlers = list(self._handlers)
        return [
            h
            for h in handlers
            if mqtt.topic_matches_sub(_strip_share(h.subscription.pattern), topic)
        ]

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
        with self._suback_lock:
            self._suback_mids.clear()
        with self._lock:
            self._generation += 1
            # rows paho held are re-sent by paho itself; only unsent rows go through the pump
            patterns = list(self._patterns)
            for _, sub in self._patterns.values():
                sub._granted.clear()
                sub.refused = None
        if not patterns:
            self._ready()
            return
        # Online only once the broker granted the subscriptions: a message published right
        # after wait_connected() returns must reach our handlers.
        self._subscribe(patterns)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self._suback_lock:
            patterns = self._suback_mids.pop(mid, [])
        with self._lock:
            refused: list[str] = []
            for pattern, code in zip(patterns, reason_codes, strict=False):
                sub = self._patterns[pattern][1]
                if code.is_failure:
                    sub.refused = str(code)
                    refused.append(pattern)
                else:
                    sub.refused = None
                    sub._granted.set()
            all_granted = all(s.granted for _, s in self._patterns.values())
        if refused:
            delay = self._resubscribe_backoff.next_delay()
            self.metrics.subscriptions_refused.inc(len(refused))
            log.error(
                "broker refused subscriptions; not online, retrying",
                extra={
                    "patterns": refused,
                    "reasons": [str(c) for c in reason_codes if c.is_failure],
                    "retry_in": delay,
                },
            )
            timer = threading.Timer(delay, self._retry_subscribe, args=(refused,))
            timer.daemon = True
            timer.start()
            return
        if all_granted and not self._connected.is_set():
            self._resubscribe_backoff.reset()
            self._ready()

    def _retry_subscribe(self, patterns: list[str]) -> None:
        if self._started and self._client.is_connected():
            self._subscribe(patterns)

    def _ready(self) -> None:
        self._send(self.availability_topic, b"online", 1, True, None)
        self.metrics.messages_published.labels(AVAILABILITY.name).inc()
        self.metrics.mqtt_connected.set(1)
        self._connected.set()
        status_topic = SERVICE_STATUS.topic(self.prefix, service=self.service)
        data, _ = SERVICE_STATUS.encode(self._status)
        with self._lock:  # the first status goes out with the other state values
            self._state.setdefault(status_topic, _StateValue(data, None, SERVICE_STATUS.name))
        self._resend_state()
        self._pump_wake.set()
        for listener in list(self._connect_listeners):
            try:
                listener(self._session_present)
            except Exception:
                log.exception("connect listener failed")
        log.info(
            "connected to broker",
            extra={
                "session_present": self._session_present,
                "subscriptions": len(self._patterns),
            },
        )

    def _resend_state(self) -> None:
        """Send every state value this bus published (latest per topic) after a reconnect."""
        with self._state_lock:
            with self._lock:
                values = list(self._state.items())
                for topic, value in values:
                    if not value.data:
                        del self._state[topic]  # a clear is sent once
            for topic, value in values:
                self._counted(
                    value.channel, self._send(topic, value.data, 1, True, value.properties)
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
        with self._lock:  # QoS 0 messages not written yet are gone with the connection
            lost = [self._futures.pop(mid) for mid in self._qos0_mids if mid in self._futures]
            self._qos0_mids.clear()
        for future in lost:
            future._resolve("connection lost")
        if was_connected and self._started:
            log.warning(
                "disconnected from broker; reconnecting", extra={"reason": str(reason_code)}
            )

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        generation = self._generation
        delivery = _Delivery(self, message, generation)
        received_at = time.time()
        handlers = self._handlers_for(message.topic)
        if not handlers:
            # Only possible when a persistent session delivers before subscribe() was called:
            # services must subscribe before start().
            self.metrics.messages_unhandled.inc()
            log.warning("message with no handler", extra={"topic": message.topic})
        failed: list[tuple[_Handler[Any], Received[Any]]] = []
        error = ""
        for entry in handlers:
            received = self._decode(entry, message, received_at, delivery)
            if received is None:
                continue
            problem = self._call(entry, received)
            if problem is not None:
                failed.append((entry, received))
                error = problem
        if failed and message.qos == 1:
            self._schedule_retry(
                _Retry(
                    due=0.0,
                    order=next(self._retry_order),
                    message=message,
                    pending=failed,
                    generation=generation,
                    attempts=1,
                    first_failed_at=received_at,
                    error=error,
                    delivery=delivery,
                )
            )
            return
        delivery.finish()

    def _decode(
        self,
        entry: _Handler[Any],
        message: mqtt.MQTTMessage,
        received_at: float,
        delivery: _Delivery,
    ) -> Received[Any] | None:
        channel = entry.channel
        params = channel.match(self.prefix, message.topic) or {}
        self.metrics.messages_received.labels(channel.name).inc()
        if not message.payload and message.retain:
            return None  # a cleared retained message
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
                extra={"topic": message.topic, "reason": str(exc), "bytes": len(message.payload)},
            )
            return None
        return Received(
            payload=payload,
            topic=message.topic,
            params=params,
            retained=bool(message.retain),
            received_at=received_at,
            duplicate=bool(message.dup),
            delivery=delivery,
        )

    def _call(self, entry: _Handler[Any], received: Received[Any]) -> str | None:
        """Run one handler; the error text when it raised."""
        started = time.perf_counter()
        try:
            entry.handler(received)
            return None
        except Exception as exc:
            self.metrics.handler_errors.labels(entry.channel.name).inc()
            log.exception("message handler failed", extra={"topic": received.topic})
            return f"{type(exc).__name__}: {exc}"[:500]
        finally:
            self.metrics.handler_seconds.labels(entry.channel.name).observe(
                time.perf_counter() - started
            )

    def _ack(self, message: mqtt.MQTTMessage, generation: int) -> None:
        """PUBACK a QoS 1 message, unless the connection it came on is gone (then the broker
        sends it again and the idempotent handlers see it once more)."""
        if message.qos != 1:
            return
        if generation != self._generation:
            self.metrics.acks_abandoned.inc()
            return
        self._client.ack(message.mid, message.qos)

    # ---- handler retries (bus retry thread) --------------------------------------------------

    def _schedule_retry(self, item: _Retry) -> None:
        item.due = time.monotonic() + backoff_delay(
            item.attempts,
            self.settings.handler_retry_min_seconds,
            self.settings.handler_retry_max_seconds,
        )
        with self._retry_cond:
            heapq.heappush(self._retries, item)
            self.metrics.handler_retries_pending.set(len(self._retries))
            self._retry_cond.notify()

    def _retry_loop(self) -> None:
        while self._started:
            with self._retry_cond:
                while self._started and (
                    not self._retries or self._retries[0].due > time.monotonic()
                ):
                    wait = self._retries[0].due - time.monotonic() if self._retries else None
                    self._retry_cond.wait(wait)
                if not self._started:
                    return
                item = heapq.heappop(self._retries)
                self.metrics.handler_retries_pending.set(len(self._retries))
            try:
                self._retry(item)
            except Exception:
                log.exception("handler retry failed unexpectedly")

    def _retry(self, item: _Retry) -> None:
        if item.generation != self._generation:
            self.metrics.acks_abandoned.inc()
            log.info(
                "handler retry dropped: connection changed, the broker redelivers",
                extra={"topic": item.message.topic},
            )
            return
        still: list[tuple[_Handler[Any], Received[Any]]] = []
        for entry, received in item.pending:
            problem = self._call(entry, received)
            if problem is not None:
                still.append((entry, received))
                item.error = problem
        item.attempts += 1
        if not still:
            log.info(
                "message handled after retry",
                extra={"topic": item.message.topic, "attempts": item.attempts},
            )
            item.delivery.finish()
            return
        item.pending = still
        if item.attempts < self.settings.handler_attempts:
            self._schedule_retry(item)
            return
        self._park(item)

    def _park(self, item: _Retry) -> None:
        """Publish the message on the dead-letter topic (durably), then acknowledge it."""
        channel = item.pending[0][0].channel.name
        letter = DeadLetter(
            service=self.service if is_identifier(self.service) else "unknown",
            topic=item.message.topic,
            channel=channel,
            error=item.error or "handler failed",
            attempts=item.attempts,
            first_failed_at=item.first_failed_at,
            payload_base64=base64.b64encode(bytes(item.message.payload)).decode(),
        )
        self.publish(DEAD_LETTERS, letter, service=letter.service)
        self.metrics.dead_letters.labels(channel).inc()
        log.error(
            "message parked on the dead-letter topic after its last retry",
            extra={"topic": item.message.topic, "attempts": item.attempts, "error": item.error},
        )
        item.delivery.finish()

    # ---- raw access --------------------------------------------------------------------------

    def publish_raw(
        self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False
    ) -> PublishFuture:
        """Publish outside the contract (Home Assistant discovery documents only)."""
        data = payload.encode() if isinstance(payload, str) else payload
        return self._send(topic, data, qos, retain, None)

    def subscribe_raw(
        self, topic: str, handler: Callable[[str, bytes], None], qos: int = 1
    ) -> Subscription:
        """Subscribe outside the contract (e.g. ``homeassistant/status``, tracker topics)."""
        return self._add_handler(
            _RAW_CHANNEL, topic, lambda r: handler(r.topic, r.payload.root), qos
        )


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

__all__ = ["Ack", "Availability", "Bus", "Handler", "PublishFuture", "Received", "Subscription"]

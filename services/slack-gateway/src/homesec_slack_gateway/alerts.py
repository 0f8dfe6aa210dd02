"""Motion events → durable alert queue → Slack (image upload, then training buttons).

:class:`AlertIntake` runs on the bus thread: it decides once per event whether to queue an
alert (first message whose ``decision.alert`` is true, per-camera rate limit) and stores the
snapshot bytes with it. :class:`AlertSender` is a thread that delivers the queue in order,
retrying with exponential backoff and honouring Slack's ``Retry-After``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from slack_sdk import WebClient

from homesec.bus import Bus, Received
from homesec.contract import MAX_JPEG_BYTES, MOTION_EVENTS, MotionEvent, SystemSetting
from homesec.media import UnsafePath, resolve_inside
from homesec.state import SystemStateView
from homesec_slack_gateway.buttons import label_blocks
from homesec_slack_gateway.channel import ChannelResolver, PostedFileCheck
from homesec_slack_gateway.metrics import GatewayMetrics
from homesec_slack_gateway.mirror import Mirror
from homesec_slack_gateway.slack_api import describe_error, retry_after_seconds
from homesec_slack_gateway.store import QueuedAlert, Stage, Store

log = logging.getLogger("homesec.slack_gateway.alerts")

PRUNE_INTERVAL_SECONDS = 3600.0


def format_time(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(ts))


def alert_text(event: MotionEvent) -> str:
    """The alert's message: camera, time, detector figures and the reason."""
    figures = [f"motion {event.motion_score:.0%}", f"area {event.area:.1%}"]
    if event.person_score is not None:
        figures.insert(0, f"person {event.person_score:.0%}")
    return (
        f":rotating_light: *Motion on {event.camera}* at {format_time(event.started_at)}\n"
        f"{' · '.join(figures)} · {event.decision.reason}\n"
        f"Event `{event.event_id}`"
    )


class AlertIntake:
    """Subscribes to motion events and queues each alerting event once."""

    def __init__(
        self,
        bus: Bus,
        store: Store,
        mirror: Mirror,
        state: SystemStateView,
        metrics: GatewayMetrics,
        media_dir: Path,
        min_interval: float,
        wake: threading.Event,
    ) -> None:
        self._store = store
        self._mirror = mirror
        self._state = state
        self._metrics = metrics
        self._media_dir = media_dir
        self._min_interval = min_interval
        self._wake = wake
        self._seen: OrderedDict[str, None] = OrderedDict()
        bus.subscribe(MOTION_EVENTS, self._on_event)

    def _on_event(self, msg: Received[MotionEvent]) -> None:
        event = msg.payload
        self._store.set_meta("last_event_at", str(event.started_at))
        self._store.set_meta("last_event_camera", event.camera)
        if not event.decision.alert or event.event_id in self._seen:
            return
        self._remember(event.event_id)
        image = self._image_for(event)
        result = self._store.add_alert(
            event_id=event.event_id,
            camera=event.camera,
            text=alert_text(event),
            training=self._state.get(SystemSetting.TRAINING),
            image=image,
            min_interval=self._min_interval,
        )
        if result == "rate_limited":
            self._metrics.alerts_suppressed.inc()
        log.info(
            "alert event",
            extra={"event_id": event.event_id, "camera": event.camera, "result": result},
        )
        if result == "queued":
            self._metrics.alert_backlog.set(self._store.alert_backlog())
            self._wake.set()

    def _remember(self, event_id: str) -> None:
        self._seen[event_id] = None
        while len(self._seen) > 1000:
            self._seen.popitem(last=False)

    def _image_for(self, event: MotionEvent) -> bytes | None:
        """The event's snapshot file, else the camera's latest retained snapshot."""
        if event.snapshot:
            try:
                path = resolve_inside(self._media_dir, event.snapshot)
                if path.is_file() and path.stat().st_size <= MAX_JPEG_BYTES:
                    data = path.read_bytes()
                    if data[:2] == b"\xff\xd8":
                        return data
                log.warning("event snapshot missing or not a JPEG", extra={"path": event.snapshot})
            except (UnsafePath, OSError) as exc:
                log.warning("event snapshot refused", extra={"reason": str(exc)[:200]})
        frame = self._mirror.latest_snapshot(event.camera)
        return frame.jpeg if frame is not None else None


class AlertSender:
    """Delivers queued alerts in order, one at a time, never twice, retrying forever."""

    def __init__(
        self,
        store: Store,
        client: WebClient | None,
        channel: str,
        metrics: GatewayMetrics,
        wake: threading.Event,
        initial_delay: float,
        max_delay: float,
        on_health: Callable[[str | None], None] | None = None,
    ) -> None:
        self._on_health = on_health or (lambda error: None)
        self._store = store
        self._client = client
        self._channel = channel
        self._resolver = ChannelResolver(channel)
        self._posted = PostedFileCheck()
        self._metrics = metrics
        self._wake = wake
        self._initial = initial_delay
        self._max = max_delay
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def start(self, stop: threading.Event) -> None:
        self._thread = threading.Thread(
            target=self.run, args=(stop,), name="slack-alert-sender", daemon=True
        )
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self, stop: threading.Event) -> None:
        delay = self._initial
        warned = False
        pruned_at = 0.0
        while not stop.is_set():
            if time.monotonic() - pruned_at > PRUNE_INTERVAL_SECONDS:
                self._store.prune()
                pruned_at = time.monotonic()
            self._metrics.alert_backlog.set(self._store.alert_backlog())
            alert = self._store.next_alert()
            if alert is None:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            if self._client is None or not self._channel:
                if not warned:
                    log.error(
                        "alerts cannot be posted: set SLACK_BOT_TOKEN and "
                        "HOMESEC_SLACK_GATEWAY_ALERT_CHANNEL; they stay queued",
                        extra={"backlog": self._store.alert_backlog()},
                    )
                    warned = True
                self._wake.wait(5.0)
                self._wake.clear()
                continue
            try:
                self._deliver(self._client, alert)
            except Exception as exc:  # every failure is retried; the row stays queued
                if self.last_error is None:
                    self._on_health(describe_error(exc))
                self.last_error = describe_error(exc)
                self._metrics.alerts_failed.inc()
                self._store.record_failure(alert.id, self.last_error)
                wait = retry_after_seconds(exc) or delay
                delay = min(delay * 2, self._max)
                log.warning(
                    "alert delivery failed; retrying",
                    extra={
                        "event_id": alert.event_id,
                        "error": self.last_error,
                        "retry_in": round(wait, 3),
                    },
                )
                stop.wait(wait)
                continue
            delay = self._initial
            if self.last_error is not None:
                self._on_health(None)
            self.last_error = None

    def _deliver(self, client: WebClient, alert: QueuedAlert) -> None:
        channel = self._resolver.channel_id(client)
        if alert.stage is Stage.QUEUED:
            filename = f"{alert.event_id}.jpg"
            if (
                alert.image
                and alert.attempts
                and self._posted.already_posted(
                    client, channel, filename, since=alert.created_at - 60
                )
            ):
                # an earlier attempt's upload went through but its answer was lost
                self._metrics.alert_reposts_avoided.inc()
                log.info("alert image already in the channel", extra={"event_id": alert.event_id})
            elif alert.image:
                client.files_upload_v2(
                    channel=channel,
                    content=alert.image,
                    filename=filename,
                    title=f"{alert.camera} {format_time(alert.created_at)}",
                    initial_comment=alert.text,
                )
            else:
                client.chat_postMessage(
                    channel=channel, text=alert.text + "\n(no snapshot available)"
                )
            next_stage = Stage.UPLOADED if alert.training else Stage.SENT
            self._store.set_stage(alert.id, next_stage)
            if next_stage is Stage.SENT:
                self._sent(alert)
                return
        client.chat_postMessage(
            channel=channel,
            text=f"Was someone there? Event {alert.event_id} on {alert.camera}",
            blocks=label_blocks(alert.event_id, alert.camera),
        )
        self._store.set_stage(alert.id, Stage.SENT)
        self._sent(alert)

    def _sent(self, alert: QueuedAlert) -> None:
        self._metrics.alerts_sent.inc()
        self._metrics.alert_backlog.set(self._store.alert_backlog())
        log.info("alert delivered", extra={"event_id": alert.event_id, "attempts": alert.attempts})

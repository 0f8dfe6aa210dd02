"""Motion events → durable alert queue → Slack (image upload, then training buttons).

:class:`AlertIntake` runs on the bus thread: it decides once per event whether to queue an
alert (first message whose ``decision.alert`` is true, per-camera rate limit) and stores the
snapshot bytes with it before returning, so a message the broker redelivers is recognised by
its event id and never alerts twice. :class:`AlertSender` is a thread that delivers the queue in
order; what it does after a failure depends on the failure's kind (:mod:`slack_errors`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from slack_sdk import WebClient

from homesec.backoff import Backoff
from homesec.bus import Bus, Received
from homesec.contract import (
    MAX_JPEG_BYTES,
    MOTION_EVENTS,
    AlarmState,
    AlarmStatus,
    MotionEvent,
    SystemSetting,
)
from homesec.media import UnsafePath, resolve_inside
from homesec.state import SystemStateView
from homesec_slack_gateway.buttons import label_blocks
from homesec_slack_gateway.channel import ChannelResolver, PostedFileCheck
from homesec_slack_gateway.metrics import GatewayMetrics
from homesec_slack_gateway.mirror import Mirror
from homesec_slack_gateway.slack_errors import Failure, FailureKind, classify
from homesec_slack_gateway.store import QueuedAlert, Stage, Store

log = logging.getLogger("homesec.slack_gateway.alerts")

PRUNE_INTERVAL_SECONDS = 3600.0
UNCONFIGURED_WAIT_SECONDS = 5.0
MAX_TEXT_CHARS = 3000


def format_time(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(ts))


def alert_text(
    event: MotionEvent, alarm: AlarmStatus | None = None, now: float | None = None
) -> str:
    """The alert's message: camera, time, detector figures and the reason; while the alarm
    is pending, how long until it triggers."""
    figures = [f"motion {event.motion_score:.0%}", f"area {event.area:.1%}"]
    if event.person_score is not None:
        figures.insert(0, f"person {event.person_score:.0%}")
    return (
        f":rotating_light: *Motion on {event.camera}* at {format_time(event.started_at)}\n"
        f"{' · '.join(figures)} · {event.decision.reason}\n"
        f"Event `{event.event_id}`" + _alarm_note(alarm, now)
    )


def _alarm_note(alarm: AlarmStatus | None, now: float | None) -> str:
    if alarm is None:
        return ""
    if alarm.state is AlarmState.PENDING and alarm.until is not None:
        left = max(0, round(alarm.until - (time.time() if now is None else now)))
        return (
            f"\n:hourglass: *The alarm triggers in {left} s* (entry delay) unless disarmed: "
            "`/homesec disarm`"
        )
    if alarm.state is AlarmState.TRIGGERED:
        return "\n:rotating_light: *The alarm is triggered*: `/homesec ack` or `/homesec disarm`"
    return ""


def fallback_text(alert: QueuedAlert, failure: Failure) -> str:
    """The text-only message posted when Slack refuses an alert for good."""
    if alert.stage is Stage.UPLOADED:  # the image and its text are in the channel already
        why = (
            f"the snapshot was posted, its Occupied/Unoccupied buttons were refused "
            f"(`{failure.code}`): this event cannot be labelled from Slack."
        )
    else:
        what = "the alert with its snapshot" if alert.image else "the alert"
        why = f"Text only: Slack refused {what} (`{failure.code}`)."
    return f"{alert.text[:MAX_TEXT_CHARS]}\n:warning: {why}"


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
        clips: bool = False,
    ) -> None:
        self._clips = clips
        self._store = store
        self._mirror = mirror
        self._state = state
        self._metrics = metrics
        self._media_dir = media_dir
        self._min_interval = min_interval
        self._wake = wake
        bus.subscribe(MOTION_EVENTS, self._on_event)

    def _on_event(self, msg: Received[MotionEvent]) -> None:
        """Store first, return after: a store error raises, so the broker redelivers."""
        event = msg.payload
        self._store.note_event(event.started_at, event.camera)
        if not event.decision.alert or self._store.has_alert(event.event_id):
            return  # not alerting, or already queued/sent/parked/suppressed (a redelivery)
        image = self._image_for(event)
        result = self._store.add_alert(
            event_id=event.event_id,
            camera=event.camera,
            text=alert_text(event, self._state.alarm()),
            training=self._state.get(SystemSetting.TRAINING),
            image=image,
            min_interval=self._min_interval,
            clip=self._clips and event.media_dir is not None,
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
    """Delivers queued alerts in order, one at a time, never twice, and never stuck behind one.

    After a failure (see :func:`slack_errors.classify` and the README's table):

    * transient (network, 5xx, ``ratelimited``): the same alert is retried after a backoff
      (or Slack's ``Retry-After``) — for as long as the outage lasts;
    * workspace (``not_in_channel``, ``invalid_auth``, ...): no alert can go out, so every alert
      stays queued, the status says what the owner must fix, and the head is retried;
    * alert or unknown: a text-only fallback is posted and the alert is parked, so the next
      alert goes. If the fallback fails too for a reason that is not the text's, the alert
      stays queued (Slack cannot take any alert then); if Slack refuses the text itself, the
      alert stays parked with both reasons (log, metric, status).
    """

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
        self._on_health = on_health or (lambda problem: None)
        self._store = store
        self._client = client
        self._channel = channel
        self._resolver = ChannelResolver(channel)
        self._posted = PostedFileCheck()
        self._metrics = metrics
        self._wake = wake
        self._backoff = Backoff(initial_delay, max_delay)
        self._thread: threading.Thread | None = None
        self._warned = False
        self.problem: str | None = None  # what the status says while alerts are in trouble

    def start(self, stop: threading.Event) -> None:
        self._thread = threading.Thread(
            target=self.run, args=(stop,), name="slack-alert-sender", daemon=True
        )
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self, stop: threading.Event) -> None:
        pruned_at = -PRUNE_INTERVAL_SECONDS
        while not stop.is_set():
            try:
                if time.monotonic() - pruned_at > PRUNE_INTERVAL_SECONDS:
                    self._store.prune()
                    pruned_at = time.monotonic()
                wait = self._step()
            except Exception as exc:  # the queue itself failed (disk): keep the thread alive
                log.exception("alert queue failed; retrying")
                wait = self._backoff.next_delay()
                self._report(f"the alert queue failed: {classify(exc).reason}")
            if wait is None:  # nothing queued
                self._wake.wait(1.0)
                self._wake.clear()
            elif wait > 0:
                stop.wait(wait)

    def _step(self) -> float | None:
        """Try the oldest queued alert once; how long to wait before the next try."""
        self._metrics.alert_backlog.set(self._store.alert_backlog())
        alert = self._store.next_alert()
        if alert is None:
            return None
        if self._client is None or not self._channel:
            if not self._warned:
                log.error(
                    "alerts cannot be posted: set SLACK_BOT_TOKEN and "
                    "HOMESEC_SLACK_GATEWAY_ALERT_CHANNEL; they stay queued",
                    extra={"backlog": self._store.alert_backlog()},
                )
                self._warned = True
            self._wake.wait(UNCONFIGURED_WAIT_SECONDS)
            self._wake.clear()
            return 0.0
        try:
            self._deliver(self._client, alert)
        except Exception as exc:
            failure = classify(exc)
            self._metrics.alerts_failed.inc()
            self._store.record_failure(alert.id, failure.reason)
            alert = self._store.get_alert(alert.id) or alert  # its stage may have moved on
            if failure.kind in (FailureKind.TRANSIENT, FailureKind.WORKSPACE):
                return self._retry_later(alert, failure)
            return self._park(self._client, alert, failure)
        self._finished(alert, "sent")
        self._healthy()
        return 0.0

    def _retry_later(self, alert: QueuedAlert, failure: Failure) -> float:
        """Keep the alert (and every one behind it) queued; say why; back off."""
        delay = self._backoff.next_delay()
        wait = failure.retry_after if failure.retry_after is not None else delay
        if failure.kind is FailureKind.WORKSPACE:
            self._report(
                f"Slack refuses every alert ({failure.code}): {failure.hint}; "
                "alerts stay queued and go out once it is fixed"
            )
        else:
            self._report(f"alerts cannot reach Slack: {failure.reason}; retrying")
        log.warning(
            "alert delivery failed; retrying",
            extra={
                "event_id": alert.event_id,
                "kind": failure.kind.value,
                "error": failure.reason,
                "retry_in": round(wait, 3),
            },
        )
        return wait

    def _park(self, client: WebClient, alert: QueuedAlert, failure: Failure) -> float:
        """Slack refused this alert: post the text fallback and let the next alert go."""
        try:
            client.chat_postMessage(
                channel=self._resolver.channel_id(client), text=fallback_text(alert, failure)
            )
        except Exception as exc:
            refused = classify(exc)
            if refused.kind is not FailureKind.ALERT:
                # plain text cannot be posted either: Slack takes no alert now, so keep it
                return self._retry_later(alert, refused)
            self._store.park(alert.id, failure.reason, fallback_error=refused.reason)
            self._metrics.alerts_parked.labels("failed").inc()
            log.error(
                "Slack refused an alert and its text fallback; the alert is parked",
                extra={
                    "event_id": alert.event_id,
                    "error": failure.reason,
                    "fallback_error": refused.reason,
                },
            )
            self._finished(alert, "parked")
            self._backoff.reset()  # Slack answered: it is up
            self._report(
                f"alert {alert.event_id} on {alert.camera} could not be posted, not even as "
                f"text ({failure.code}, then {refused.code}); it is parked"
            )
            return 0.0
        self._store.park(alert.id, failure.reason, fallback_error=None)
        self._metrics.alerts_parked.labels("posted").inc()
        log.warning(
            "Slack refused an alert; its text fallback was posted and the alert parked",
            extra={"event_id": alert.event_id, "error": failure.reason},
        )
        self._finished(alert, "parked")
        self._healthy()
        return 0.0

    def _finished(self, alert: QueuedAlert, outcome: Literal["sent", "parked"]) -> None:
        """The alert left the queue: nothing more is owed to Slack for it."""
        if outcome == "sent":
            self._metrics.alerts_sent.inc()
        self._metrics.alert_backlog.set(self._store.alert_backlog())
        log.info(
            "alert done",
            extra={"event_id": alert.event_id, "outcome": outcome, "attempts": alert.attempts},
        )

    def _healthy(self) -> None:
        self._backoff.reset()
        self._report(None)

    def _report(self, problem: str | None) -> None:
        """Tell the service status when the alerts' trouble starts, changes or ends."""
        if problem != self.problem:
            self.problem = problem
            self._on_health(problem)

    def _deliver(self, client: WebClient, alert: QueuedAlert) -> None:
        """Post the alert from its stage on; each step is marked in the store once Slack took it."""
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
            if not alert.training:
                self._store.set_stage(alert.id, Stage.SENT)
                return
            self._store.set_stage(alert.id, Stage.UPLOADED)
        client.chat_postMessage(
            channel=channel,
            text=f"Was someone there? Event {alert.event_id} on {alert.camera}",
            blocks=label_blocks(alert.event_id, alert.camera),
        )
        self._store.set_stage(alert.id, Stage.SENT)

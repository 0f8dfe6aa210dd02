"""The training loop's Slack side: every label counted, hard negatives offered, a weekly report.

* Every label on ``training/labels`` (the owner's buttons, the detector's automatic samples,
  missed alerts) is logged in the store, so the report counts what the uploader stores.
* An event the person check rejected (``end``, not alerted, "no person confirmed") is a hard
  negative: the detector pins its folder for ``media.candidate_keep_days``; the gateway keeps it as
  a candidate and posts up to ``digest_max`` of them once a day (``digest_hour``), each with its
  snapshot and the Occupied/Unoccupied buttons.
* Once a week (``report_weekday`` at ``report_hour``) and on ``/homesec report``: alerts, labels
  given, the false-alert rate (labelled alerts the owner called unoccupied), missed alerts, and
  whether ``homesec tune`` proposes a change (the retained ``training/tune`` result). The same
  figures are Prometheus gauges over the last 7 days.

Times of day are the gateway's local time (``TZ``). Scheduling is :func:`last_slot`, pure.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from slack_sdk import WebClient

from homesec.bus import Bus, Received
from homesec.contract import (
    MOTION_EVENTS,
    TRAINING_LABELS,
    TUNE_RESULT,
    EventType,
    MotionEvent,
    TrainingLabel,
    TuneResult,
)
from homesec.media import UnsafePath, resolve_inside
from homesec_slack_gateway.alerts import format_time
from homesec_slack_gateway.buttons import label_blocks
from homesec_slack_gateway.channel import ChannelResolver
from homesec_slack_gateway.metrics import GatewayMetrics
from homesec_slack_gateway.settings import SlackGatewaySettings
from homesec_slack_gateway.slack_api import describe_error
from homesec_slack_gateway.store import Store

log = logging.getLogger("homesec.slack_gateway.training")

WEEK = 7 * 86400.0
DAY = 86400.0
REJECTED = "no person confirmed"
"""The reason the detector gives an event the person check rejected (homesec_detector.events)."""


def last_slot(now: float, hour: int, weekday: int | None = None) -> float:
    """The latest scheduled time at or before ``now`` (local time): ``hour`` o'clock today or
    yesterday, or on the last ``weekday`` (0 = Monday) when given."""
    t = time.localtime(now)
    midnight = time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))
    slot = time.mktime((t.tm_year, t.tm_mon, t.tm_mday, hour, 0, 0, 0, 0, -1))
    back = 0 if weekday is None else (t.tm_wday - weekday) % 7
    if back == 0 and slot > now:
        back = 1 if weekday is None else 7
    if back:
        day = time.localtime(midnight - back * DAY + 3 * 3600)  # 03:00 dodges DST edges
        slot = time.mktime((day.tm_year, day.tm_mon, day.tm_mday, hour, 0, 0, 0, 0, -1))
    return slot


def report_text(figures: dict[str, int], tune: TuneResult | None, since: float, now: float) -> str:
    """The weekly report as Slack mrkdwn."""
    f = figures
    rate = (
        f"{100 * f['false_alerts'] / f['labelled_alerts']:.0f}% "
        f"({f['false_alerts']} of {f['labelled_alerts']} labelled alerts)"
        if f["labelled_alerts"]
        else "unknown (no alert labelled)"
    )
    lines = [
        f":bar_chart: *homesec training report* {format_time(since)} – {format_time(now)}",
        f"• Alerts: {f['alerts']}",
        f"• Labels given: {f['labels']} ({f['occupied_labels']} occupied, "
        f"{f['unoccupied_labels']} unoccupied, {f['missed_alerts']} missed alerts)",
        f"• False-alert rate: {rate}",
        f"• Missed alerts: {f['missed_alerts']}",
    ]
    if tune is None:
        lines.append(
            "• Tune: never run; `homesec tune <training set> --record` replays the labels "
            "and says what would change (docs/training.md)"
        )
    elif tune.proposes_change:
        env = ", ".join(f"`{k}={v}`" for k, v in sorted(tune.env.items()))
        lines.append(
            f"• Tune ({format_time(tune.at)}, {tune.events} events): *proposes a change* that "
            f"removes {tune.false_alerts_removed} of {tune.false_alerts} false alerts and keeps "
            f"every occupied event: {env}"
        )
    else:
        lines.append(
            f"• Tune ({format_time(tune.at)}, {tune.events} events): no change proposed "
            f"({tune.false_alerts} false alerts, {tune.missed} missed under the current settings)"
        )
    return "\n".join(lines)


class TrainingDesk:
    """Logs labels and candidates from the bus; posts the digest and the weekly report."""

    def __init__(
        self,
        bus: Bus,
        store: Store,
        settings: SlackGatewaySettings,
        metrics: GatewayMetrics,
        bot: WebClient | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.bot = bot
        self.clock = clock
        self.tune: TuneResult | None = None
        self._resolver = ChannelResolver(settings.alert_channel)
        self._thread: threading.Thread | None = None
        bus.subscribe(TRAINING_LABELS, self._on_label)
        bus.subscribe(MOTION_EVENTS, self._on_event)
        bus.subscribe(TUNE_RESULT, self._on_tune)
        for key in ("report_sent_at", "digest_sent_at"):  # the first ones at the next slot
            if store.get_meta(key) is None:
                store.set_meta(key, repr(clock()))

    # ---- bus handlers ------------------------------------------------------------------------

    def _on_label(self, msg: Received[TrainingLabel]) -> None:
        label = msg.payload
        self.store.log_label(
            event_id=label.event_id,
            camera=label.camera,
            label=label.label.value,
            source=label.source,
            labelled_by=label.labelled_by,
            labelled_at=label.labelled_at,
        )
        self.refresh_metrics()

    def _on_event(self, msg: Received[MotionEvent]) -> None:
        event = msg.payload
        if (
            event.type is EventType.END
            and not event.decision.alert
            and event.decision.reason.startswith(REJECTED)
            and event.media_dir is not None
        ):
            ended = event.ended_at if event.ended_at is not None else self.clock()
            self.store.add_candidate(event.event_id, event.camera, ended, event.snapshot)

    def _on_tune(self, msg: Received[TuneResult]) -> None:
        self.tune = msg.payload
        self.metrics.tune_proposes_change.set(int(msg.payload.proposes_change))

    # ---- figures -----------------------------------------------------------------------------

    def figures(self, now: float | None = None) -> dict[str, int]:
        now = self.clock() if now is None else now
        return self.store.training_figures(now - WEEK, now + 1)

    def refresh_metrics(self, now: float | None = None) -> dict[str, int]:
        f = self.figures(now)
        m = self.metrics
        m.training_alerts.set(f["alerts"])
        m.training_labels.set(f["labels"])
        m.training_missed.set(f["missed_alerts"])
        m.training_false_alert_ratio.set(
            f["false_alerts"] / f["labelled_alerts"] if f["labelled_alerts"] else 0.0
        )
        return f

    def report(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        return report_text(self.refresh_metrics(now), self.tune, now - WEEK, now)

    # ---- posting -----------------------------------------------------------------------------

    def post_report(self, now: float | None = None) -> bool:
        """Post the weekly report in the alert channel; False when Slack is not reachable."""
        now = self.clock() if now is None else now
        if self.bot is None:
            return False
        text = self.report(now)
        try:
            channel = self._resolver.channel_id(self.bot)
            self.bot.chat_postMessage(channel=channel, text=text, mrkdwn=True)
        except Exception as exc:
            log.warning("weekly report not posted", extra={"error": describe_error(exc)})
            return False
        self.store.set_meta("report_sent_at", repr(now))
        log.info("weekly report posted")
        return True

    def post_digest(self, now: float | None = None) -> int:
        """Post up to ``digest_max`` unlabelled hard negatives with their snapshot and the label
        buttons; returns how many were posted."""
        now = self.clock() if now is None else now
        if self.bot is None:
            return 0
        keep = self.settings.candidate_keep_days * DAY
        found = self.store.digest_candidates(now - keep, self.settings.digest_max)
        posted = 0
        try:
            channel = self._resolver.channel_id(self.bot)
            if found:
                self.bot.chat_postMessage(
                    channel=channel,
                    text=f":mag: {len(found)} event(s) the person check rejected: was someone "
                    "there? Your answers go into the training set.",
                )
            for event_id, camera, ended_at, snapshot in found:
                image = self._image(snapshot)
                if image is not None:
                    self.bot.files_upload_v2(
                        channel=channel,
                        content=image,
                        filename=f"{event_id}.jpg",
                        title=f"{camera} {format_time(ended_at)}",
                    )
                self.bot.chat_postMessage(
                    channel=channel,
                    text=f"Was someone there? Event {event_id} on {camera}",
                    blocks=label_blocks(event_id, camera),
                )
                self.store.mark_candidate_posted(event_id)
                posted += 1
        except Exception as exc:
            log.warning("digest not posted", extra={"error": describe_error(exc)})
            return posted
        self.store.set_meta("digest_sent_at", repr(now))
        self.metrics.digest_candidates.inc(posted)
        return posted

    def _image(self, snapshot: str | None) -> bytes | None:
        if snapshot is None:
            return None
        try:
            return resolve_inside(Path(self.settings.media_dir), snapshot).read_bytes()
        except (UnsafePath, OSError):
            return None

    # ---- schedule ----------------------------------------------------------------------------

    def step(self, now: float | None = None) -> None:
        """Refresh the gauges; post the digest and the report when their time has come."""
        now = self.clock() if now is None else now
        self.refresh_metrics(now)
        s = self.settings
        if s.digest_max > 0 and _sent(self.store, "digest_sent_at") < last_slot(now, s.digest_hour):
            self.post_digest(now)
        if s.report_weekday >= 0 and _sent(self.store, "report_sent_at") < last_slot(
            now, s.report_hour, s.report_weekday
        ):
            self.post_report(now)

    def start(self, stop: threading.Event) -> None:
        def run() -> None:
            while not stop.is_set():
                try:
                    self.step()
                except Exception:
                    log.exception("training step failed")
                stop.wait(self.settings.training_poll_seconds)

        self._thread = threading.Thread(target=run, name="slack-training", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


def _sent(store: Store, key: str) -> float:
    value = store.get_meta(key)
    return float(value) if value is not None else 0.0

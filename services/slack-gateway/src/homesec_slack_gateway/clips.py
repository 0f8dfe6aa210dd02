"""Alert clips → Slack: each alert's clip.mp4, posted as a message of its own after the alert.

The detector writes an alerting event's clip (H.264 MP4, pre-roll plus the event's first
seconds) a few seconds after the event started, while the alert with its still went out at
once. :class:`ClipSender` is a thread of its own, so a clip never holds up an alert: every
``poll`` seconds it looks at the waiting clips (store rows queued with their alerts), and posts
each one whose alert is already in the channel and whose file exists. A clip whose file has not
appeared ``wait`` seconds after its alert (clips off in the detector, an encoder failure) is
given up, as is one Slack refuses for good; transient failures are retried with a backoff.
Slack's upload answer carries no message ``ts``, so the clip is not a threaded reply: it is the
next message in the channel, naming the event.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from slack_sdk import WebClient

from homesec.backoff import Backoff
from homesec.media import CLIP, UnsafePath, event_dir
from homesec_slack_gateway.alerts import format_time
from homesec_slack_gateway.channel import ChannelResolver, PostedFileCheck
from homesec_slack_gateway.metrics import GatewayMetrics
from homesec_slack_gateway.slack_errors import FailureKind, classify
from homesec_slack_gateway.store import ClipStage, Stage, Store, WaitingClip

log = logging.getLogger("homesec.slack_gateway.clips")

MP4_BRAND = b"ftyp"


def clip_comment(clip: WaitingClip) -> str:
    return f":movie_camera: Clip of event `{clip.event_id}` on {clip.camera}"


class ClipSender:
    """Posts waiting clips once their alert went out and their file exists."""

    def __init__(
        self,
        store: Store,
        client: WebClient | None,
        channel: str,
        media_dir: Path,
        metrics: GatewayMetrics,
        *,
        wait: float,
        max_bytes: int,
        poll: float,
        initial_delay: float,
        max_delay: float,
    ) -> None:
        self._store = store
        self._client = client
        self._resolver = ChannelResolver(channel)
        self._posted = PostedFileCheck()
        self._media_dir = media_dir
        self._metrics = metrics
        self._wait = wait
        self._max_bytes = max_bytes
        self._poll = poll
        self._backoff = Backoff(initial_delay, max_delay)
        self._thread: threading.Thread | None = None

    def start(self, stop: threading.Event) -> None:
        self._thread = threading.Thread(
            target=self.run, args=(stop,), name="slack-clip-sender", daemon=True
        )
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                wait = self.step()
            except Exception:  # the store failed (disk): keep the thread alive
                log.exception("clip queue failed; retrying")
                wait = self._backoff.next_delay()
            stop.wait(wait)

    def step(self) -> float:
        """Try every waiting clip once; how long to wait before the next look."""
        clips = self._store.waiting_clips()
        self._metrics.clip_backlog.set(len(clips))
        client = self._client
        if client is None or not clips:
            return self._poll
        for clip in clips:
            if clip.alert_stage is Stage.QUEUED:
                continue  # the alert (the still) goes first
            data, problem = self._read(clip)
            if problem is not None:
                self._give_up(clip, problem, "unusable")
                continue
            if data is None:
                if time.time() - clip.created_at >= self._wait:
                    self._give_up(clip, f"no {CLIP} after {self._wait:g} s", "missing")
                continue
            try:
                self._post(client, clip, data)
            except Exception as exc:
                failure = classify(exc)
                self._store.record_clip_failure(clip.event_id, failure.reason)
                if failure.kind in (FailureKind.TRANSIENT, FailureKind.WORKSPACE):
                    delay = failure.retry_after or self._backoff.next_delay()
                    log.warning(
                        "clip upload failed; retrying",
                        extra={"event_id": clip.event_id, "error": failure.reason},
                    )
                    return delay  # Slack takes nothing now: the others wait too
                self._give_up(clip, f"Slack refused the clip: {failure.reason}", "refused")
                continue
            self._store.settle_clip(clip.event_id, ClipStage.SENT)
            self._metrics.clips_sent.inc()
            self._backoff.reset()
            log.info("clip posted", extra={"event_id": clip.event_id, "bytes": len(data)})
        return self._poll

    def _read(self, clip: WaitingClip) -> tuple[bytes | None, str | None]:
        """The clip's bytes (None: not there yet), or why it can never be posted."""
        try:
            path = event_dir(self._media_dir, clip.camera, clip.event_id) / CLIP
            if not path.is_file():
                return None, None
            size = path.stat().st_size
            if size > self._max_bytes:
                return None, f"{CLIP} is {size} bytes, over clip_max_bytes ({self._max_bytes})"
            data = path.read_bytes()
        except (UnsafePath, OSError) as exc:
            return None, f"{CLIP} unreadable: {exc}"[:300]
        if data[4:8] != MP4_BRAND:
            return None, f"{CLIP} is not an MP4 file"
        return data, None

    def _post(self, client: WebClient, clip: WaitingClip, data: bytes) -> None:
        channel = self._resolver.channel_id(client)
        filename = f"{clip.event_id}.mp4"
        if clip.attempts and self._posted.already_posted(
            client, channel, filename, since=clip.created_at - 60
        ):
            log.info("clip already in the channel", extra={"event_id": clip.event_id})
            return
        client.files_upload_v2(
            channel=channel,
            content=data,
            filename=filename,
            title=f"{clip.camera} {format_time(clip.created_at)}",
            initial_comment=clip_comment(clip),
        )

    def _give_up(self, clip: WaitingClip, reason: str, why: str) -> None:
        self._store.settle_clip(clip.event_id, ClipStage.GIVEN_UP, reason)
        self._metrics.clips_given_up.labels(why).inc()
        log.warning("clip not posted", extra={"event_id": clip.event_id, "reason": reason})

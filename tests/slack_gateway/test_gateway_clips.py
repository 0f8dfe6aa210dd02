"""Alert clips in the fake Slack: the still goes out at once, the clip (the detector's clip.mp4,
made here by the detector's own encoder) follows as the next message and decodes with every
frame; a clip that never comes, a broken file or a refusing Slack never delays or drops the
alert, and the event's media stay pinned until the clip is settled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from gateway_fakes import FakeSlack, Fault, Harness, image, motion_event, write_snapshot

from homesec.bus import Bus
from homesec.contract import MOTION_EVENTS
from homesec.files import atomic_write
from homesec.pins import PinKind, Pins
from homesec_detector.clip import ClipFrame, encode_clip
from homesec_slack_gateway.store import ClipStage
from support import wait_until

ROAD = Path(__file__).resolve().parents[1] / "assets" / "video" / "road_640x360.avi"
FRAMES = 25


@pytest.fixture(scope="module")
def clip_bytes() -> bytes:
    """A clip as the detector makes it: FRAMES JPEG frames of real footage, 10 fps."""
    capture = cv2.VideoCapture(str(ROAD))
    frames = []
    for n in range(FRAMES):
        ok, picture = capture.read()
        assert ok
        jpeg = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
        frames.append(ClipFrame(jpeg, 1_764_100_000.0 + n / 10))
    return encode_clip(frames).data


def write_clip(gateway: Harness, event_id: str, data: bytes, camera: str = "front") -> None:
    """What the detector does: clip.mp4 in the event folder, written atomically."""
    atomic_write(gateway.settings.media_dir / camera / event_id / "clip.mp4", data, durable=False)


def decoded_frames(data: bytes, tmp_path: Path) -> int:
    path = tmp_path / "downloaded.mp4"
    path.write_bytes(data)
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened()
    count = 0
    while True:
        ok, picture = capture.read()
        if not ok:
            return count
        assert picture.shape == (360, 640, 3)
        count += 1


def alert_for(gateway: Harness, detector: Bus, event_id: str) -> None:
    write_snapshot(gateway, "front", event_id, image(1))
    detector.publish(MOTION_EVENTS, motion_event(event_id, media=True))


def test_an_alert_carries_its_clip_and_the_clip_decodes_with_every_frame(
    make_gateway: Any, make_bus: Any, slack: FakeSlack, clip_bytes: bytes, tmp_path: Path
) -> None:
    gateway = make_gateway(alert_clips=True)
    detector = make_bus("detector")
    pins = Pins(gateway.settings.pins_dir)
    assert pins.pin(PinKind.ALERT, "front", "front-ev1")
    alert_for(gateway, detector, "front-ev1")

    # the still goes out at once, before any clip exists
    wait_until(lambda: slack.files_named(".jpg"), 15)
    assert not slack.files_named(".mp4")
    store = gateway.service.store
    assert store.clip_stage("front-ev1") is ClipStage.WAITING
    gateway.service.pin_release.release_once()
    assert pins.is_pinned(PinKind.ALERT, "front", "front-ev1"), "the clip is still owed"

    write_clip(gateway, "front-ev1", clip_bytes)  # the detector, a few seconds later
    clip = wait_until(lambda: slack.files_named(".mp4"), 15)[0]
    assert clip.name == "front-ev1.mp4" and clip.data == clip_bytes
    assert clip.complete["channel_id"] == "C0ALERTS"
    assert "front-ev1" in clip.complete["initial_comment"]
    assert decoded_frames(clip.data, tmp_path) == FRAMES
    assert [f.name for f in slack.shared_files()] == ["front-ev1.jpg", "front-ev1.mp4"]
    assert store.clip_stage("front-ev1") is ClipStage.SENT
    assert gateway.metric("homesec_slack_clips_sent_total") == 1
    gateway.service.pin_release.release_once()
    assert not pins.is_pinned(PinKind.ALERT, "front", "front-ev1")


def test_a_clip_that_never_comes_does_not_hold_the_alert(
    make_gateway: Any, make_bus: Any, slack: FakeSlack
) -> None:
    gateway = make_gateway(alert_clips=True, clip_wait_seconds=0.5)
    detector = make_bus("detector")
    alert_for(gateway, detector, "front-ev2")
    wait_until(lambda: gateway.metric("homesec_slack_alerts_sent_total") == 1, 15)
    wait_until(lambda: gateway.service.store.clip_stage("front-ev2") is ClipStage.GIVEN_UP, 15)
    assert gateway.metric("homesec_slack_clips_given_up_total", reason="missing") == 1
    assert not slack.files_named(".mp4")
    assert gateway.service.store.alert_settled("front", "front-ev2")


def test_the_clip_waits_for_its_alert_through_an_outage(
    make_gateway: Any, make_bus: Any, slack: FakeSlack, clip_bytes: bytes
) -> None:
    slack.fail_next(
        "files.getUploadURLExternal", *[Fault(500, {"ok": False, "error": "internal_error"})] * 3
    )
    gateway = make_gateway(alert_clips=True)
    detector = make_bus("detector")
    write_clip(gateway, "front-ev3", clip_bytes)  # ready before the alert could go out
    alert_for(gateway, detector, "front-ev3")
    wait_until(lambda: slack.files_named(".mp4"), 20)
    assert [f.name for f in slack.shared_files()] == ["front-ev3.jpg", "front-ev3.mp4"]


def test_a_failing_clip_upload_is_retried_and_posted_once(
    make_gateway: Any, make_bus: Any, slack: FakeSlack, clip_bytes: bytes
) -> None:
    def for_the_clip(args: dict[str, Any]) -> bool:
        return str(args.get("filename", "")).endswith(".mp4")

    slack.fail_next(
        "files.getUploadURLExternal",
        Fault(500, {"ok": False, "error": "internal_error"}, when=for_the_clip),
        Fault(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "0"}, when=for_the_clip),
    )
    slack.fail_next(  # the first completed clip upload loses its answer
        "files.completeUploadExternal",
        Fault(
            500,
            {"ok": False, "error": "internal_error"},
            applied=True,
            when=lambda args: (
                "front-ev4" in str(args.get("initial_comment", ""))
                and "Clip" in str(args.get("initial_comment", ""))
            ),
        ),
    )
    gateway = make_gateway(alert_clips=True)
    detector = make_bus("detector")
    alert_for(gateway, detector, "front-ev4")
    write_clip(gateway, "front-ev4", clip_bytes)
    wait_until(lambda: gateway.service.store.clip_stage("front-ev4") is ClipStage.SENT, 20)
    assert [m["files"][0]["name"] for m in slack.messages] == ["front-ev4.jpg", "front-ev4.mp4"]
    assert gateway.metric("homesec_slack_alerts_sent_total") == 1


@pytest.mark.parametrize("problem", ["refused", "unusable"])
def test_a_clip_slack_refuses_or_a_broken_file_is_given_up_alert_intact(
    make_gateway: Any, make_bus: Any, slack: FakeSlack, clip_bytes: bytes, problem: str
) -> None:
    gateway = make_gateway(alert_clips=True)
    detector = make_bus("detector")
    if problem == "refused":
        slack.max_upload_bytes = len(clip_bytes) - 1  # the upload URL answers 413
        data = clip_bytes
    else:
        data = b"\x00" * 64  # not an MP4
    alert_for(gateway, detector, "front-ev5")
    write_clip(gateway, "front-ev5", data)
    wait_until(lambda: gateway.service.store.clip_stage("front-ev5") is ClipStage.GIVEN_UP, 20)
    assert gateway.metric("homesec_slack_clips_given_up_total", reason=problem) == 1
    assert [f.name for f in slack.shared_files()] == ["front-ev5.jpg"]
    assert gateway.metric("homesec_slack_alerts_sent_total") == 1
    assert gateway.service.store.alert_settled("front", "front-ev5")


def test_no_clip_is_expected_for_events_without_media_or_with_clips_off(
    make_gateway: Any, make_bus: Any, slack: FakeSlack
) -> None:
    on = make_gateway(alert_clips=True)
    detector = make_bus("detector")
    write_snapshot(on, "front", "front-ev6", image(2))
    detector.publish(MOTION_EVENTS, motion_event("front-ev6", media=False))
    wait_until(lambda: on.metric("homesec_slack_alerts_sent_total") == 1, 15)
    assert on.service.store.clip_stage("front-ev6") is None
    assert on.service.store.alert_settled("front", "front-ev6")
    np.testing.assert_equal(on.metric("homesec_slack_clip_backlog"), 0)

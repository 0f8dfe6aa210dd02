"""The clip in event media: what goes into clip.mp4, when it is made, and that making it never
holds up the event messages or the rest of the media."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import cv2
from test_detector_media import STATE, run, scene, settings

from homesec.contract import EventType, MotionEvent, SystemSetting
from homesec.media import event_dir
from homesec_detector.clip import Clip, ClipWorker, encode_clip
from homesec_detector.media_writer import MediaWriter
from homesec_detector.pipeline import CameraPipeline
from support import wait_until


def decoded_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), f"{path} does not open as a video"
    count = 0
    while capture.read()[0]:
        count += 1
    return count


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def meta_of(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "event.json").read_text())


def test_alerting_event_gets_a_clip_of_its_preroll_and_first_frames(tmp_path: Path) -> None:
    s = settings(tmp_path, preroll_frames=30, clip_event_frames=20, draw_boxes=False)
    made: list[Clip | None] = []
    writer = MediaWriter(s.media_dir, s.media, threaded=False, on_clip=lambda c, e: made.append(c))
    pipeline = CameraPipeline("front", s, STATE.__getitem__, media=writer)
    messages = [m for o in run(pipeline, scene(40, 40, 200)) for m in o.messages]
    assert messages[0].decision.alert and messages[-1].type is EventType.END
    folder = event_dir(s.media_dir, "front", messages[0].event_id)
    assert decoded_frames(folder / "clip.mp4") == 30 + 20
    clip = meta_of(folder)["detector"]["clip"]
    assert clip["file"] == "clip.mp4" and clip["frames"] == 50 and clip["preroll_frames"] == 30
    assert clip["bytes"] == (folder / "clip.mp4").stat().st_size
    assert meta_of(folder)["type"] == "end"
    assert len(made) == 1 and made[0] is not None
    # retention knows every byte written, the clip included, and the folder is closed
    entry = writer.index.entries()[os.fspath(folder)]
    assert entry.size == folder_bytes(folder) and not entry.open


def test_an_event_shorter_than_the_clip_gives_the_frames_it_had(tmp_path: Path) -> None:
    s = settings(tmp_path, preroll_frames=10, clip_event_frames=600, max_event_frames=600)
    writer = MediaWriter(s.media_dir, s.media, threaded=False)
    pipeline = CameraPipeline("front", s, STATE.__getitem__, media=writer)
    messages = [m for o in run(pipeline, scene(20, 30, 200)) for m in o.messages]
    folder = event_dir(s.media_dir, "front", messages[0].event_id)
    meta = meta_of(folder)
    assert meta["detector"]["frames"] < 600
    assert decoded_frames(folder / "clip.mp4") == 10 + meta["detector"]["frames"]


def test_events_that_do_not_alert_get_no_clip_unless_asked(tmp_path: Path) -> None:
    disarmed = {**STATE, SystemSetting.ARMED: False}
    for all_events in (False, True):
        s = settings(tmp_path / str(all_events), clip_all_events=all_events, draw_boxes=False)
        writer = MediaWriter(s.media_dir, s.media, threaded=False)
        pipeline = CameraPipeline("front", s, disarmed.__getitem__, media=writer)
        messages = [m for o in run(pipeline, scene(20, 30, 200)) for m in o.messages]
        assert not any(m.decision.alert for m in messages)
        folder = event_dir(s.media_dir, "front", messages[0].event_id)
        assert (folder / "clip.mp4").is_file() is all_events
        assert ("clip" in meta_of(folder)["detector"]) is all_events
        assert not writer.index.is_open(os.fspath(folder))


def test_a_slow_clip_never_holds_up_the_event_messages(tmp_path: Path) -> None:
    s = settings(tmp_path, preroll_frames=10, clip_event_frames=5, draw_boxes=False)
    writer = MediaWriter(s.media_dir, s.media)
    release = threading.Event()
    encoding = threading.Event()

    def slow_encode(frames: Any, **options: Any) -> Clip:
        encoding.set()
        assert release.wait(30), "the test never released the encoder"
        return encode_clip(frames, **options)

    writer.clips = ClipWorker(max_width=640, bitrate_kbps=600, encode=slow_encode)
    published: list[MotionEvent] = []
    writer.start()
    try:
        pipeline = CameraPipeline(
            "front", s, STATE.__getitem__, media=writer, on_message=published.append
        )
        run(pipeline, scene(20, 30, 200))
        wait_until(lambda: any(m.type is EventType.END for m in published), 20)
        assert encoding.is_set() and not release.is_set()
        start = published[0]
        folder = event_dir(s.media_dir, "front", start.event_id)
        # every message went out, the snapshot and frames are on disk, the clip is not
        assert start.type is EventType.START and start.decision.alert
        assert (folder / "snapshot.jpg").is_file() and (folder / "frames").is_dir()
        assert not (folder / "clip.mp4").exists()
        # until the clip is written the folder stays open and event.json is the start's
        assert writer.index.is_open(os.fspath(folder))
        assert meta_of(folder)["type"] == "start"
        release.set()
        assert writer.flush(30)
        assert decoded_frames(folder / "clip.mp4") == 15
        assert meta_of(folder)["type"] == "end" and meta_of(folder)["detector"]["clip"]["frames"]
        assert not writer.index.is_open(os.fspath(folder))
    finally:
        release.set()
        writer.stop()


def test_a_failing_clip_leaves_the_event_media_whole(tmp_path: Path) -> None:
    s = settings(tmp_path, preroll_frames=10, clip_event_frames=5, draw_boxes=False)
    reports: list[tuple[Clip | None, str | None]] = []
    writer = MediaWriter(
        s.media_dir, s.media, on_clip=lambda clip, error: reports.append((clip, error))
    )

    def broken(frames: Any, **options: Any) -> Clip:
        raise RuntimeError("encoder exploded")

    writer.clips = ClipWorker(max_width=640, bitrate_kbps=600, encode=broken)
    published: list[MotionEvent] = []
    writer.start()
    try:
        pipeline = CameraPipeline(
            "front", s, STATE.__getitem__, media=writer, on_message=published.append
        )
        run(pipeline, scene(20, 30, 200))
        assert writer.flush(30)
    finally:
        writer.stop()
    assert [m.type for m in published][0] is EventType.START
    assert published[-1].type is EventType.END
    folder = event_dir(s.media_dir, "front", published[0].event_id)
    assert not (folder / "clip.mp4").exists()
    meta = meta_of(folder)
    assert meta["type"] == "end" and "encoder exploded" in meta["detector"]["clip"]["error"]
    assert reports == [(None, "RuntimeError: encoder exploded")]
    assert not writer.index.is_open(os.fspath(folder))


def test_without_libopenh264_events_are_saved_without_clips(tmp_path: Path) -> None:
    s = settings(tmp_path, clip_library="/nonexistent/libopenh264.so.7", draw_boxes=False)
    writer = MediaWriter(s.media_dir, s.media, threaded=False)
    assert writer.clips is None
    pipeline = CameraPipeline("front", s, STATE.__getitem__, media=writer)
    messages = [m for o in run(pipeline, scene(20, 30, 200)) for m in o.messages]
    folder = event_dir(s.media_dir, "front", messages[0].event_id)
    assert (folder / "snapshot.jpg").is_file() and not (folder / "clip.mp4").exists()
    assert meta_of(folder)["type"] == "end"

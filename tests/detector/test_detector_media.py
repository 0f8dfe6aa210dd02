"""Pre-roll and event media on disk, retention, disk errors, unoccupied samples."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from homesec.contract import EventType, Frame, Label, PersonMode, SystemSetting
from homesec.media import event_dir
from homesec_detector.media_writer import BufferedFrame, MediaSettings, MediaWriter
from homesec_detector.pipeline import CameraPipeline
from homesec_detector.settings import DetectorSettings

T0 = 1_764_100_000.0
STATE = {
    SystemSetting.ARMED: True,
    SystemSetting.NOTIFICATIONS: True,
    SystemSetting.AUTO_ARM: False,
    SystemSetting.TRAINING: True,
}


def jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


def scene(n_still: int, n_moving: int, n_after: int = 0) -> list[bytes]:
    rng = np.random.default_rng(3)
    base = cv2.resize(
        rng.integers(60, 180, (60, 80, 3), dtype=np.uint8), (640, 480), cv2.INTER_CUBIC
    )
    frames = [jpeg(base)] * n_still
    for i in range(n_moving):
        image = base.copy()
        cv2.rectangle(image, (40 + 8 * i, 150), (160 + 8 * i, 330), (240, 240, 240), -1)
        frames.append(jpeg(image))
    return frames + [jpeg(base)] * n_after


def settings(tmp_path: Path, **media: object) -> DetectorSettings:
    return DetectorSettings(
        data_dir=tmp_path, person_mode=PersonMode.OFF, media=MediaSettings(**media)
    )


def run(pipeline: CameraPipeline, frames: list[bytes], fps: float = 10.0) -> list:
    outcomes = []
    for seq, data in enumerate(frames):
        t = T0 + seq / fps
        frame = Frame(camera="front", seq=seq, captured_at=t, width=640, height=480, jpeg=data)
        outcomes.append(pipeline.process(frame, now=t))
    return outcomes


def test_event_folder_has_snapshot_preroll_frames_and_metadata(tmp_path: Path) -> None:
    s = settings(tmp_path, preroll_frames=30, max_event_frames=25)
    writer = MediaWriter(s.media_dir, s.media, threaded=False)
    pipeline = CameraPipeline("front", s, STATE.__getitem__, media=writer)
    outcomes = run(pipeline, scene(40, 40, 200))
    messages = [m for o in outcomes for m in o.messages]
    assert [m.type for m in messages][0] is EventType.START
    assert messages[-1].type is EventType.END
    start = messages[0]
    folder = event_dir(s.media_dir, "front", start.event_id)
    assert start.media_dir == f"front/{start.event_id}"
    assert (s.media_dir / start.snapshot).is_file()  # type: ignore[operator]
    preroll = sorted((folder / "preroll").iterdir())
    assert len(preroll) == 30
    # the pre-roll is the 30 frames before the start frame, oldest first, as sent
    assert preroll[-1].read_bytes() == scene(40, 40)[start.frame_seq - 1]
    assert len(list((folder / "frames").iterdir())) == 25  # capped
    meta = json.loads((folder / "event.json").read_text())
    assert meta["event_id"] == start.event_id and meta["type"] == "end"
    assert meta["ended_at"] is not None and meta["detector"]["frames"] == 25
    snapshot = cv2.imread(str(folder / "snapshot.jpg"))
    assert snapshot is not None and snapshot.shape == (480, 640, 3)
    # boxes were drawn: the snapshot differs from the raw frame
    raw = cv2.imdecode(np.frombuffer(scene(40, 40)[start.frame_seq], np.uint8), 1)
    assert float(np.abs(snapshot.astype(int) - raw.astype(int)).max()) > 100


def test_preroll_length_is_a_setting(tmp_path: Path) -> None:
    s = settings(tmp_path, preroll_frames=10, draw_boxes=False)
    writer = MediaWriter(s.media_dir, s.media, threaded=False)
    pipeline = CameraPipeline("front", s, STATE.__getitem__, media=writer)
    messages = [m for o in run(pipeline, scene(20, 30)) for m in o.messages]
    folder = event_dir(s.media_dir, "front", messages[0].event_id)
    assert len(list((folder / "preroll").iterdir())) == 10
    assert (folder / "snapshot.jpg").read_bytes() == scene(20, 30)[messages[0].frame_seq]


def test_unwritable_media_dir_is_counted_not_fatal(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the media folder should be")
    s = DetectorSettings(data_dir=blocker, person_mode=PersonMode.OFF)
    errors: list[int] = []
    writer = MediaWriter(s.media_dir, s.media, on_error=lambda: errors.append(1))
    writer.start()
    try:
        pipeline = CameraPipeline("front", s, STATE.__getitem__, media=writer)
        outcomes = run(pipeline, scene(10, 40, 200))
        messages = [m for o in outcomes for m in o.messages]
        assert messages[0].type is EventType.START and messages[-1].type is EventType.END
        published: list[str] = []
        writer.call(lambda: published.append("after"), essential=True)  # queue still works
        assert writer.flush(10)
        assert published == ["after"]
        assert writer.errors >= 3 and len(errors) == writer.errors
    finally:
        writer.stop()


def test_threaded_writer_runs_jobs_in_order_after_the_snapshot(tmp_path: Path) -> None:
    writer = MediaWriter(tmp_path, MediaSettings(draw_boxes=False))
    writer.start()
    seen: list[bool] = []
    frame = BufferedFrame(seq=1, captured_at=T0, jpeg=scene(1, 0)[0], width=640, height=480)
    folder = writer.folder("front", "front-x")
    writer.start_event("front", "front-x", frame, [frame] * 3, {"event_id": "front-x"})
    writer.call(lambda: seen.append((folder / "snapshot.jpg").is_file()), essential=True)
    assert writer.flush(10)
    writer.stop()
    assert seen == [True]
    assert len(list((folder / "preroll").iterdir())) == 3


def test_unoccupied_sample_after_quiet_period(tmp_path: Path) -> None:
    s = settings(tmp_path, min_save_seconds=3, preroll_frames=5)
    writer = MediaWriter(s.media_dir, s.media, threaded=False)
    pipeline = CameraPipeline("front", s, STATE.__getitem__, media=writer)
    outcomes = run(pipeline, scene(75, 0))  # 7.5 s of nothing at 10 fps
    labels = [label for o in outcomes for label in o.labels]
    assert len(labels) == 2  # at 3 s and 6 s
    label = labels[0]
    assert label.label is Label.UNOCCUPIED and label.labelled_by == "detector:auto"
    assert label.source == "detector" and label.event_id.startswith("front-unocc-")
    folder = event_dir(s.media_dir, "front", label.event_id)
    assert (folder / "snapshot.jpg").is_file() and len(list((folder / "preroll").iterdir())) == 5
    assert json.loads((folder / "event.json").read_text())["label"] == "unoccupied"
    # motion resets the quiet timer; training off stops samples
    no_training = {**STATE, SystemSetting.TRAINING: False}
    quiet = CameraPipeline("front", s, no_training.__getitem__, media=writer)
    assert not [x for o in run(quiet, scene(75, 0)) for x in o.labels]

"""Person confirmation wired into events, on the real photos and footage."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from homesec.contract import PersonMode
from homesec_detector.evaluate import Evaluation
from homesec_detector.media_writer import BufferedFrame
from homesec_detector.pipeline import build_person_checker
from homesec_detector.settings import DetectorSettings

ASSETS = Path(__file__).resolve().parents[1] / "assets"
RIDER_FRAMES = range(60, 170)
"""traffic_320x240.avi shows a motorcyclist (a person) riding up the road in these frames."""


def jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def road_background() -> np.ndarray:
    cap = cv2.VideoCapture(str(ASSETS / "video" / "road_640x360.avi"))
    ok, image = cap.read()
    cap.release()
    assert ok
    return cv2.resize(image, (640, 480))


def photo_walks_in(photo: str, width: int = 400, n_still: int = 10, n: int = 40) -> list[bytes]:
    """A static scene, then the photo slides in (4 px per frame) like something moving."""
    base = road_background()
    image = cv2.imread(str(ASSETS / "images" / photo))
    h, w = image.shape[:2]
    image = cv2.resize(image, (width, int(h * width / w)), interpolation=cv2.INTER_AREA)
    frames = [jpeg(base)] * n_still
    for i in range(n):
        canvas = base.copy()
        x, y = 20 + 4 * i, 40
        rows = min(image.shape[0], 480 - y)
        canvas[y : y + rows, x : x + width] = image[:rows]
        frames.append(jpeg(canvas))
    return frames


def evaluate(frames: list[bytes], size: tuple[int, int], fps: float = 10, **kw: object) -> dict:
    settings = DetectorSettings(**kw)  # type: ignore[arg-type]
    ev = Evaluation(settings)
    for i, data in enumerate(frames):
        ev.feed(i, data, size[0], size[1], fps)
    return ev.summary(fps, None) | {"rows": ev.rows}


def video(name: str, start: int = 0) -> tuple[list[bytes], tuple[int, int], float]:
    cap = cv2.VideoCapture(str(ASSETS / "video" / name))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    size = (0, 0)
    while True:
        ok, image = cap.read()
        if not ok:
            break
        size = (image.shape[1], image.shape[0])
        frames.append(jpeg(image))
    cap.release()
    return frames[start:], size, fps


@pytest.mark.parametrize("photo", [f"coco_fastestdet_{i}.jpg" for i in range(4)])
def test_person_walking_in_alerts_in_require_mode(photo: str) -> None:
    summary = evaluate(photo_walks_in(photo), (640, 480))
    assert summary["events"] == 1 and summary["alerts"] == 1
    event = summary["event_list"][0]
    assert event["reason"].startswith("armed, person confirmed")
    assert event["person_score"] >= 0.5
    first_alert = next(r["frame"] for r in summary["rows"] if r["alert"])
    # confirmed at the start or within 0.8 s of it (the bus photo's pedestrian is 60 px tall)
    assert event["start_frame"] <= first_alert <= event["start_frame"] + 8


def test_cats_are_not_a_person() -> None:
    summary = evaluate(photo_walks_in("coco_fastestdet_4.jpg"), (640, 480))
    assert summary["events"] == 1 and summary["alerts"] == 0
    assert summary["event_list"][0]["reason"].startswith("no person confirmed")
    assert summary["person_checks"] >= 10  # the model did look


def test_annotate_mode_alerts_on_motion_and_reports_the_score() -> None:
    summary = evaluate(
        photo_walks_in("coco_fastestdet_4.jpg"), (640, 480), person_mode=PersonMode.ANNOTATE
    )
    assert summary["alerts"] == 1
    assert summary["event_list"][0]["reason"].startswith("armed, motion (person best")


def test_mode_off_never_runs_the_model() -> None:
    summary = evaluate(
        photo_walks_in("coco_fastestdet_0.jpg"), (640, 480), person_mode=PersonMode.OFF
    )
    assert summary["person_checks"] == 0 and summary["person_max"] is None
    assert summary["alerts"] == 1


def test_cpu_budget_limits_person_checks() -> None:
    frames = photo_walks_in("coco_fastestdet_4.jpg")
    free = evaluate(frames, (640, 480), person_cpu_fraction=4)
    tight = evaluate(frames, (640, 480), person_cpu_fraction=0.01)
    assert tight["person_checks"] < free["person_checks"] / 3


def test_road_clip_motion_event_without_person_alert() -> None:
    frames, size, fps = video("road_640x360.avi")
    summary = evaluate(frames, size, fps)
    assert summary["events"] >= 1 and summary["motion_frames"] > 100
    assert summary["alerts"] == 0
    assert summary["person_checks"] > 10


def test_traffic_clip_motion_event_without_person_alert_once_the_rider_is_gone() -> None:
    frames, size, fps = video("traffic_320x240.avi", start=RIDER_FRAMES.stop + 10)
    summary = evaluate(frames[:250], size, fps)
    assert summary["events"] >= 1 and summary["alerts"] == 0
    assert summary["event_list"][0]["reason"].startswith("no person confirmed")


def test_traffic_clip_person_scores_only_where_the_rider_is() -> None:
    frames, size, fps = video("traffic_320x240.avi")
    settings = DetectorSettings()
    ev = Evaluation(settings, score_all=True)
    for i, data in enumerate(frames[:200]):
        ev.feed(i, data, size[0], size[1], fps)
    confident = [r["frame"] for r in ev.rows if (r["person_score"] or 0) >= 0.5]
    assert confident and all(f in RIDER_FRAMES for f in confident)


def test_global_brightness_step_on_a_static_scene_gives_no_event() -> None:
    base = road_background()
    bright = cv2.convertScaleAbs(base, alpha=1.1, beta=40)
    frames = [jpeg(base)] * 20 + [jpeg(bright)] * 60
    summary = evaluate(frames, (640, 480), person_mode=PersonMode.ANNOTATE)
    assert summary["events"] == 0 and summary["alerts"] == 0
    assert summary["background_resets"] == 1


def test_full_hd_frames_are_checked_on_a_reduced_decode_with_boxes_in_full_pixels() -> None:
    frames = []
    for data in photo_walks_in("coco_fastestdet_3.jpg"):
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        frames.append(jpeg(cv2.resize(image, (1920, 1440))))
    settings = DetectorSettings()
    ev = Evaluation(settings)
    for i, data in enumerate(frames):
        out = ev.feed(i, data, 1920, 1440, 10)
    assert out["alert"]
    person = ev.pipeline.tracker.person
    assert person is not None and person.box is not None
    x, y, w, h = person.box
    # the photo sits at x >= 80 (scaled x3), y = 120..(120 + 795): the box is inside it
    assert 60 <= x and x + w <= 1920 and 100 <= y and y + h <= 1440
    assert h > 400  # people ~560 px tall at this size: not left in half-size decode pixels


def test_a_person_beside_the_motion_region_does_not_confirm_it() -> None:
    """The model sees a square crop around the motion, which may show people standing still
    next to it; only a person box lying in the motion region counts."""
    path = ASSETS / "images" / "coco_fastestdet_3.jpg"
    data = path.read_bytes()
    checker = build_person_checker(DetectorSettings())
    assert checker is not None
    frame = BufferedFrame(seq=0, captured_at=0, jpeg=data, width=500, height=335)
    roi = (0, 60, 50, 50)  # motion left of the first person (x 41..188)
    assert checker.check(frame, roi) == []
    checker.min_overlap = 0.0
    assert checker.check(frame, roi)[0].score >= 0.5  # the crop does show that person

"""Motion detection on real footage and on controlled synthetic scenes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from homesec_detector.baseline import OriginalMotion
from homesec_detector.motion import MotionDetector, MotionSettings, reduction_for

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def video_jpegs(name: str) -> tuple[list[bytes], int, int]:
    cap = cv2.VideoCapture(str(ASSETS / "video" / name))
    out = []
    width = height = 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        height, width = image.shape[:2]
        out.append(jpeg(image))
    cap.release()
    assert out, name
    return out, width, height


def background(width: int = 640, height: int = 480, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(60, 180, (height // 8, width // 8, 3), dtype=np.uint8)
    return cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)


def with_square(base: np.ndarray, x: int, y: int, side: int = 120) -> np.ndarray:
    image = base.copy()
    cv2.rectangle(image, (x, y), (x + side, y + side), (250, 250, 250), -1)
    return image


def test_reduced_decode_factor_follows_frame_width() -> None:
    assert reduction_for(640, 160)[0] == 4
    assert reduction_for(1920, 160)[0] == 8
    assert reduction_for(320, 160)[0] == 2
    assert reduction_for(100, 160)[0] == 1
    detector = MotionDetector()
    detector.process_jpeg(jpeg(background()), 640, 480)
    assert detector.analysis_size == (160, 120)


def test_defaults_are_the_original_knobs() -> None:
    s = MotionSettings()
    assert (s.frame_width, s.ksize, s.alpha, s.delta_thresh, s.dilate_iterations) == (
        500,
        21,
        0.1,
        5,
        2,
    )
    assert s.min_area_fraction == pytest.approx(5000 / (500 * 375))


@pytest.mark.parametrize("clip", ["traffic_320x240.avi", "road_640x360.avi"])
def test_motion_on_real_traffic_keeps_the_original_recall(clip: str) -> None:
    frames, width, height = video_jpegs(clip)
    ours, original = MotionDetector(), OriginalMotion()
    ours_hits, original_hits = [], []
    for data in frames:
        result = ours.process_jpeg(data, width, height)
        assert result is not None
        ours_hits.append(result.occupied)
        original_hits.append(bool(original.process_jpeg(data)))
    both = sum(a and b for a, b in zip(ours_hits, original_hits, strict=True))
    assert sum(original_hits) > len(frames) // 3  # the clips really are full of motion
    assert both >= 0.97 * sum(original_hits)  # we find what the original found


def test_boxes_are_in_full_frame_pixels() -> None:
    base = background()
    detector = MotionDetector()
    detector.process_jpeg(jpeg(base), 640, 480)
    result = detector.process_jpeg(jpeg(with_square(base, 400, 200)), 640, 480)
    assert result is not None and result.occupied
    x, y, w, h = result.largest_box  # type: ignore[misc]
    assert x <= 400 and y <= 200 and x + w >= 520 and y + h >= 320
    assert x >= 360 and y >= 160 and x + w <= 560 and y + h <= 360
    assert 0.04 < result.largest_area < 0.2


def test_small_change_below_min_area_is_not_motion() -> None:
    base = background()
    detector = MotionDetector()
    detector.process_jpeg(jpeg(base), 640, 480)
    result = detector.process_jpeg(jpeg(with_square(base, 300, 200, side=30)), 640, 480)
    assert result is not None and not result.occupied


def brightness_step(detector: MotionDetector) -> list[bool]:
    base = cv2.imread(str(ASSETS / "images" / "coco_fastestdet_4.jpg"))
    h, w = base.shape[:2]
    bright = cv2.convertScaleAbs(base, alpha=1.0, beta=45)
    hits = []
    for i in range(40):
        result = detector.process_jpeg(jpeg(base if i < 15 else bright), w, h)
        assert result is not None
        hits.append(result.occupied)
    return hits


def test_global_brightness_step_relearns_instead_of_motion() -> None:
    guarded = MotionDetector()
    assert not any(brightness_step(guarded))
    assert guarded.background_resets == 1
    unguarded = MotionDetector(MotionSettings(global_change_fraction=0))
    assert sum(brightness_step(unguarded)) >= 5  # the original would have seen motion


def test_polygon_mask_ignores_its_area() -> None:
    base = background()
    moved = with_square(base, 60, 100)
    plain = MotionDetector()
    masked = MotionDetector(MotionSettings(masks=[[(0, 0), (0.5, 0), (0.5, 1), (0, 1)]]))
    for detector in (plain, masked):
        detector.process_jpeg(jpeg(base), 640, 480)
    assert plain.process_jpeg(jpeg(moved), 640, 480).occupied  # type: ignore[union-attr]
    assert not masked.process_jpeg(jpeg(moved), 640, 480).occupied  # type: ignore[union-attr]


def test_bad_mask_polygon_is_refused() -> None:
    with pytest.raises(ValueError):
        MotionSettings(masks=[[(0, 0), (2, 0), (1, 1)]])


def test_night_profile_uses_its_own_threshold() -> None:
    dark = (background() * 0.2).astype(np.uint8)
    faint = dark.copy()
    cv2.rectangle(faint, (200, 150), (360, 330), (0, 0, 0), -1)
    cv2.rectangle(faint, (200, 150), (360, 330), tuple(int(v) + 8 for v in dark[0, 0]), -1)
    day = MotionDetector()
    night = MotionDetector(MotionSettings(night_mean_below=60, night_delta_thresh=40))
    for detector in (day, night):
        detector.process_jpeg(jpeg(dark), 640, 480)
    r_day = day.process_jpeg(jpeg(faint), 640, 480)
    r_night = night.process_jpeg(jpeg(faint), 640, 480)
    assert r_day is not None and r_night is not None
    assert r_night.profile == "night" and r_day.profile == "day"
    assert r_day.occupied and not r_night.occupied


def test_undecodable_bytes_give_none() -> None:
    assert MotionDetector().process_jpeg(b"\xff\xd8 not a jpeg", 640, 480) is None


def test_small_change_is_still_a_place_to_check_for_a_person() -> None:
    """A 40x40 change (0.5 % of the frame) makes no occupied frame but gets a person check."""
    base = background()
    detector = MotionDetector()
    detector.process_jpeg(jpeg(base), 640, 480)
    result = detector.process_jpeg(jpeg(with_square(base, 300, 200, side=40)), 640, 480)
    assert result is not None and not result.occupied
    (x, y, w, h), *_ = result.check_boxes
    assert x <= 300 <= x + w and y <= 200 <= y + h
    off = MotionDetector(MotionSettings(check_area_fraction=0))
    off.process_jpeg(jpeg(base), 640, 480)
    result = off.process_jpeg(jpeg(with_square(base, 300, 200, side=40)), 640, 480)
    assert result is not None and not result.check_boxes


@pytest.mark.parametrize("gain", [0.5, 1.5])
def test_light_change_reports_what_still_differs(gain: float) -> None:
    """The guard re-learns the background on a light change, and says where the new frame
    still differs from the old background once brightness and contrast are matched: there a
    person may have come in while the lamp went off or on."""
    base = background()
    detector = MotionDetector()
    for _ in range(5):
        detector.process_jpeg(jpeg(base), 640, 480)
    changed = cv2.convertScaleAbs(with_square(base, 400, 150, side=100), alpha=gain)
    result = detector.process_jpeg(jpeg(changed), 640, 480)
    assert result is not None and result.global_change and not result.occupied
    assert not result.relit_whole
    (x, y, w, h), *rest = result.relit_boxes
    assert x <= 420 and x + w >= 480 and y <= 170 and y + h >= 230
    assert not rest
    # the same change with nobody in it: nothing differs once matched
    plain = MotionDetector()
    for _ in range(5):
        plain.process_jpeg(jpeg(base), 640, 480)
    result = plain.process_jpeg(jpeg(cv2.convertScaleAbs(base, alpha=gain)), 640, 480)
    assert result is not None and result.global_change and not result.relit_boxes

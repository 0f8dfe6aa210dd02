"""The demo scene: a real person walks in and out, the light steps and a cloud passes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from homesec_camera.settings import CameraSettings
from homesec_camera.sources import build_source
from homesec_camera.sources.demo import DemoScene, DemoSource, phase_at

REPO = Path(__file__).resolve().parents[2]
MODEL_CANDIDATES = (
    REPO / "services/detector/src/homesec_detector/models/fastestdet/FastestDet.onnx",
    REPO.parent / "shared/models/fastestdet/FastestDet.onnx",
)


@pytest.fixture(scope="module")
def scene() -> DemoScene:
    return DemoScene(640, 480, seed=7)


def changed_fraction(frame: np.ndarray, background: np.ndarray, threshold: int = 25) -> float:
    diff = cv2.absdiff(frame, background).max(axis=2)
    return float((diff > threshold).mean())


def test_timeline_phases() -> None:
    assert phase_at(0.0)[0] == "empty"
    assert phase_at(9.0)[0] == "walk_in"
    assert phase_at(12.0)[0] == "stand"
    assert phase_at(17.0)[0] == "walk_out"
    assert phase_at(20.0)[0] == "empty"
    assert phase_at(31.0)[0] == "empty"
    assert phase_at(33.0)[0] == "dim"
    assert phase_at(46.0)[0] == "cloud"
    assert phase_at(59.0)[0] == "walk_in"  # repeats every 50 s
    assert phase_at(1.8, period_seconds=10.0)[0] == "walk_in"  # 10 s period: x0.2


def test_empty_room_differs_from_background_only_by_noise(scene: DemoScene) -> None:
    for t in (0.5, 4.0, 7.5, 19.0, 25.0, 31.5, 42.0, 49.0):
        frame = scene.render(t, index=int(t * 10))
        assert changed_fraction(frame, scene.background) < 0.001, t
        assert float(cv2.absdiff(frame, scene.background).mean()) < 3.0


def test_person_walks_in_stays_and_leaves(scene: DemoScene) -> None:
    fractions = {
        t: changed_fraction(scene.render(t), scene.background) for t in np.arange(8.2, 18, 0.4)
    }
    assert all(f > 0.02 for t, f in fractions.items() if 8.6 <= t <= 17.6), fractions
    boxes = [scene.person_box(t) for t in (8.5, 9.5, 10.5, 13.0, 16.0, 17.5)]
    assert all(b is not None for b in boxes)
    xs = [b[0] for b in boxes if b is not None]
    assert xs[0] < xs[1] < xs[2] and xs[3] < xs[4] < xs[5]  # enters left, exits right
    assert scene.person_box(7.9) is None and scene.person_box(18.1) is None
    # the pixels that changed are where the person is
    x, y, w, h = scene.person_box(13.0)  # type: ignore[misc]
    diff = cv2.absdiff(scene.render(13.0), scene.background).max(axis=2) > 25
    assert diff[y : y + h, x : x + w].sum() > 0.95 * diff.sum()


def test_light_step_and_cloud_change_the_whole_frame(scene: DemoScene) -> None:
    bright = float(scene.render(31.9).mean())
    dim = float(scene.render(32.1).mean())
    assert dim < 0.7 * bright  # a step, from one frame to the next
    assert changed_fraction(scene.render(32.1), scene.background) > 0.8
    assert scene.person_box(35.0) is None
    assert float(scene.render(40.1).mean()) == pytest.approx(bright, rel=0.02)  # back up
    cloud = float(scene.render(46.0).mean())
    assert 0.75 * bright < cloud < 0.9 * bright


def test_deterministic_given_seed() -> None:
    a, b, c = DemoScene(320, 240, seed=3), DemoScene(320, 240, seed=3), DemoScene(320, 240, seed=4)
    assert np.array_equal(a.render(12.3, 5), b.render(12.3, 5))
    assert not np.array_equal(a.background, c.background)


def test_person_passes_the_person_model(scene: DemoScene) -> None:
    """The shipped FastestDet model scores the demo person >= 0.6 (and the room alone < 0.5)."""
    model = next((p for p in MODEL_CANDIDATES if p.is_file()), None)
    assert model is not None, f"FastestDet.onnx not found in {MODEL_CANDIDATES}"
    net = cv2.dnn.readNetFromONNX(str(model))

    def person_score(image: np.ndarray) -> float:
        resized = cv2.resize(image, (352, 352), interpolation=cv2.INTER_AREA)
        net.setInput(cv2.dnn.blobFromImage(resized, 1 / 255.0))
        out = net.forward()[0]  # 85 x 22 x 22: objectness, 4 box values, 80 class scores
        obj, person = np.clip(out[0], 0, 1), np.clip(out[5], 0, 1)
        return float((obj**0.6 * person**0.4).max())

    for t in (9.5, 13.0, 16.5):
        assert person_score(scene.render(t)) >= 0.6, t
    assert person_score(scene.render(4.0)) < 0.5


def test_demo_source_plays_in_real_time() -> None:
    now = [1000.0]
    source = DemoSource(160, 120, period_seconds=10.0, clock=lambda: now[0])
    source.open()
    empty = source.read()
    now[0] += 2.6  # stand phase of a 10 s period (x0.2)
    assert source.scene is not None
    assert changed_fraction(source.read(), source.scene.background) > 0.02
    assert changed_fraction(empty, source.scene.background) < 0.001
    source.close()


def test_build_source_uses_settings() -> None:
    source = build_source(CameraSettings(width=320, height=240, demo_period_seconds=12))
    assert isinstance(source, DemoSource)
    source.open()
    frame = source.read()
    assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8


def test_noise_fields_are_independent_windows_of_one_buffer(scene: DemoScene) -> None:
    """Six distinct noise fields from about one frame's worth of memory."""
    a = scene.render(2.0, index=0).astype(np.int16) - scene.background
    b = scene.render(2.0, index=1).astype(np.int16) - scene.background
    assert not np.array_equal(a, b)
    # per-pixel noise of two fields is uncorrelated (a shifted window of i.i.d. noise)
    correlation = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    assert abs(correlation) < 0.05, correlation
    assert len({id(base) for base in scene.noise_buffers()}) == 1
    assert scene.noise_buffers()[0].nbytes < 1.1 * scene.background.nbytes

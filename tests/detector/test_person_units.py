"""FastestDet decoder on hand-built output tensors, decoder registry, square crops, CpuBudget."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from homesec_detector.person import CpuBudget, SquareRegion, square_region
from homesec_detector.person_decoders import (
    DECODERS,
    Detection,
    FastestDetDecoder,
    make_decoder,
    register_decoder,
)

LABELS = ["person", "bicycle", "car"]


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def cell(
    out: np.ndarray, row: int, col: int, obj: float, d: Sequence[float], cls: dict[int, float]
) -> None:
    out[0, 0, row, col] = obj
    out[0, 1:5, row, col] = d
    for class_id, score in cls.items():
        out[0, 5 + class_id, row, col] = score


def decoder(threshold: float = 0.5) -> FastestDetDecoder:
    return FastestDetDecoder(score_threshold=threshold, nms_threshold=0.45, labels=LABELS)


def test_one_cell_decodes_to_the_expected_box() -> None:
    out = np.zeros((1, 85, 22, 22), np.float32)
    # centre offsets tanh(d1)=0.5, tanh(d2)=-0.25; size sigmoid(d3)=0.5, sigmoid(d4)=0.25
    cell(out, 5, 7, 0.9, [math.atanh(0.5), math.atanh(-0.25), 0.0, logit(0.25)], {0: 0.8})
    found = decoder().decode(out, 352, 264)
    assert len(found) == 1
    det = found[0]
    cx, cy = (7 + 0.5) / 22 * 352, (5 - 0.25) / 22 * 264  # 120, 57
    w, h = 0.5 * 352, 0.25 * 264  # 176, 66
    assert (
        det.box == (round(cx - w / 2), round(cy - h / 2), round(w), round(h)) == (32, 24, 176, 66)
    )
    assert det.score == pytest.approx(0.9**0.6 * 0.8**0.4, rel=1e-5)
    assert (det.class_id, det.label) == (0, "person")


def test_threshold_nms_and_best_class() -> None:
    out = np.zeros((1, 85, 22, 22), np.float32)
    cell(out, 10, 10, 0.95, [0, 0, 0, 0], {0: 0.9})  # person
    cell(out, 10, 11, 0.9, [-0.9, 0, 0, 0], {0: 0.85})  # same person again: suppressed
    cell(out, 3, 3, 0.9, [0, 0, -1, -1], {2: 0.9, 0: 0.3})  # a car: best class wins
    cell(out, 18, 2, 0.3, [0, 0, -1, -1], {0: 0.3})  # a weak person: below the threshold
    cell(out, 10, 12, 0.9, [0, 0, -1, -1], {2: 0.9})  # a car overlapping the person: kept
    found = decoder().decode(out, 352, 352)
    assert [(d.class_id, d.label) for d in found] == [(0, "person"), (2, "car"), (2, "car")]
    assert found[0].score == pytest.approx(0.95**0.6 * 0.9**0.4, rel=1e-5)
    assert found[0].box == (72, 72, 176, 176)  # centre (160, 160), half the image
    assert [round(d.score, 3) for d in found] == sorted(
        (round(d.score, 3) for d in found), reverse=True
    )
    weak = decoder(threshold=0.25).decode(out, 352, 352)
    assert any(d.class_id == 0 and d.box[1] + d.box[3] / 2 > 280 for d in weak)


def test_empty_output_and_unknown_label() -> None:
    out = np.zeros((1, 85, 22, 22), np.float32)
    assert decoder().decode(out, 640, 480) == []
    cell(out, 0, 0, 0.9, [0, 0, 0, 0], {40: 0.9})
    assert decoder().decode(out, 640, 480)[0].label == "40"  # no name for class 40 in LABELS
    with pytest.raises(ValueError, match="channels"):
        decoder().decode(np.zeros((22, 22), np.float32), 640, 480)
    with pytest.raises(ValueError, match="channels"):
        decoder().decode(np.zeros((1, 5, 22, 22), np.float32), 640, 480)


def test_decoder_registry() -> None:
    assert isinstance(
        make_decoder("fastestdet", score_threshold=0.5, nms_threshold=0.4, labels=LABELS),
        FastestDetDecoder,
    )
    with pytest.raises(ValueError, match="fastestdet"):
        make_decoder("yolo-nope", score_threshold=0.5, nms_threshold=0.4, labels=LABELS)

    @register_decoder("test-fixed")
    class Fixed:
        input_scale = 1.0
        swap_rb = True

        def __init__(
            self, *, score_threshold: float, nms_threshold: float, labels: Sequence[str]
        ) -> None:
            self.labels = labels

        def decode(self, outputs: np.ndarray, image_w: int, image_h: int) -> list[Detection]:
            return [Detection(1.0, (0, 0, image_w, image_h), 0, self.labels[0])]

    try:
        plugged = make_decoder("test-fixed", score_threshold=0.5, nms_threshold=0.4, labels=LABELS)
        assert plugged.decode(np.zeros(1), 4, 3) == [Detection(1.0, (0, 0, 4, 3), 0, "person")]
        with pytest.raises(ValueError, match="already registered"):
            register_decoder("test-fixed")(Fixed)
    finally:
        del DECODERS["test-fixed"]


def test_square_region() -> None:
    # whole 640x480 frame: letterboxed, 80 px of padding above and below
    assert square_region(640, 480, None, 0.25, 176) == SquareRegion(0, -80, 640)
    # ROI in the middle: longer side 100 + 25 % margin each side = 150 -> min side 176
    assert square_region(640, 480, (300, 200, 100, 60), 0.25, 176) == SquareRegion(262, 142, 176)
    # ROI at the corner: the square is shifted inside the image
    assert square_region(640, 480, (0, 0, 200, 100), 0.25, 176) == SquareRegion(0, 0, 300)
    assert square_region(640, 480, (600, 440, 40, 40), 0.25, 176) == SquareRegion(464, 304, 176)
    # ROI taller than the frame allows: the square is capped at the longer side and padded
    assert square_region(640, 480, (100, 0, 200, 480), 0.25, 176) == SquareRegion(0, -80, 640)
    # ROI partly outside the image is clamped first
    assert square_region(320, 240, (-50, -50, 100, 100), 0.0, 10) == SquareRegion(0, 0, 50)


def test_cpu_budget_sliding_window() -> None:
    now = [100.0]
    budget = CpuBudget(fraction=0.5, window_seconds=1.0, clock=lambda: now[0])
    assert budget.allow()
    budget.record(0.2)
    now[0] += 0.1
    budget.record(0.2)
    assert budget.allow()  # 0.4 s of model time in the last second < 0.5
    now[0] += 0.1
    budget.record(0.15)
    assert not budget.allow()  # 0.55 s >= 0.5
    assert budget.used() == pytest.approx(0.55)
    now[0] += 0.85  # the first record (t=100.0) leaves the window at t=101.0
    assert budget.used() == pytest.approx(0.35)
    assert budget.allow()
    now[0] += 5
    assert budget.used() == 0.0 and budget.allow()
    with pytest.raises(ValueError):
        CpuBudget(fraction=0)

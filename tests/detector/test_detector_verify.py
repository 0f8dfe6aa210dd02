"""The second model: YOLOX and NanoDet decoders, the two-stage check, wiring in the pipeline."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from homesec_detector.person import PersonDetector
from homesec_detector.person_decoders import Detection, NanoDetDecoder, YoloxDecoder
from homesec_detector.person_verify import (
    BUNDLED_VERIFIER,
    VerifiedDetector,
    VerifierSettings,
)
from homesec_detector.pipeline import build_person_checker
from homesec_detector.settings import DetectorSettings

ASSETS = Path(__file__).resolve().parents[1] / "assets"
COCO = [f"c{i}" for i in range(80)]


def test_bundled_yolox_nano_finds_the_people_and_no_cat() -> None:
    assert BUNDLED_VERIFIER.is_file() and (BUNDLED_VERIFIER.parent / "LICENSE").is_file()
    model = PersonDetector(VerifierSettings(score_threshold=0.5))
    living_room = cv2.imread(str(ASSETS / "images" / "coco_fastestdet_2.jpg"))
    found = model.detect(living_room)
    assert len(found) >= 3 and all(d.label == "person" for d in found)
    x, y, w, h = found[0].box
    assert h > 250 and w < 200  # standing people, not the room
    cats = cv2.imread(str(ASSETS / "images" / "coco_fastestdet_4.jpg"))
    assert model.detect(cats) == []


def test_yolox_decoder_maps_a_cell_to_its_box() -> None:
    size, decoder = 64, YoloxDecoder(score_threshold=0.5, nms_threshold=0.45, labels=COCO)
    cells = sum((size // s) ** 2 for s in (8, 16, 32))
    out = np.zeros((1, cells, 85), np.float32)
    # stride-16 grid starts after the 8x8 stride-8 cells; its cell (col 1, row 2) is index 9
    i = (size // 8) ** 2 + 2 * (size // 16) + 1
    out[0, i, :4] = (0.5, 0.5, np.log(2.0), np.log(3.0))  # centre (1.5, 2.5) cells, 2x3 cells
    out[0, i, 4], out[0, i, 5] = 0.9, 0.8
    (det,) = decoder.decode(out, 128, 128)  # the model input was a 128 px image
    assert det.class_id == 0 and abs(det.score - 0.72) < 1e-6
    # centre (1.5 * 16, 2.5 * 16) = (24, 40) in input px, size 32x48; x2 for the 128 px image
    assert det.box == (16, 32, 64, 96)


def test_nanodet_decoder_maps_distances_to_a_box() -> None:
    decoder = NanoDetDecoder(score_threshold=0.5, nms_threshold=0.6, labels=COCO)
    size = 64
    cls = [np.zeros((1, (size // s) ** 2, 80), np.float32) for s in (8, 16, 32)]
    dis = [np.full((1, (size // s) ** 2, 32), -20.0, np.float32) for s in (8, 16, 32)]
    cls[1][0, 5, 0] = 0.7  # stride 16, cell (col 1, row 1): centre (24, 24)
    for side, dist in enumerate((1, 2, 3, 0)):  # left, top, right, bottom, in strides
        dis[1][0, 5, side * 8 + dist] = 20.0
    (det,) = decoder.decode([*cls, *dis], size, size)
    assert det.class_id == 0 and abs(det.score - 0.7) < 1e-6
    assert det.box == (8, -8, 64, 32)  # x0 = 24 - 16, y0 = 24 - 32, x1 = 24 + 48, y1 = 24


class Fake:
    def __init__(self, found: list[Detection]) -> None:
        self.found = found
        self.calls: list[tuple[int, int, int, int] | None] = []

    def detect(self, image: np.ndarray, roi: tuple[int, int, int, int] | None = None) -> list:
        self.calls.append(roi)
        return list(self.found)


def person(score: float, box: tuple[int, int, int, int]) -> Detection:
    return Detection(score, box, 0, "person")


def test_two_stage_keeps_only_what_the_second_model_sees_too() -> None:
    image = np.zeros((480, 640, 3), np.uint8)
    first = Fake([person(0.6, (100, 100, 50, 150)), person(0.55, (400, 50, 60, 100))])
    second = Fake([person(0.9, (102, 98, 48, 152))])
    two = VerifiedDetector(first, second, VerifierSettings())  # type: ignore[arg-type]
    (kept,) = two.detect(image, (90, 40, 400, 220))
    assert kept.box == (100, 100, 50, 150) and kept.score == 0.9  # the higher of the two
    assert second.calls == [(100, 50, 360, 200)]  # one look, around both candidates
    assert two.verifications == 1


def test_two_stage_does_not_run_the_second_model_on_nothing() -> None:
    image = np.zeros((480, 640, 3), np.uint8)
    first = Fake([person(0.3, (100, 100, 50, 150))])  # below min_first_score: reported only
    second = Fake([person(0.9, (100, 100, 50, 150))])
    two = VerifiedDetector(first, second, VerifierSettings())  # type: ignore[arg-type]
    assert two.detect(image) == first.found and second.calls == []


def test_two_stage_drops_a_candidate_the_second_model_scores_low() -> None:
    image = np.zeros((480, 640, 3), np.uint8)
    first = Fake([person(0.75, (100, 100, 80, 80))])  # a cat FastestDet calls a person
    second = Fake([person(0.1, (100, 100, 80, 80))])
    two = VerifiedDetector(first, second, VerifierSettings())  # type: ignore[arg-type]
    assert two.detect(image) == []


@pytest.mark.parametrize("enabled", [True, False])
def test_the_pipeline_uses_the_second_model_unless_disabled(enabled: bool) -> None:
    settings = DetectorSettings(verifier={"enabled": enabled})  # type: ignore[arg-type]
    checker = build_person_checker(settings)
    assert checker is not None
    assert isinstance(checker.detector, VerifiedDetector) is enabled

"""Two-stage person check: a fast first model, a second model only on its candidates.

The first model (FastestDet, ~9 ms on x86) runs on every check. Where it finds a person
candidate scoring at least ``min_first_score``, the second model (YOLOX-nano, ~22 ms) looks at a
square crop around the candidates. A first-stage candidate then counts only if a second-stage
person box overlaps it (IoU >= ``match_iou``) with a score of at least ``score_threshold``; its
score becomes the higher of the two. Candidates the second model does not see are dropped: on
the evaluation set that removes the cats FastestDet calls persons (docs/performance-person.md).
The second model runs only when the first is interested, so an empty or traffic scene costs
what the first model costs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal, Protocol

import cv2
import numpy as np
from pydantic import Field

from homesec_detector.evidence import iou
from homesec_detector.person import Box, PersonDetector, PersonModelSettings, SquareRegion
from homesec_detector.person_decoders import Detection

BUNDLED_VERIFIER = Path(__file__).resolve().parent / "models" / "yolox_nano" / "yolox_nano.onnx"


class Detects(Protocol):
    """What the pipeline needs of a person model (``PersonDetector``, ``VerifiedDetector``)."""

    def detect(self, image_bgr: np.ndarray, roi: Box | None = None) -> list[Detection]: ...


def detect_in_jpeg(
    detector: Detects,
    jpeg: bytes,
    flag: int,
    roi: Box | None,
    relight: tuple[float, float] | None,
) -> list[Detection] | None:
    """A person check's model answer: ``detector``'s detections in ``jpeg`` decoded with
    ``flag`` (``roi`` in its pixels), relit first (gain, offset); None when it does not
    decode. ``homesec tune`` keeps these answers, keyed by the code from here on."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), flag)
    if image is None:
        return None
    if relight is not None:
        cv2.addWeighted(image, relight[0], image, 0.0, relight[1], dst=image)
    return detector.detect(image, roi)


class VerifierSettings(PersonModelSettings):
    """The second model (``HOMESEC_DETECTOR_VERIFIER__*``); defaults: bundled YOLOX-nano."""

    enabled: bool = Field(True, description="Run the second model on first-stage candidates")
    model_path: Path | None = BUNDLED_VERIFIER
    decoder: Literal["fastestdet", "yolox", "nanodet"] = "yolox"
    input_size: int = Field(320, ge=32)  # 416 (its training size): +1 ms recall, 1.6x time
    score_threshold: float = Field(
        0.3, ge=0.0, le=1.0, description="A second-stage person box scoring this confirms"
    )
    min_first_score: float = Field(
        0.45, ge=0.0, le=1.0, description="First-stage candidates from this score are verified"
    )
    match_iou: float = Field(
        0.3, ge=0.0, le=1.0, description="IoU of the two models' boxes for the same person"
    )


class VerifiedDetector:
    """``PersonDetector``'s interface, answered by two models (see the module docstring)."""

    def __init__(self, first: PersonDetector, second: PersonDetector, settings: VerifierSettings):
        self.first = first
        self.second = second
        self.settings = settings
        self.seconds_last = 0.0
        self.verifications = 0

    def region(self, img_w: int, img_h: int, roi: Box | None) -> SquareRegion | None:
        """The first model's square: the second one looks only where the first found."""
        return self.first.region(img_w, img_h, roi)

    def detect(self, image_bgr: np.ndarray, roi: Box | None = None) -> list[Detection]:
        started = time.perf_counter()
        found = self.first.detect(image_bgr, roi)
        s = self.settings
        asked = [d for d in found if d.score >= s.min_first_score]
        if not asked:
            self.seconds_last = time.perf_counter() - started
            return found
        x0 = min(d.box[0] for d in asked)
        y0 = min(d.box[1] for d in asked)
        x1 = max(d.box[0] + d.box[2] for d in asked)
        y1 = max(d.box[1] + d.box[3] for d in asked)
        seen = self.second.detect(image_bgr, (x0, y0, x1 - x0, y1 - y0))
        self.verifications += 1
        out = [d for d in found if d.score < s.min_first_score]
        for det in asked:
            match = max((v.score for v in seen if iou(v.box, det.box) >= s.match_iou), default=None)
            if match is not None and match >= s.score_threshold:
                out.append(Detection(max(det.score, match), det.box, det.class_id, det.label))
        out.sort(key=lambda d: d.score, reverse=True)
        self.seconds_last = time.perf_counter() - started
        return out

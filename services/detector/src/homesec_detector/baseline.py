"""The original system's motion recipe, verbatim, as the baseline for evaluation and benchmark.

decode JPEG → resize to 500 wide (INTER_AREA) → grey → GaussianBlur 21x21 → accumulateWeighted
0.1 → absdiff → threshold 5 → dilate x2 → external contours → occupied if any area > 5000.
No buffer reuse, no reduced decode: this is what homesec is measured against.
"""

from __future__ import annotations

import cv2
import numpy as np


class OriginalMotion:
    """The original per-frame motion test, written out step by step."""

    def __init__(
        self,
        frame_width: int = 500,
        ksize: int = 21,
        alpha: float = 0.1,
        delta_thresh: int = 5,
        dilate_iterations: int = 2,
        min_area: float = 5000,
    ) -> None:
        self.frame_width = frame_width
        self.ksize = ksize
        self.alpha = alpha
        self.delta_thresh = delta_thresh
        self.dilate_iterations = dilate_iterations
        self.min_area = min_area
        self.avg: np.ndarray | None = None

    def process_jpeg(self, jpeg: bytes) -> bool | None:
        frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if frame is None:
            return None
        return self.process_bgr(frame)

    def process_bgr(self, frame: np.ndarray) -> bool:
        h, w = frame.shape[:2]
        height = int(h * self.frame_width / w)
        frame = cv2.resize(frame, (self.frame_width, height), interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        gray = cv2.GaussianBlur(gray, (self.ksize, self.ksize), 0)
        if self.avg is None:
            self.avg = gray.copy().astype("float")
            return False
        cv2.accumulateWeighted(gray, self.avg, self.alpha)
        delta = cv2.absdiff(gray, cv2.convertScaleAbs(self.avg))
        thresh = cv2.threshold(delta, self.delta_thresh, 255, cv2.THRESH_BINARY)[1]
        thresh = cv2.dilate(thresh, None, iterations=self.dilate_iterations)
        contours, _ = cv2.findContours(thresh, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        return any(cv2.contourArea(c) > self.min_area for c in contours)

"""Person confirmation: a pretrained ONNX detector (bundled FastestDet) run through cv2.dnn.

The model sees an aspect-preserving square: the whole frame letterboxed, or a square crop around
the motion region (plus a margin, clamped to the frame, padded where the frame is too small).
Squashing a 4:3 frame into the square model input costs accuracy (models/SOURCE.md). Boxes come
back in full-image pixels. Other ONNX detectors plug in through a decoder (person_decoders.py).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, Field

from homesec_detector.person_decoders import (
    DECODERS,
    Decoder,
    Detection,
    FastestDetDecoder,
    Outputs,
    make_decoder,
    register_decoder,
)

__all__ = [
    "BUNDLED_MODEL",
    "DECODERS",
    "CpuBudget",
    "Decoder",
    "Detection",
    "FastestDetDecoder",
    "PersonDetector",
    "PersonModelSettings",
    "SquareRegion",
    "register_decoder",
    "square_region",
]

BUNDLED_MODEL = Path(__file__).resolve().parent / "models" / "fastestdet" / "FastestDet.onnx"

Box = tuple[int, int, int, int]


class PersonModelSettings(BaseModel):
    """Person model settings (nested in the detector's settings)."""

    model_path: Path | None = None  # None -> the bundled FastestDet
    labels_path: Path | None = None  # None -> <model>.names or coco.names beside the model
    decoder: Literal["fastestdet", "yolox", "nanodet"] = "fastestdet"
    input_size: int = Field(352, ge=32)
    score_threshold: float = Field(0.5, ge=0.0, le=1.0)  # empty indoor scenes score 0.3-0.37
    nms_threshold: float = Field(0.45, ge=0.0, le=1.0)
    person_class_id: int = Field(0, ge=0)
    crop_margin: float = Field(0.25, ge=0.0)  # margin around the ROI, as a fraction of its side
    min_crop_side: int = Field(176, ge=1)  # smallest crop (px): limits upscaling of tiny ROIs
    min_box_fraction: float = Field(0.0, ge=0.0, le=1.0)  # ignore boxes smaller than this
    full_frame: Literal["letterbox", "squash"] = "letterbox"  # without ROI
    resize: Literal["area", "linear"] = "area"  # last resize step (after exact 2x halvings)
    threads: int | None = Field(None, ge=1)  # cv2.setNumThreads (process-wide) when set


@dataclass(frozen=True)
class SquareRegion:
    """A square of side ``side`` whose top-left corner is (x0, y0) in image pixels.

    It may stick out of the image (the part outside is padding)."""

    x0: int
    y0: int
    side: int


def _place(centre: float, side: int, length: int) -> int:
    if side <= length:
        return int(round(min(max(centre - side / 2, 0.0), length - side)))
    return -((side - length) // 2)  # longer than the image: centre the image, pad both ends


def square_region(
    image_w: int, image_h: int, roi: Box | None, margin: float, min_side: int
) -> SquareRegion:
    """The square the model sees for ``roi`` (None: the whole image, letterboxed).

    The square is the ROI's longer side plus ``margin`` on each side (at least ``min_side``, at
    most the image's longer side), centred on the ROI and shifted to stay inside the image."""
    if roi is None:
        side = max(image_w, image_h)
        return SquareRegion(
            _place(image_w / 2, side, image_w), _place(image_h / 2, side, image_h), side
        )
    x, y, w, h = roi
    x0, y0 = min(max(x, 0), image_w - 1), min(max(y, 0), image_h - 1)
    x1, y1 = min(max(x + w, x0 + 1), image_w), min(max(y + h, y0 + 1), image_h)
    want = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin)
    side = int(round(min(max(want, min_side), max(image_w, image_h))))
    return SquareRegion(
        _place((x0 + x1) / 2, side, image_w), _place((y0 + y1) / 2, side, image_h), side
    )


def resize_into(src: np.ndarray, dst: np.ndarray, last: Literal["area", "linear"]) -> None:
    """Resize ``src`` into the pre-allocated (possibly strided) image ``dst``.

    Downscaling is built from exact 2x INTER_AREA halvings, which OpenCV does fast (~0.5 ms from
    1080p; one INTER_AREA resize straight to 352 costs ~6.6 ms on one core, ~1.5 ms from 640x480):
    halve while the source is at least twice the target, then for the last step (< 2x)
    ``area``: bilinear to exactly twice the target and one more halving — within 0.3 grey levels
    of INTER_AREA (the model's reference preprocessing) at ~0.6 ms instead of ~1.5 ms for 640x480;
    ``linear``: one bilinear step (~0.2 ms; slightly more false positives on the road footage:
    7 vs 4 of 374 frames at 0.5). Upscaling is bilinear."""
    th, tw = dst.shape[:2]
    while src.shape[0] >= 2 * th and src.shape[1] >= 2 * tw:
        h2, w2 = src.shape[0] // 2, src.shape[1] // 2
        src = cv2.resize(src[: 2 * h2, : 2 * w2], (w2, h2), interpolation=cv2.INTER_AREA)
    if last == "area" and (src.shape[1] > tw or src.shape[0] > th):
        src = cv2.resize(src, (2 * tw, 2 * th), interpolation=cv2.INTER_LINEAR)
        cv2.resize(src, (tw, th), dst=dst, interpolation=cv2.INTER_AREA)
    else:
        cv2.resize(src, (tw, th), dst=dst, interpolation=cv2.INTER_LINEAR)


def _read_labels(settings: PersonModelSettings, model_path: Path) -> list[str]:
    path = settings.labels_path
    if path is None:
        for candidate in (model_path.with_suffix(".names"), model_path.parent / "coco.names"):
            if candidate.is_file():
                path = candidate
                break
    if path is None:
        return []
    if not path.is_file():
        raise FileNotFoundError(f"person model labels file not found: {path}")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class PersonDetector:
    """Finds persons in BGR images with an ONNX detector loaded from a local file.

    Thread-safe (one inference at a time); ``seconds_last`` is the wall time of the last call."""

    def __init__(self, settings: PersonModelSettings) -> None:
        self.settings = settings
        self.model_path = (settings.model_path or BUNDLED_MODEL).expanduser()
        if not self.model_path.is_file():
            raise FileNotFoundError(f"person model file not found: {self.model_path}")
        if settings.threads is not None:
            cv2.setNumThreads(settings.threads)
        try:
            self._net = cv2.dnn.readNetFromONNX(str(self.model_path))
        except cv2.error as exc:
            raise ValueError(f"cannot load person model {self.model_path}: {exc}") from exc
        self._outputs = list(self._net.getUnconnectedOutLayersNames())
        self.labels = _read_labels(settings, self.model_path)
        self.decoder: Decoder = make_decoder(
            settings.decoder,
            score_threshold=settings.score_threshold,
            nms_threshold=settings.nms_threshold,
            labels=self.labels,
        )
        size = settings.input_size
        self._canvas = np.zeros((size, size, 3), np.uint8)  # the model input, as an image
        self._blob = np.zeros((1, 3, size, size), np.float32)  # ... and as the NCHW tensor
        self._lock = threading.Lock()
        self.seconds_last = 0.0
        try:  # warm up (first inference allocates) and check the model and decoder agree
            self.decoder.decode(self._forward(), size, size)
        except (cv2.error, ValueError) as exc:
            raise ValueError(
                f"person model {self.model_path} does not run with decoder "
                f"{settings.decoder!r} at input {size}: {exc}"
            ) from exc

    def _fill_blob(self) -> np.ndarray:
        """The canvas as the model's NCHW float input, written into the pre-allocated blob.

        ~0.2 ms for 352x352 where ``cv2.dnn.blobFromImage`` takes ~1.3 ms on opencv 5.0 for
        the same values (measured; see docs/performance-person.md)."""
        d = self.decoder
        canvas = self._canvas[:, :, ::-1] if d.swap_rb else self._canvas
        planes = canvas.transpose(2, 0, 1)
        mean, std = getattr(d, "input_mean", None), getattr(d, "input_std", None)
        if mean is None and std is None:
            np.multiply(planes, np.float32(d.input_scale), out=self._blob[0], casting="unsafe")
            return self._blob
        mean, std = mean or (0.0, 0.0, 0.0), std or (1.0, 1.0, 1.0)
        for c in range(3):
            np.subtract(planes[c], np.float32(mean[c]), out=self._blob[0, c], casting="unsafe")
            self._blob[0, c] *= np.float32(d.input_scale / std[c])
        return self._blob

    def _forward(self) -> Outputs:
        """Run the model on the canvas; the raw output tensor(s)."""
        self._net.setInput(self._fill_blob())
        if len(self._outputs) == 1:
            out: np.ndarray = self._net.forward()
            return out
        return list(self._net.forward(self._outputs))

    def _fill_canvas(self, image: np.ndarray, region: SquareRegion) -> None:
        """Resize the image part of ``region`` into the model-input canvas; pad the rest black."""
        img_h, img_w = image.shape[:2]
        size = self.settings.input_size
        scale = size / region.side
        cx0, cy0 = max(region.x0, 0), max(region.y0, 0)
        cx1, cy1 = min(region.x0 + region.side, img_w), min(region.y0 + region.side, img_h)
        ox, oy = int(round((cx0 - region.x0) * scale)), int(round((cy0 - region.y0) * scale))
        nw = min(max(int(round((cx1 - cx0) * scale)), 1), size - ox)
        nh = min(max(int(round((cy1 - cy0) * scale)), 1), size - oy)
        canvas = self._canvas
        if nw < size or nh < size:
            canvas.fill(0)
        resize_into(
            image[cy0:cy1, cx0:cx1], canvas[oy : oy + nh, ox : ox + nw], self.settings.resize
        )

    def region(self, img_w: int, img_h: int, roi: Box | None) -> SquareRegion | None:
        """The square the model sees for ``roi`` in an image of that size (None: the whole
        image squashed): what :meth:`detect`'s answer depends on besides the pixels."""
        s = self.settings
        if roi is None and s.full_frame == "squash":
            return None
        return square_region(img_w, img_h, roi, s.crop_margin, s.min_crop_side)

    def detect(self, image_bgr: np.ndarray, roi: Box | None = None) -> list[Detection]:
        """Persons (score >= threshold) in ``image_bgr``, boxes in full-image pixels, best first.

        With ``roi`` (x, y, w, h) the model sees a square crop around it; without, the whole
        frame (letterboxed, or squashed when ``full_frame="squash"``)."""
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise ValueError(f"expected a BGR image HxWx3, got shape {image_bgr.shape}")
        start = time.perf_counter()
        img_h, img_w = image_bgr.shape[:2]
        s = self.settings
        with self._lock:
            try:
                region = self.region(img_w, img_h, roi)
                if region is None:
                    resize_into(image_bgr, self._canvas, s.resize)
                    raw = self.decoder.decode(self._forward(), img_w, img_h)
                    x0 = y0 = 0
                else:
                    self._fill_canvas(image_bgr, region)
                    raw = self.decoder.decode(self._forward(), region.side, region.side)
                    x0, y0 = region.x0, region.y0
            finally:
                self.seconds_last = time.perf_counter() - start
        min_area = s.min_box_fraction * img_w * img_h
        found = []
        for det in raw:
            if det.class_id != s.person_class_id:
                continue
            box = _clip((det.box[0] + x0, det.box[1] + y0, det.box[2], det.box[3]), img_w, img_h)
            if box is None or box[2] * box[3] < min_area:
                continue
            found.append(Detection(det.score, box, det.class_id, det.label))
        self.seconds_last = time.perf_counter() - start
        return found

    def best_score(self, image_bgr: np.ndarray, roi: Box | None = None) -> float:
        """The highest person score at or above the threshold, or 0.0 when none is found."""
        found = self.detect(image_bgr, roi)
        return max((det.score for det in found), default=0.0)


def _clip(box: Box, img_w: int, img_h: int) -> Box | None:
    x, y, w, h = box
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, img_w), min(y + h, img_h)
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


class CpuBudget:
    """Allows a person check only while model time in the last ``window_seconds`` stays under
    ``fraction`` of one core (``fraction * window_seconds`` seconds). Thread-safe."""

    def __init__(
        self,
        fraction: float = 0.5,
        window_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if fraction <= 0 or window_seconds <= 0:
            raise ValueError("fraction and window_seconds must be positive")
        self.fraction = fraction
        self.window_seconds = window_seconds
        self._clock = clock
        self._spent: deque[tuple[float, float]] = deque()  # (recorded at, seconds)
        self._total = 0.0
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        horizon = now - self.window_seconds
        while self._spent and self._spent[0][0] <= horizon:
            self._total -= self._spent.popleft()[1]
        if not self._spent:
            self._total = 0.0  # no float drift once the window is empty

    def used(self) -> float:
        """Seconds of model time recorded within the window."""
        with self._lock:
            self._expire(self._clock())
            return max(self._total, 0.0)

    def allow(self) -> bool:
        return self.used() < self.fraction * self.window_seconds

    def record(self, seconds: float) -> None:
        with self._lock:
            now = self._clock()
            self._expire(now)
            self._spent.append((now, max(seconds, 0.0)))
            self._total += max(seconds, 0.0)

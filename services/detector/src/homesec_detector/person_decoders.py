"""Decoders that turn a detector model's raw output into detections, and their registry.

A decoder knows one model family's input/output contract: how the input blob is scaled (class
attributes ``input_scale`` and ``swap_rb``) and how the raw output tensor becomes boxes. The
:class:`~homesec_detector.person.PersonDetector` does everything else (loading, square crops,
mapping boxes back to the full image, filtering persons).

Plugging in another ONNX detector:

1. Write a class with ``__init__(self, *, score_threshold, nms_threshold, labels)``, the class
   attributes ``input_scale``/``swap_rb``, and ``decode(outputs, image_w, image_h)`` returning
   :class:`Detection` objects with boxes in pixels of an ``image_w`` x ``image_h`` image (the
   model input is that image resized to the square model input).
2. Register it: decorate the class with ``@register_decoder("name")``.
3. Add ``"name"`` to the ``decoder`` Literal of ``PersonModelSettings`` and point ``model_path``
   (and ``labels_path``) at the model. See services/detector/PERSON_MODEL.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import cv2
import numpy as np


@dataclass(frozen=True)
class Detection:
    """One detected object."""

    score: float  # 0..1
    box: tuple[int, int, int, int]  # x, y, w, h in pixels of the image passed in
    class_id: int
    label: str


Outputs = np.ndarray | Sequence[np.ndarray]
"""The model's output tensor, or its output tensors in the order of the model's output names."""


class Decoder(Protocol):
    """Turns raw model outputs into detections (boxes in pixels of an image_w x image_h image).

    The input blob is ``(canvas - input_mean) * input_scale / input_std`` per channel (BGR, or
    RGB with ``swap_rb``); ``input_mean``/``input_std`` None mean 0 and 1."""

    input_scale: float
    swap_rb: bool
    input_mean: tuple[float, float, float] | None
    input_std: tuple[float, float, float] | None

    def decode(self, outputs: Outputs, image_w: int, image_h: int) -> list[Detection]: ...


class DecoderFactory(Protocol):
    def __call__(
        self, *, score_threshold: float, nms_threshold: float, labels: Sequence[str]
    ) -> Decoder: ...


DECODERS: dict[str, DecoderFactory] = {}

_F = TypeVar("_F", bound=Callable[..., Decoder])


def register_decoder(name: str) -> Callable[[_F], _F]:
    """Class decorator: make a decoder selectable by ``name`` in the settings."""

    def add(factory: _F) -> _F:
        if name in DECODERS:
            raise ValueError(f"decoder {name!r} is already registered")
        DECODERS[name] = factory
        return factory

    return add


def make_decoder(
    name: str, *, score_threshold: float, nms_threshold: float, labels: Sequence[str]
) -> Decoder:
    """Build the registered decoder ``name``; unknown names raise ValueError listing the known."""
    try:
        factory = DECODERS[name]
    except KeyError:
        raise ValueError(f"unknown person decoder {name!r}; known: {sorted(DECODERS)}") from None
    return factory(score_threshold=score_threshold, nms_threshold=nms_threshold, labels=labels)


def label_for(labels: Sequence[str], class_id: int) -> str:
    return labels[class_id] if 0 <= class_id < len(labels) else str(class_id)


@register_decoder("fastestdet")
class FastestDetDecoder:
    """FastestDet (dog-qiuqiu, COCO-80): output 1 x (5 + classes) x H x W grid.

    Per cell the channels are objectness, d1..d4, then the class scores. A cell's score is
    ``obj^0.6 * cls^0.4`` for its best class; its box centre is ``((col + tanh d1) / W,
    (row + tanh d2) / H)`` and its size ``(sigmoid d3, sigmoid d4)``, all as image fractions.
    Overlapping boxes of one class are merged by non-maximum suppression. Channel order verified
    on the bundled photos (boxes land on the persons, the bus is class 5, the cats 15-16).
    """

    input_scale = 1.0 / 255.0
    swap_rb = False
    input_mean = None
    input_std = None

    def __init__(
        self, *, score_threshold: float, nms_threshold: float, labels: Sequence[str]
    ) -> None:
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.labels = list(labels)

    def decode(self, outputs: Outputs, image_w: int, image_h: int) -> list[Detection]:
        outputs = _single(outputs)
        shape = tuple(int(v) for v in outputs.shape)
        if len(shape) < 3 or shape[-3] < 6 or any(v != 1 for v in shape[:-3]):
            raise ValueError(f"FastestDet output must be 1 x >=6 channels x H x W, got {shape}")
        channels, rows, cols = shape[-3:]
        flat = outputs.reshape(channels, rows * cols)  # (5 + classes, cells)
        cls = flat[5:]
        class_ids = cls.argmax(axis=0)
        cells = np.arange(rows * cols)
        cls_score = cls[class_ids, cells]
        obj = np.clip(flat[0], 0.0, 1.0)
        scores = np.power(obj, 0.6) * np.power(np.clip(cls_score, 0.0, 1.0), 0.4)
        keep = np.flatnonzero(scores >= self.score_threshold)
        if keep.size == 0:
            return []
        row, col = np.divmod(keep, cols)
        d = flat[1:5, keep].astype(np.float64)
        cx = (col + np.tanh(d[0])) / cols * image_w
        cy = (row + np.tanh(d[1])) / rows * image_h
        bw = image_w / (1.0 + np.exp(-d[2]))
        bh = image_h / (1.0 + np.exp(-d[3]))
        boxes = np.stack([cx - bw / 2, cy - bh / 2, bw, bh], axis=1)
        return _nms(self, boxes, scores[keep], class_ids[keep])


def _single(outputs: Outputs) -> np.ndarray:
    if isinstance(outputs, np.ndarray):
        return outputs
    if len(outputs) != 1:
        raise ValueError(f"expected one output tensor, got {len(outputs)}")
    return outputs[0]


class _Thresholds(Protocol):
    score_threshold: float
    nms_threshold: float
    labels: list[str]


def _nms(
    d: _Thresholds, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray
) -> list[Detection]:
    """Per-class non-maximum suppression of (x, y, w, h) pixel boxes; best first."""
    kept_scores = scores.astype(float)
    chosen = cv2.dnn.NMSBoxesBatched(
        boxes.tolist(), kept_scores.tolist(), class_ids.tolist(), d.score_threshold, d.nms_threshold
    )
    found = []
    for i in np.asarray(chosen, dtype=int).reshape(-1):
        x, y, w, h = (int(round(v)) for v in boxes[i])
        class_id = int(class_ids[i])
        found.append(
            Detection(float(kept_scores[i]), (x, y, w, h), class_id, label_for(d.labels, class_id))
        )
    found.sort(key=lambda det: det.score, reverse=True)
    return found


def _grid(size: int, strides: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell columns, rows and strides of an anchor-free head's outputs, strides in order."""
    cols, rows, steps = [], [], []
    for stride in strides:
        n = size // stride
        r, c = np.divmod(np.arange(n * n), n)
        cols.append(c)
        rows.append(r)
        steps.append(np.full(n * n, stride))
    return np.concatenate(cols), np.concatenate(rows), np.concatenate(steps)


@register_decoder("yolox")
class YoloxDecoder:
    """YOLOX exported without the in-graph box decoding (Megvii YOLOX, Apache-2.0): output
    1 x cells x (4 + 1 + classes) over strides 8, 16, 32, row-major per stride; per cell the box
    offsets (dx, dy, log w, log h) in stride units, then objectness and class scores already
    through a sigmoid. Score = objectness x class; input BGR 0-255 (no scaling)."""

    input_scale = 1.0
    swap_rb = False
    input_mean = None
    input_std = None
    strides = (8, 16, 32)

    def __init__(
        self, *, score_threshold: float, nms_threshold: float, labels: Sequence[str]
    ) -> None:
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.labels = list(labels)

    def decode(self, outputs: Outputs, image_w: int, image_h: int) -> list[Detection]:
        out = _single(outputs)
        if out.ndim != 3 or out.shape[0] != 1 or out.shape[2] < 6:
            raise ValueError(f"YOLOX output must be 1 x cells x (5 + classes), got {out.shape}")
        pred = out[0]
        size = int(round(np.sqrt(pred.shape[0] / sum(1 / s**2 for s in self.strides))))
        cols, rows, steps = _grid(size, self.strides)
        if cols.size != pred.shape[0]:
            raise ValueError(f"YOLOX output has {pred.shape[0]} cells, not a square input's")
        cls = pred[:, 5:]
        class_ids = cls.argmax(axis=1)
        scores = pred[:, 4] * cls[np.arange(len(cls)), class_ids]
        keep = np.flatnonzero(scores >= self.score_threshold)
        if keep.size == 0:
            return []
        p = pred[keep].astype(np.float64)
        stride = steps[keep]
        sx, sy = image_w / size, image_h / size
        cx = (p[:, 0] + cols[keep]) * stride * sx
        cy = (p[:, 1] + rows[keep]) * stride * sy
        bw = np.exp(np.clip(p[:, 2], -10, 10)) * stride * sx
        bh = np.exp(np.clip(p[:, 3], -10, 10)) * stride * sy
        boxes = np.stack([cx - bw / 2, cy - bh / 2, bw, bh], axis=1)
        return _nms(self, boxes, scores[keep], class_ids[keep])


@register_decoder("nanodet")
class NanoDetDecoder:
    """NanoDet (RangiLyu, Apache-2.0) with a GFL head, outputs per stride 8/16/32: class scores
    (1 x cells x classes, through a sigmoid) and distances (1 x cells x 4 (reg_max + 1): a
    distribution over 0..reg_max strides to the left, top, right, bottom edge, as logits).
    Cells are centred at (col + 0.5, row + 0.5) x stride. Input BGR normalised by the ImageNet mean/std."""

    input_scale = 1.0
    swap_rb = False
    input_mean = (103.53, 116.28, 123.675)
    input_std = (57.375, 57.12, 58.395)
    strides = (8, 16, 32)

    def __init__(
        self, *, score_threshold: float, nms_threshold: float, labels: Sequence[str]
    ) -> None:
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.labels = list(labels)
        self.classes = len(self.labels) or 80

    def decode(self, outputs: Outputs, image_w: int, image_h: int) -> list[Detection]:
        tensors = [outputs] if isinstance(outputs, np.ndarray) else list(outputs)
        cls_parts = sorted(
            (t for t in tensors if t.shape[-1] == self.classes), key=lambda t: -t.shape[1]
        )
        dis_parts = sorted(
            (t for t in tensors if t.shape[-1] != self.classes), key=lambda t: -t.shape[1]
        )
        if not cls_parts or len(cls_parts) != len(dis_parts):
            raise ValueError(f"NanoDet outputs: {[t.shape for t in tensors]}")
        cls = np.concatenate([t.reshape(-1, self.classes) for t in cls_parts])
        bins = dis_parts[0].shape[-1] // 4
        dis = np.concatenate([t.reshape(-1, 4, bins) for t in dis_parts])
        size = int(round(np.sqrt(cls.shape[0] / sum(1 / s**2 for s in self.strides))))
        cols, rows, steps = _grid(size, self.strides)
        if cols.size != cls.shape[0]:
            raise ValueError(f"NanoDet outputs have {cls.shape[0]} cells, not a square input's")
        class_ids = cls.argmax(axis=1)
        scores = cls[np.arange(len(cls)), class_ids]
        keep = np.flatnonzero(scores >= self.score_threshold)
        if keep.size == 0:
            return []
        logits = dis[keep].astype(np.float64)
        prob = np.exp(logits - logits.max(axis=2, keepdims=True))
        prob /= prob.sum(axis=2, keepdims=True)
        dist = (prob * np.arange(bins)).sum(axis=2) * steps[keep][:, None]  # l, t, r, b
        cx, cy = (cols[keep] + 0.5) * steps[keep], (rows[keep] + 0.5) * steps[keep]
        sx, sy = image_w / size, image_h / size
        x0, y0 = (cx - dist[:, 0]) * sx, (cy - dist[:, 1]) * sy
        x1, y1 = (cx + dist[:, 2]) * sx, (cy + dist[:, 3]) * sy
        boxes = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
        return _nms(self, boxes, scores[keep], class_ids[keep])

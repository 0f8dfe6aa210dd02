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


class Decoder(Protocol):
    """Turns raw model outputs into detections (boxes in pixels of an image_w x image_h image)."""

    input_scale: float
    swap_rb: bool

    def decode(self, outputs: np.ndarray, image_w: int, image_h: int) -> list[Detection]: ...


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

    def __init__(
        self, *, score_threshold: float, nms_threshold: float, labels: Sequence[str]
    ) -> None:
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.labels = list(labels)

    def decode(self, outputs: np.ndarray, image_w: int, image_h: int) -> list[Detection]:
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
        kept_scores = scores[keep].astype(float)
        kept_ids = class_ids[keep]
        chosen = cv2.dnn.NMSBoxesBatched(
            boxes.tolist(),
            kept_scores.tolist(),
            kept_ids.tolist(),
            self.score_threshold,
            self.nms_threshold,
        )
        found = []
        for i in np.asarray(chosen, dtype=int).reshape(-1):
            x, y, w, h = (int(round(v)) for v in boxes[i])
            class_id = int(kept_ids[i])
            found.append(
                Detection(
                    score=float(kept_scores[i]),
                    box=(x, y, w, h),
                    class_id=class_id,
                    label=label_for(self.labels, class_id),
                )
            )
        found.sort(key=lambda det: det.score, reverse=True)
        return found

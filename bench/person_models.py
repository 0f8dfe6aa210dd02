"""Person models compared on the same frames: recall by person height, false positives, ms.

    uv run python bench/person_models.py \\
        --model fastestdet=fastestdet::352 \\
        --model yolox-nano=yolox:/path/yolox_nano.onnx:416 \\
        --model nanodet-m=nanodet:/path/nanodet_m_320.onnx:320 \\
        --model light-person=yolox:/path/light_person.onnx:416:person

A model is ``name=decoder:path:input_size[:labels]`` (empty path: the bundled FastestDet; labels
``person`` for a person-only model, else COCO-80). Every model sees the same square crops,
made by ``PersonDetector`` (aspect-preserving, around the region), on frames of the evaluation
set (``homesec_detector.evalset``):

* persons: every 2nd frame of the person clips, crop around the labelled box (a perfect motion
  region); a hit is a person box with IoU >= 0.3 on it; by visible height (% of the frame);
* vehicles: real traffic footage, crop around the motion regions the detector would check;
* pets: the cat clips, crop around the cat; empty scenes: whole frames, light changes included
  (not the poster of a person: every model rightly sees a person there).

Prints recall and false-positive rates at score 0.5 and at each model's own threshold that
keeps false positives on all negatives at or under 1 %, and ms per check on one thread
(round robin, so load from other processes hits every model alike).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from homesec_detector.evalset import Clip, build_clips
from homesec_detector.evidence import iou
from homesec_detector.motion import BoxXYWH, MotionDetector
from homesec_detector.person import PersonDetector, PersonModelSettings
from homesec_detector.person_verify import VerifiedDetector, VerifierSettings

ASSETS = Path(__file__).resolve().parent.parent / "tests" / "assets"
COCO = (
    Path(__file__).resolve().parent.parent
    / "services/detector/src/homesec_detector/models/fastestdet/coco.names"
)
BUCKETS = ((0.05, 0.15), (0.15, 0.40), (0.40, 1.01))


@dataclass
class Sample:
    """One crop to run: the frame, the region the model sees, the labelled box."""

    group: str  # "person 5-15%", "vehicles", "pets", "empty"
    image: np.ndarray
    roi: BoxXYWH | None
    target: BoxXYWH | None = None


@dataclass
class Result:
    scores: dict[str, list[float]] = field(default_factory=dict)
    """group -> per sample: the best score of a box counting for it (0: none)."""
    seconds: list[float] = field(default_factory=list)


def _decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def _bucket(box: BoxXYWH, height: int) -> str | None:
    frac = box[3] / height
    for lo, hi in BUCKETS:
        if lo <= frac < hi:
            return f"person {int(lo * 100)}-{min(int(hi * 100), 100)}%"
    return None


def _union(boxes: list[BoxXYWH]) -> BoxXYWH:
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    return (x0, y0, x1 - x0, y1 - y0)


def samples(clips: list[Clip]) -> Iterator[Sample]:
    for clip in clips:
        if clip.kind == "person":
            for i in range(0, len(clip.frames), 2):
                box = clip.person_boxes[i]
                group = _bucket(box, clip.size[1]) if box else None
                if box is not None and group is not None:
                    yield Sample(group, _decode(clip.frames[i]), box, box)
        elif clip.kind == "pet":
            for i in range(0, len(clip.frames), 2):
                box = clip.object_boxes[i]
                if box is not None:
                    yield Sample("pets", _decode(clip.frames[i]), box, box)
        elif clip.kind == "traffic":
            motion = MotionDetector()
            for i, data in enumerate(clip.frames):
                result = motion.process_jpeg(data, *clip.size)
                if result is not None and result.check_boxes and i % 2 == 0:
                    roi = _union(result.check_boxes)
                    yield Sample("vehicles", _decode(data), roi, roi)
        elif "poster" not in clip.name:  # a poster shows a person: the evidence's business
            for i in range(0, len(clip.frames), 4):
                yield Sample("empty", _decode(clip.frames[i]), None)


def _inside(box: BoxXYWH, roi: BoxXYWH) -> float:
    x0, y0 = max(box[0], roi[0]), max(box[1], roi[1])
    x1, y1 = min(box[0] + box[2], roi[0] + roi[2]), min(box[1] + box[3], roi[1] + roi[3])
    return max(0, x1 - x0) * max(0, y1 - y0) / max(1, box[2] * box[3])


def score(sample: Sample, found: list) -> float:
    """The best score that counts: on the person (hit), or anything in the region (false)."""
    best = 0.0
    for det in found:
        if sample.group.startswith("person"):
            ok = sample.target is not None and iou(det.box, sample.target) >= 0.3
        elif sample.group == "pets" and sample.target is not None:
            ok = iou(det.box, sample.target) >= 0.3 or _inside(det.box, sample.target) >= 0.5
        elif sample.roi is not None:
            ok = _inside(det.box, sample.roi) >= 0.3  # as the pipeline's min_overlap
        else:
            ok = True
        if ok:
            best = max(best, det.score)
    return best


def load(spec: str) -> tuple[str, PersonDetector]:
    name, rest = spec.split("=", 1)
    parts = rest.split(":")
    decoder, path, size = parts[0], parts[1], int(parts[2])
    labels = parts[3] if len(parts) > 3 else "coco"
    kw: dict[str, object] = {"decoder": decoder, "input_size": size, "score_threshold": 0.2}
    if path:
        kw["model_path"] = Path(path)
    if labels == "person":
        names = Path("/tmp/homesec-person.names")
        names.write_text("person\n")
        kw["labels_path"] = names
    elif path:
        kw["labels_path"] = COCO
    return name, PersonDetector(PersonModelSettings(**kw))  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="name=decoder:path:size")
    parser.add_argument(
        "--two-stage",
        action="append",
        default=[],
        help="name=first+second: the second model verifies the first's candidates",
    )
    parser.add_argument("--assets", type=Path, default=ASSETS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=0, help="use every n-th sample (speed)")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    models: dict[str, PersonDetector | VerifiedDetector] = dict(load(s) for s in args.model)
    for spec in args.two_stage:
        name, pair = spec.split("=", 1)
        first, second = pair.split("+")
        models[name] = VerifiedDetector(
            models[first],  # type: ignore[arg-type]
            models[second],  # type: ignore[arg-type]
            VerifierSettings(),
        )
    all_samples = list(samples(build_clips(args.assets)))
    if args.limit > 1:
        all_samples = all_samples[:: args.limit]
    results = {name: Result() for name in models}
    for sample in all_samples:
        for name, det in models.items():  # round robin: load hits every model alike
            started = time.perf_counter()
            found = det.detect(sample.image, sample.roi)
            results[name].seconds.append(time.perf_counter() - started)
            results[name].scores.setdefault(sample.group, []).append(score(sample, found))
    groups = sorted({s.group for s in all_samples}, key=lambda g: (not g.startswith("p"), g))
    counts = {g: sum(1 for s in all_samples if s.group == g) for g in groups}
    print(f"samples: {counts}; cv2 threads {cv2.getNumThreads()}")
    negatives = ("vehicles", "pets", "empty")

    def threshold_for(r: Result, rate: float = 0.01) -> float:
        neg = sorted((v for g in negatives for v in r.scores.get(g, [])), reverse=True)
        allowed = int(rate * len(neg))
        return max(0.5 if not neg else neg[allowed] + 1e-6, 0.2)

    header = f"{'model':14} {'thr':>5} " + " ".join(f"{g:>14}" for g in groups)
    for label in ("at 0.5", "at <= 1 % false positives"):
        print(f"\nrate of samples with a counting box {label} (persons: recall; others: FP)")
        print(header)
        for name, r in results.items():
            thr = 0.5 if label == "at 0.5" else threshold_for(r)
            cells = []
            for g in groups:
                vals = r.scores.get(g, [])
                cells.append(f"{sum(v >= thr for v in vals) / max(1, len(vals)):>14.3f}")
            print(f"{name:14} {thr:5.2f} " + " ".join(cells))
    print("\nms per check (crop + model + decode), one thread")
    for name, r in results.items():
        ms = [1000 * s for s in r.seconds]
        print(
            f"  {name:14} min {min(ms):6.2f}  median {statistics.median(ms):6.2f}  "
            f"p90 {sorted(ms)[int(0.9 * len(ms))]:6.2f}"
        )


if __name__ == "__main__":
    main()

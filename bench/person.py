"""Person check benchmark: milliseconds per call on one thread, against a naive baseline.

Baseline (measured in the same run): the model's reference recipe applied naively — the whole
frame squashed to 352x352 by ``cv2.dnn.blobFromImage``, forward, decode. Ours: the letterboxed
whole frame, a square crop around a motion ROI, and the squash mode, through ``PersonDetector``.
Reports min and median (other processes share the machine) and ratios against the baseline.

    uv run python bench/person.py [--runs 40] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from homesec_detector.person import BUNDLED_MODEL, PersonDetector, PersonModelSettings
from homesec_detector.person_decoders import FastestDetDecoder

ASSETS = Path(__file__).resolve().parent.parent / "tests" / "assets" / "images"


def timed(fn: Callable[[], object], runs: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000.0)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)

    frame = cv2.imread(str(ASSETS / "coco_fastestdet_2.jpg"))  # 640x480, three people
    assert frame is not None and frame.shape[:2] == (480, 640)
    big = cv2.resize(frame, (1920, 1080), interpolation=cv2.INTER_LINEAR)
    roi = (330, 40, 150, 390)  # the person on the right, as a motion box
    big_roi = (990, 90, 450, 880)

    net = cv2.dnn.readNetFromONNX(str(BUNDLED_MODEL))
    naive_decoder = FastestDetDecoder(score_threshold=0.5, nms_threshold=0.45, labels=["person"])

    def naive(image: np.ndarray) -> Callable[[], object]:
        def run() -> object:
            blob = cv2.dnn.blobFromImage(image, 1 / 255.0, (352, 352))
            net.setInput(blob)
            return naive_decoder.decode(net.forward(), image.shape[1], image.shape[0])

        return run

    ours = PersonDetector(PersonModelSettings())
    squash = PersonDetector(PersonModelSettings(full_frame="squash"))
    net.setInput(cv2.dnn.blobFromImage(frame, 1 / 255.0, (352, 352)))
    forward_only = timed(lambda: net.forward(), args.runs)

    cases: list[tuple[str, Callable[[], object]]] = [
        ("640x480 baseline: naive squash (blobFromImage resize)", naive(frame)),
        ("640x480 whole frame, letterboxed (default)", lambda: ours.detect(frame)),
        ("640x480 whole frame, squash mode", lambda: squash.detect(frame)),
        ("640x480 ROI crop 150x390", lambda: ours.detect(frame, roi)),
        ("1920x1080 baseline: naive squash", naive(big)),
        ("1920x1080 whole frame, letterboxed", lambda: ours.detect(big)),
        ("1920x1080 ROI crop 450x880", lambda: ours.detect(big, big_roi)),
    ]
    print(f"person check, cv2 {cv2.__version__}, {args.threads} thread(s), {args.runs} runs")
    print(f"{'case':58} {'min ms':>8} {'median':>8} {'x base':>7}")
    base: dict[str, float] = {}
    for name, fn in cases:
        samples = timed(fn, args.runs)
        med = statistics.median(samples)
        key = name.split()[0]
        if "baseline" in name:
            base[key] = med
        ratio = base[key] / med if key in base else float("nan")
        print(f"{name:58} {min(samples):8.2f} {med:8.2f} {ratio:7.2f}")
    print(
        f"{'model forward alone (352x352)':58} {min(forward_only):8.2f} "
        f"{statistics.median(forward_only):8.2f}"
    )
    print("x base = baseline median / case median (>1: faster than the baseline)")
    print("target: person check under 30 ms per call on one x86 core")


if __name__ == "__main__":
    main()

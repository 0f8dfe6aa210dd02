"""Person check benchmark: milliseconds per call on one thread, against baselines.

Baselines, measured in the same run and interleaved with our cases (round robin, so load from
other processes hits all cases alike):
- ``naive``: the whole frame squashed to 352x352 inside ``cv2.dnn.blobFromImage`` (bilinear),
  forward, decode;
- ``reference``: the model's reference preprocessing — squash with INTER_AREA, then
  ``cv2.dnn.blobFromImage`` — forward, decode.
Ours goes through ``PersonDetector``: letterboxed whole frame (default), squash mode, and a square
crop around a motion ROI. Also the preprocessing alone and the model's forward pass alone.
Prints min and median (other engineers' tests share this 2-core machine) and ratios.

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

from homesec_detector.person import (
    BUNDLED_MODEL,
    PersonDetector,
    PersonModelSettings,
    square_region,
)
from homesec_detector.person_decoders import FastestDetDecoder

ASSETS = Path(__file__).resolve().parent.parent / "tests" / "assets" / "images"
SIZE = 352


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)

    vga = cv2.imread(str(ASSETS / "coco_fastestdet_2.jpg"))  # 640x480, three people
    assert vga is not None and vga.shape[:2] == (480, 640)
    hd = cv2.resize(vga, (1920, 1080), interpolation=cv2.INTER_LINEAR)
    rois = {"640x480": (330, 40, 150, 390), "1920x1080": (990, 90, 450, 880)}

    net = cv2.dnn.readNetFromONNX(str(BUNDLED_MODEL))
    decoder = FastestDetDecoder(score_threshold=0.5, nms_threshold=0.45, labels=["person"])
    ours = PersonDetector(PersonModelSettings())
    squash = PersonDetector(PersonModelSettings(full_frame="squash"))

    def naive_pre(image: np.ndarray) -> np.ndarray:
        return cv2.dnn.blobFromImage(image, 1 / 255.0, (SIZE, SIZE))

    def reference_pre(image: np.ndarray) -> np.ndarray:
        small = cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        return cv2.dnn.blobFromImage(small, 1 / 255.0)

    def full(pre: Callable[[np.ndarray], np.ndarray], image: np.ndarray) -> Callable[[], object]:
        def run() -> object:
            net.setInput(pre(image))
            return decoder.decode(net.forward(), image.shape[1], image.shape[0])

        return run

    def ours_pre(image: np.ndarray, roi: tuple[int, int, int, int] | None) -> Callable[[], object]:
        def run() -> object:
            h, w = image.shape[:2]
            ours._fill_canvas(image, square_region(w, h, roi, 0.25, 176))
            return ours._fill_blob()

        return run

    net.setInput(naive_pre(vga))
    cases: list[tuple[str, str, Callable[[], object]]] = []
    for res, image in (("640x480", vga), ("1920x1080", hd)):
        roi = rois[res]
        cases += [
            (res, "baseline naive: blobFromImage squash", full(naive_pre, image)),
            (res, "baseline reference: INTER_AREA squash", full(reference_pre, image)),
            (res, "ours: whole frame letterboxed", lambda i=image: ours.detect(i)),
            (res, "ours: whole frame squash mode", lambda i=image: squash.detect(i)),
            (res, f"ours: ROI crop {roi[2]}x{roi[3]}", lambda i=image, r=roi: ours.detect(i, r)),
            (res, "pre only: naive", lambda i=image: naive_pre(i)),
            (res, "pre only: reference", lambda i=image: reference_pre(i)),
            (res, "pre only: ours letterbox", ours_pre(image, None)),
            (res, "pre only: ours ROI crop", ours_pre(image, roi)),
        ]
    net_alone = cv2.dnn.readNetFromONNX(str(BUNDLED_MODEL))
    net_alone.setInput(naive_pre(vga))
    cases.append(("352x352", "model forward alone", lambda: net_alone.forward()))

    samples: dict[int, list[float]] = {i: [] for i in range(len(cases))}
    for _ in range(3):  # warm up
        for _res, _name, fn in cases:
            fn()
    for _ in range(args.runs):  # round robin: machine load hits every case alike
        for i, (_res, _name, fn) in enumerate(cases):
            start = time.perf_counter()
            fn()
            samples[i].append((time.perf_counter() - start) * 1000.0)

    print(f"person check, opencv {cv2.__version__}, {args.threads} thread(s), {args.runs} runs")
    print(f"{'input':9} {'case':40} {'min ms':>7} {'median':>7} {'naive/x':>8} {'ref/x':>6}")
    base: dict[tuple[str, str], float] = {}
    for i, (res, name, _fn) in enumerate(cases):
        low, med = min(samples[i]), statistics.median(samples[i])
        kind = "pre" if name.startswith("pre") else "call"
        if "naive" in name:
            base[(res, kind + "naive")] = low
        if "reference" in name:
            base[(res, kind + "ref")] = low
        ratios = [base.get((res, kind + k), float("nan")) / low for k in ("naive", "ref")]
        print(f"{res:9} {name:40} {low:7.2f} {med:7.2f} {ratios[0]:8.2f} {ratios[1]:6.2f}")
    print("naive/x, ref/x: baseline min / case min (>1: the case is faster than that baseline)")
    print("target: person check under 30 ms per call on one x86 core")


if __name__ == "__main__":
    main()

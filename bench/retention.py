"""Retention benchmark: one pass of the detector's retention with its size index vs the full walk
of the media tree the detector did before (on every event end, on the writer thread).

    uv run python bench/retention.py [--events 2000] [--files 62] [--dir PATH]

Builds ``--events`` event folders of ``--files`` small files each (event.json, snapshot, pre-roll
and frames) under a temporary folder (or ``--dir``), then measures in the same run, warm cache:
1. the old retention pass (verbatim: ``iterdir`` per camera, ``os.walk`` per folder);
2. the new first pass (the index is built: every folder measured once, at start);
3. the new pass when nothing changed, and after one event was written by the media writer
   and another folder was changed behind its back (the uploader's cleanup);
4. what retention costs the event path now (nothing) and one pin (create + fsync).
Nothing is deleted (the cap is above the total), so every pass does the same work each time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from homesec.pins import PinKind, Pins
from homesec_detector.media_writer import BufferedFrame, MediaSettings, MediaWriter
from homesec_detector.retention import MediaIndex, Retention

CAMERAS = ("front", "back", "garden", "drive")


def build(media: Path, events: int, files: int) -> None:
    payload = b"\xff\xd8" + b"j" * 2000 + b"\xff\xd9"
    half = max(0, (files - 2) // 2)
    for n in range(events):
        folder = media / CAMERAS[n % len(CAMERAS)] / f"{CAMERAS[n % len(CAMERAS)]}-ev-{n:05d}"
        (folder / "preroll").mkdir(parents=True)
        (folder / "frames").mkdir()
        (folder / "event.json").write_text('{"type": "end"}')
        (folder / "snapshot.jpg").write_bytes(payload)
        for i in range(half):
            (folder / "preroll" / f"{i:06d}.jpg").write_bytes(payload)
        for i in range(files - 2 - half):
            (folder / "frames" / f"{i:06d}.jpg").write_bytes(payload)


def old_pass(media_dir: Path, cap: float, max_age: float) -> int:
    """The detector's enforce_retention before this change, verbatim in its walking."""
    now = time.time()
    events: list[tuple[float, int, Path]] = []
    for camera_dir in media_dir.iterdir():
        if not camera_dir.is_dir():
            continue
        for folder in camera_dir.iterdir():
            if folder.is_dir():
                events.append((_old_mtime(folder), _old_size(folder), folder))
    events.sort()
    total = sum(size for _, size, _ in events)
    removed = 0
    for mtime, size, _folder in events:
        if now - mtime > max_age or total > cap:  # never true here: the cap is above the total
            total -= size
            removed += 1
    return removed


def _old_mtime(folder: Path) -> float:
    meta = folder / "event.json"
    try:
        return (meta if meta.exists() else folder).stat().st_mtime
    except OSError:
        return 0.0


def _old_size(folder: Path) -> int:
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median, min) seconds over ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--files", type=int, default=62, help="files per event folder")
    parser.add_argument("--dir", type=Path, help="where to build the tree (default: a tmp dir)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        media, pins_dir = root / "media", root / "pins"
        started = time.perf_counter()
        build(media, args.events, args.files)
        print(
            f"tree: {args.events} event folders x {args.files} files "
            f"({args.events * args.files} files) in {root}, built in "
            f"{time.perf_counter() - started:.1f} s"
        )
        settings = MediaSettings(max_total_mb=1e6, max_age_days=1e4, draw_boxes=False)
        pins = Pins(pins_dir)
        for n in range(0, args.events, 10):  # one event in ten owed to someone
            camera = CAMERAS[n % len(CAMERAS)]
            pins.pin(PinKind.LABEL, camera, f"{camera}-ev-{n:05d}")
        writer = MediaWriter(media, settings, threaded=False, pins=pins)
        retention = Retention(
            media,
            writer.index,
            pins,
            max_age_days=settings.max_age_days,
            max_total_mb=settings.max_total_mb,
            pin_max_age_days=14,
            interval_seconds=60,
        )

        cap, max_age = settings.max_total_mb * 1024 * 1024, settings.max_age_days * 86400
        old_pass(media, cap, max_age)  # warm the cache for both
        old_median, old_min = timed(lambda: old_pass(media, cap, max_age), args.repeat)
        first_started = time.perf_counter()
        first = retention.run_once()
        first_seconds = time.perf_counter() - first_started
        steady_median, steady_min = timed(retention.run_once, args.repeat)
        steady = retention.run_once()

        frame = BufferedFrame(
            seq=1, captured_at=time.time(), jpeg=b"\xff\xd8" + b"j" * 2000, width=4, height=3
        )

        def one_event() -> None:
            event_id = f"front-new-{time.monotonic_ns()}"
            writer.start_event("front", event_id, frame, [frame] * 30, {"event_id": event_id})
            for _ in range(30):
                writer.add_frame("front", event_id, frame)
            writer.finish_event("front", event_id, {"event_id": event_id, "type": "end"})

        changed_folder = media / "back" / "back-ev-00001" / "frames"
        victims = sorted(changed_folder.iterdir())

        def changed_pass() -> object:
            one_event()
            if victims:
                victims.pop().unlink()  # the uploader deleted an uploaded file
            return retention.run_once()

        changed_median, _ = timed(changed_pass, args.repeat)
        check = MediaIndex()
        check.refresh(media)
        assert check.total() == writer.index.total(), "index drifted from the disk"

        event_median, _ = timed(one_event, args.repeat)
        pin_median, _ = timed(
            lambda: pins.pin(PinKind.ALERT, "front", f"front-pin-{time.monotonic_ns()}"),
            args.repeat * 4,
        )

    ratio = old_median / steady_median
    print()
    print(f"{'figure':58} {'median':>10} {'min':>10}")
    print(
        f"{'old pass: full walk (was on every event end)':58} {ms(old_median):>10} {ms(old_min):>10}"
    )
    print(f"{'new first pass (index built, at start)':58} {ms(first_seconds):>10}")
    print(f"{'new pass, nothing changed':58} {ms(steady_median):>10} {ms(steady_min):>10}")
    print(f"{'new pass after 1 new event + 1 folder changed':58} {ms(changed_median):>10}")
    print(f"{'retention on the event path now':58} {'0':>10}")
    print(f"{'write one event inline (62 files), for scale':58} {ms(event_median):>10}")
    print(f"{'one pin (O_EXCL create + fsync of its folder)':58} {ms(pin_median):>10}")
    print()
    print(f"folders measured: first pass {first.measured}, unchanged pass {steady.measured}")
    print(f"pinned: {steady.pinned_events} events; total {steady.total_bytes / 1e6:.1f} MB")
    print(f"old full walk / new unchanged pass: {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

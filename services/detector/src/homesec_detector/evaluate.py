"""``homesec eval PATH``: replay footage through exactly the detector's pipeline, no broker.

PATH is a video file, an animated GIF or a folder of images (taken in file-name order). Each
frame is JPEG-encoded like a camera frame and fed to :class:`CameraPipeline` with a simulated
clock (frame index / fps). Prints per frame ``frame, motion, person_score, event_id, alert`` and a
summary; with ``--labels frame,label`` CSV the summary has the original's tables.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from homesec.contract import EventType, Frame, PersonMode, SystemSetting
from homesec.settings import load_settings
from homesec_detector.baseline import OriginalMotion
from homesec_detector.events import EventTracker
from homesec_detector.media_writer import MediaWriter
from homesec_detector.motion import MotionDetector, MotionResult
from homesec_detector.pipeline import CameraPipeline, PersonChecker, build_person_checker
from homesec_detector.settings import DetectorSettings

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
DEFAULT_CHECK_MS = 20.0
"""What the evaluation charges the CPU budget per person check (a loaded x86 core; on a Pi
checks cost more): results then do not depend on the machine's load. 0: the measured time."""
VIDEO_CLOCK_START = 1_764_100_000.0
"""Simulated capture time of frame 0 (fixed, so event ids are reproducible)."""

_POSITIVE = {"1", "true", "yes", "occupied", "person", "motion", "positive"}
_NEGATIVE = {"0", "false", "no", "unoccupied", "empty", "none", "negative"}


@dataclass
class Source:
    """Frames as JPEG bytes with their size, and the rate they are played at."""

    fps: float
    frames: Iterator[tuple[bytes, int, int]]


def _encode(image: np.ndarray) -> tuple[bytes, int, int]:
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ValueError("cannot encode frame as JPEG")
    return buf.tobytes(), image.shape[1], image.shape[0]


def _folder_frames(paths: list[Path]) -> Iterator[tuple[bytes, int, int]]:
    for path in paths:
        data = path.read_bytes()
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{path}: not a readable image")
        if data[:2] == b"\xff\xd8":
            yield data, image.shape[1], image.shape[0]  # a JPEG goes in as the camera sent it
        else:
            yield _encode(image)


def _video_frames(cap: cv2.VideoCapture) -> Iterator[tuple[bytes, int, int]]:
    try:
        while True:
            ok, image = cap.read()
            if not ok:
                return
            yield _encode(image)
    finally:
        cap.release()


def camera_fps() -> float:
    """The camera service's configured fps (``HOMESEC_CAMERA_FPS``, .env), else 10."""
    try:
        from homesec_camera.settings import CameraSettings

        return float(CameraSettings().fps)
    except Exception:  # camera package absent or its settings invalid: fall back
        try:
            return float(os.environ.get("HOMESEC_CAMERA_FPS", "10"))
        except ValueError:
            return 10.0


def open_source(path: Path, fps: float | None) -> Source:
    """A folder of images, a video file or an animated GIF."""
    default_fps = camera_fps()
    if path.is_dir():
        files = sorted(
            p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not files:
            raise ValueError(f"{path}: no images found")
        return Source(fps or default_fps, _folder_frames(files))
    if not path.is_file():
        raise ValueError(f"{path}: no such file or folder")
    if path.suffix.lower() == ".gif":
        ok, animation = cv2.imreadanimation(str(path))
        if ok and animation.frames:
            durations = [d for d in animation.durations if d > 0]
            rate = 1000.0 / (sum(durations) / len(durations)) if durations else default_fps
            return Source(fps or rate, (_encode(f) for f in animation.frames))
    cap = cv2.VideoCapture(str(path))
    if cap.isOpened():
        rate = cap.get(cv2.CAP_PROP_FPS)
        return Source(fps or (rate if rate and rate > 0 else default_fps), _video_frames(cap))
    cap.release()
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is not None:
        return Source(fps or default_fps, iter([_encode(image)]))
    raise ValueError(f"{path}: cannot read as video, GIF or image")


def read_labels(path: Path) -> dict[int, bool]:
    """``frame,label`` CSV (header optional); label 1/0, occupied/unoccupied, true/false."""
    labels: dict[int, bool] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for lineno, row in enumerate(csv.reader(fh), 1):
            if not row or row[0].strip().startswith("#"):
                continue
            if len(row) < 2:
                raise ValueError(f"{path}:{lineno}: expected frame,label")
            frame, label = row[0].strip(), row[1].strip().lower()
            if not frame.isdigit():
                if lineno == 1:
                    continue  # header
                raise ValueError(f"{path}:{lineno}: frame must be a number, got {frame!r}")
            if label in _POSITIVE:
                labels[int(frame)] = True
            elif label in _NEGATIVE:
                labels[int(frame)] = False
            else:
                raise ValueError(f"{path}:{lineno}: unknown label {label!r}")
    return labels


def _confusion(pairs: list[tuple[bool, bool]]) -> dict[str, int]:
    return {
        "tp": sum(1 for p, a in pairs if p and a),
        "fp": sum(1 for p, a in pairs if p and not a),
        "fn": sum(1 for p, a in pairs if not p and a),
        "tn": sum(1 for p, a in pairs if not p and not a),
    }


class Evaluation:
    """Runs a source through the pipeline and keeps what the summary needs."""

    def __init__(
        self,
        settings: DetectorSettings,
        *,
        camera: str = "eval",
        armed: bool = True,
        score_all: bool = False,
        media_dir: Path | None = None,
        baseline: bool = False,
        check_ms: float | None = DEFAULT_CHECK_MS,
        person: Callable[[Callable[[], float]], PersonChecker | None] | None = None,
        motion: MotionDetector | None = None,
    ) -> None:
        """``person``: builds the person checker from the evaluation's clock (default: the
        configured model, loaded now); ``motion``: the motion detector (``homesec tune`` passes
        one that replays cached results)."""
        self.settings = settings
        self.clock = VIDEO_CLOCK_START
        state = {
            SystemSetting.ARMED: armed,
            SystemSetting.NOTIFICATIONS: True,
            SystemSetting.AUTO_ARM: False,
            SystemSetting.TRAINING: False,
        }
        self.media = None
        if media_dir is not None:
            self.media = MediaWriter(media_dir, settings.media, threaded=False)
        self.pipeline = CameraPipeline(
            camera,
            settings,
            state.__getitem__,
            person=build_person_checker(
                settings,
                clock=lambda: self.clock,
                nominal_seconds=None if not check_ms else check_ms / 1000.0,
            )
            if person is None
            else person(lambda: self.clock),
            media=self.media,
            score_all=score_all,
            motion=motion,
        )
        self.baseline = OriginalMotion() if baseline else None
        self.baseline_tracker = EventTracker(camera, settings.events, media=False)
        self.baseline_events = 0
        self.baseline_motion_frames = 0
        self.baseline_in_event: list[bool] = []
        self.rows: list[dict[str, Any]] = []
        self.in_event: list[bool] = []
        self.person_in_event: list[bool] = []
        self.events: dict[str, dict[str, Any]] = {}
        self.person_checks = 0
        self.seconds = 0.0

    def feed(self, index: int, jpeg: bytes, width: int, height: int, fps: float) -> dict[str, Any]:
        captured = VIDEO_CLOCK_START + index / fps
        frame = Frame(
            camera=self.pipeline.camera,
            seq=index,
            captured_at=captured,
            width=width,
            height=height,
            jpeg=jpeg,
        )
        self.clock = captured
        started = time.perf_counter()
        out = self.pipeline.process(frame, now=captured)
        self.seconds += time.perf_counter() - started
        self.person_checks += out.person_checks
        for msg in out.messages:
            record = self.events.setdefault(
                msg.event_id, {"event_id": msg.event_id, "start_frame": index}
            )
            if msg.decision.alert and "alert_frame" not in record:
                record["alert_frame"] = index
            record.update(
                alert=record.get("alert", False) or msg.decision.alert,
                reason=msg.decision.reason,
                person_score=msg.person_score,
                area=round(msg.area, 4),
            )
            if msg.decision.alert:
                box = msg.person_box or msg.box
                if box is not None:
                    record.setdefault("alert_box", (box.x, box.y, box.w, box.h))
            if msg.type is EventType.END:
                record["end_frame"] = index
        tracker = self.pipeline.tracker
        person = tracker.person
        self.in_event.append(out.event_id is not None and tracker.active)
        self.person_in_event.append(person is not None and person.confirmed)
        if self.baseline is not None:
            occupied = bool(self.baseline.process_jpeg(jpeg))
            self.baseline_motion_frames += occupied
            result = MotionResult(occupied=occupied)
            started_events = self.baseline_tracker.step(
                captured, index, captured, result, None, self.pipeline._inputs()
            )
            self.baseline_events += sum(1 for m in started_events if m.type is EventType.START)
            self.baseline_in_event.append(self.baseline_tracker.active)
        score = out.person_score
        row = {
            "frame": index,
            "motion": bool(out.motion and out.motion.occupied),
            "person_score": None if score is None else round(float(score), 4),
            "event_id": out.event_id,
            "alert": bool(out.alert),
        }
        self.rows.append(row)
        return row

    def summary(self, fps: float, labels: dict[int, bool] | None) -> dict[str, Any]:
        scores = [r["person_score"] for r in self.rows if r["person_score"] is not None]
        frames = len(self.rows)
        summary: dict[str, Any] = {
            "frames": frames,
            "fps": round(fps, 3),
            "motion_frames": sum(1 for r in self.rows if r["motion"]),
            "event_frames": sum(self.in_event),
            "events": len(self.events),
            "alerts": sum(1 for e in self.events.values() if e.get("alert")),
            "person_checks": self.person_checks,
            "person_max": max(scores) if scores else None,
            "background_resets": self.pipeline.motion.background_resets,
            "person_mode": self.settings.person_mode.value,
            "ms_per_frame": round(1000 * self.seconds / frames, 3) if frames else None,
            "event_list": list(self.events.values()),
        }
        if self.baseline is not None:
            summary["baseline"] = {
                "motion_frames": self.baseline_motion_frames,
                "events": self.baseline_events,
                "event_frames": sum(self.baseline_in_event),
            }
        if labels:
            summary["labels"] = self._tables(labels)
        return summary

    def _tables(self, labels: dict[int, bool]) -> dict[str, Any]:
        known = [i for i in range(len(self.rows)) if i in labels]
        combos: dict[tuple[int, int, int], int] = {}
        for i in known:
            key = (int(self.in_event[i]), int(self.person_in_event[i]), int(labels[i]))
            combos[key] = combos.get(key, 0) + 1
        return {
            "labelled_frames": len(known),
            "original_table": [
                {"motion_model": m, "person": p, "actual": a, "count": c}
                for (m, p, a), c in sorted(combos.items())
            ],
            "motion": _confusion([(self.in_event[i], labels[i]) for i in known]),
            "alert": _confusion([(bool(self.rows[i]["alert"]), labels[i]) for i in known]),
        }


def _text_summary(summary: dict[str, Any]) -> str:
    lines = ["", "summary"]
    for key, value in summary.items():
        if key in ("event_list", "labels", "baseline"):
            continue
        lines.append(f"  {key:18} {value}")
    for event in summary["event_list"]:
        lines.append(
            f"  event {event['event_id']} frames {event['start_frame']}-"
            f"{event.get('end_frame', 'open')} alert={event.get('alert')} "
            f"({event.get('reason')})"
        )
    if "baseline" in summary:
        b = summary["baseline"]
        lines.append(
            f"  original recipe    motion_frames {b['motion_frames']}, events {b['events']}, "
            f"event_frames {b['event_frames']}"
        )
    labels = summary.get("labels")
    if labels:
        lines.append(f"  labelled frames    {labels['labelled_frames']}")
        lines.append("  motion_model  person  actual  count")
        for row in labels["original_table"]:
            lines.append(
                f"  {row['motion_model']:>12}  {row['person']:>6}  {row['actual']:>6}  "
                f"{row['count']:>5}"
            )
        for name in ("motion", "alert"):
            t = labels[name]
            lines.append(f"  {name:6} predicted:  1      0")
            lines.append(f"    actual 1        {t['tp']:>5}  {t['fn']:>5}")
            lines.append(f"    actual 0        {t['fp']:>5}  {t['tn']:>5}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="homesec eval",
        description="Replay a video, GIF or folder of images through the detector pipeline "
        "(settings from HOMESEC_DETECTOR_*).",
    )
    p.add_argument(
        "path",
        type=Path,
        nargs="?",
        help="video file, GIF, or folder of images; with --report: a folder of labelled clips "
        "(default: the built-in evaluation set)",
    )
    p.add_argument(
        "--report",
        action="store_true",
        help="one row per clip of the evaluation set (events, alerts, first alert, person "
        "recall, false alerts), the totals and the original's 2x2 table",
    )
    p.add_argument(
        "--assets",
        type=Path,
        default=Path("tests/assets"),
        help="--report: the assets the built-in set is made of (default %(default)s)",
    )
    p.add_argument("--only", default="", help="--report: only clips whose name contains this")
    p.add_argument("--seed", type=int, default=0, help="--report: another draw of the sensor noise")
    p.add_argument("--json", action="store_true", help="one JSON object per frame, then summary")
    p.add_argument("--labels", type=Path, help="frame,label CSV (1/0 or occupied/unoccupied)")
    p.add_argument("--score-all", action="store_true", help="run the person model on every frame")
    p.add_argument(
        "--fps",
        type=float,
        help="frame rate (default: the video's, or the camera's configured fps)",
    )
    p.add_argument("--disarmed", action="store_true", help="decide as if the system is disarmed")
    p.add_argument("--camera", default="eval", help="camera id used in event ids")
    p.add_argument(
        "--person-mode", choices=[m.value for m in PersonMode], help="override person_mode"
    )
    p.add_argument("--media", type=Path, help="also write event media into this folder")
    p.add_argument(
        "--baseline", action="store_true", help="also run the original recipe for comparison"
    )
    p.add_argument(
        "--check-ms",
        type=float,
        default=DEFAULT_CHECK_MS,
        help="CPU budget charged per person check (default %(default)s; 0: measured time)",
    )
    return p


def _report(args: argparse.Namespace, settings: DetectorSettings) -> int:
    from homesec_detector import evalset, report

    try:
        if args.path is not None:
            clips = evalset.clips_from_folder(args.path, args.fps)
        else:
            clips = evalset.build_clips(args.assets, args.seed)
    except (OSError, ValueError) as exc:
        print(f"homesec eval --report: {exc}", file=sys.stderr)
        return 2
    clips = [c for c in clips if args.only in c.name]
    if not args.json:
        print(report.HEADER)
    results = report.run_report(
        clips,
        settings,
        check_ms=args.check_ms,
        progress=None if args.json else lambda r: print(report.format_row(r), flush=True),
    )
    if args.json:
        print(json.dumps(report.as_json(results)))
    else:
        print(report.format_totals(report.totals(results)))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings(DetectorSettings)
    if args.person_mode:
        settings = settings.model_copy(update={"person_mode": PersonMode(args.person_mode)})
    if args.report:
        return _report(args, settings)
    if args.path is None:
        print("homesec eval: give a PATH (or --report)", file=sys.stderr)
        return 2
    try:
        labels = read_labels(args.labels) if args.labels else None
        source = open_source(args.path, args.fps)
        evaluation = Evaluation(
            settings,
            camera=args.camera,
            armed=not args.disarmed,
            score_all=args.score_all,
            media_dir=args.media,
            baseline=args.baseline,
            check_ms=args.check_ms,
        )
        if not args.json:
            print(f"{'frame':>6}  {'motion':6}  {'person_score':12}  {'event_id':34}  alert")
        for index, (jpeg, width, height) in enumerate(source.frames):
            row = evaluation.feed(index, jpeg, width, height, source.fps)
            if args.json:
                print(json.dumps(row))
            else:
                score = "-" if row["person_score"] is None else f"{row['person_score']:.3f}"
                print(
                    f"{row['frame']:>6}  {str(row['motion']):6}  {score:12}  "
                    f"{row['event_id'] or '-':34}  {row['alert']}"
                )
    except (OSError, ValueError) as exc:
        print(f"homesec eval: {exc}", file=sys.stderr)
        return 2
    summary = evaluation.summary(source.fps, labels)
    if args.json:
        print(json.dumps({"summary": summary}))
    else:
        print(_text_summary(summary))
    return 0

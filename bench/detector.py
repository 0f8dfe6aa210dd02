"""Detector benchmark: homesec's motion stage and whole pipeline vs the original recipe.

    uv run python bench/detector.py [--quick]

Measured in one run, one thread (OMP_NUM_THREADS=1, cv2.setNumThreads(1)):
1. frames per second per core of the motion stage (decode included) at 640x480 and 1920x1080
   JPEG input, homesec vs the original recipe verbatim, and the ratio;
2. the whole detector pipeline (decode, motion, events, pre-roll, person checks within their
   budget) at both sizes, and one person check's cost;
3. frame → event latency through a real Mosquitto at 10 fps (detector as its own process);
4. the detector process's CPU share at 10 fps (CPU time / wall time), idle scene and motion;
5. its resident memory;
6. labelled composites (real photos sliding into real scenes; lighting steps, ramps, IR switch),
   one sample per segment, in the original's table: original recipe + its 30-frame rule vs
   homesec (motion + person confirmation).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from homesec.broker import MosquittoProcess, free_port
from homesec.bus import Bus, Received
from homesec.contract import (
    FRAMES,
    MOTION_EVENTS,
    SYSTEM_STATE,
    EventType,
    Frame,
    MotionEvent,
    PersonMode,
    SystemSetting,
    SystemValue,
)
from homesec.malloc import tune_malloc
from homesec.settings import BrokerSettings
from homesec_detector.baseline import OriginalMotion
from homesec_detector.evaluate import Evaluation
from homesec_detector.events import DecisionInputs, EventSettings, EventTracker
from homesec_detector.media_writer import BufferedFrame
from homesec_detector.motion import MotionDetector, MotionResult
from homesec_detector.pipeline import CameraPipeline, build_person_checker
from homesec_detector.settings import DetectorSettings

cv2.setNumThreads(1)

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "tests" / "assets"
SIZES = ((640, 480), (1920, 1080))


def road_frames(size: tuple[int, int], count: int) -> list[bytes]:
    """Real footage (road clip, cars passing) re-encoded at ``size``, JPEG quality 85."""
    cap = cv2.VideoCapture(str(ASSETS / "video" / "road_640x360.avi"))
    out: list[bytes] = []
    while len(out) < count:
        ok, image = cap.read()
        if not ok:
            break
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        out.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
    cap.release()
    return out


def walk_in_frames(size: tuple[int, int] = (640, 480)) -> list[bytes]:
    """A static scene, then a real photo of people slides in (like the tests)."""
    cap = cv2.VideoCapture(str(ASSETS / "video" / "road_640x360.avi"))
    ok, base = cap.read()
    cap.release()
    base = cv2.resize(base, size)
    photo = cv2.imread(str(ASSETS / "images" / "coco_fastestdet_2.jpg"))
    pw = size[0] * 5 // 8
    photo = cv2.resize(photo, (pw, int(photo.shape[0] * pw / photo.shape[1])))
    frames = []
    for i in range(40):
        canvas = base.copy()
        x, y = 20 + 4 * i, 40
        rows = min(photo.shape[0], size[1] - y)
        canvas[y : y + rows, x : x + pw] = photo[:rows]
        frames.append(cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
    still = cv2.imencode(".jpg", base, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
    return frames + [still] * 40


def rate(fn: Callable[[bytes], object], frames: list[bytes], seconds: float) -> float:
    """Frames per second of ``fn`` over the frames (cycled) for about ``seconds``."""
    for data in frames[:5]:
        fn(data)
    n = 0
    start = time.perf_counter()
    cpu0 = time.process_time()
    while time.perf_counter() - start < seconds:
        for data in frames:
            fn(data)
            n += 1
    cpu = time.process_time() - cpu0
    return n / cpu  # per core: CPU seconds, not wall seconds (other jobs share the machine)


def bench_motion(seconds: float) -> list[tuple[str, float, float, float]]:
    rows = []
    for w, h in SIZES:
        frames = road_frames((w, h), 100)
        original = OriginalMotion()
        ours = MotionDetector()
        base = rate(lambda d, o=original: o.process_jpeg(d), frames, seconds)
        new = rate(lambda d, m=ours, w=w, h=h: m.process_jpeg(d, w, h), frames, seconds)
        rows.append((f"{w}x{h}", base, new, new / base))
    return rows


class PipelineRunner:
    """Feeds one camera's pipeline as a 10 fps camera would (simulated clock for the budget)."""

    def __init__(self, mode: PersonMode, size: tuple[int, int]) -> None:
        settings = DetectorSettings(person_mode=mode, metrics_port=0)
        settings.media.enabled = False
        state = dict.fromkeys(SystemSetting, True)
        self.size = size
        self.seq = 0
        self.pipeline = CameraPipeline(
            "bench",
            settings,
            state.__getitem__,
            person=build_person_checker(settings, clock=self.clock),
        )

    def clock(self) -> float:
        return self.seq / 10.0

    def __call__(self, data: bytes) -> None:
        self.seq += 1
        w, h = self.size
        frame = Frame(
            camera="bench", seq=self.seq, captured_at=self.clock(), width=w, height=h, jpeg=data
        )
        self.pipeline.process(frame)


def bench_pipeline(seconds: float) -> list[tuple[str, str, float]]:
    rows = []
    for w, h in SIZES:
        frames = road_frames((w, h), 100)
        for mode in (PersonMode.OFF, PersonMode.REQUIRE):
            rows.append(
                (f"{w}x{h}", mode.value, rate(PipelineRunner(mode, (w, h)), frames, seconds))
            )
    return rows


def bench_person_check(count: int) -> float:
    settings = DetectorSettings()
    checker = build_person_checker(settings)
    assert checker is not None
    frames = walk_in_frames()
    times = []
    for i in range(count):
        data = frames[10 + i % 30]
        buf = BufferedFrame(seq=i, captured_at=0, jpeg=data, width=640, height=480)
        start = time.process_time()
        checker.check(buf, (20 + 4 * i % 30, 40, 400, 300))
        times.append(time.process_time() - start)
    return statistics.median(times)


# ---- through the broker -------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def bench_broker(seconds: float) -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        broker = MosquittoProcess(
            Path(tmp) / "mosquitto", repo_config=REPO / "mosquitto" / "mosquitto.dev.conf"
        )
        broker.start()
        bsettings = BrokerSettings(host=broker.host, port=broker.port)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOMESEC_")}
        env.update(
            HOMESEC_BROKER_HOST=broker.host,
            HOMESEC_BROKER_PORT=str(broker.port),
            HOMESEC_DATA_DIR=str(Path(tmp) / "data"),
            HOMESEC_DETECTOR_METRICS_PORT=str(free_port()),
            HOMESEC_DETECTOR_METRICS_HOST="127.0.0.1",
            HOMESEC_DETECTOR_LOG_LEVEL="WARNING",
            HOMESEC_DETECTOR_DEFAULT_ARMED="true",
            HOMESEC_DETECTOR_EVENTS__QUIET_SECONDS="2",
            HOMESEC_DETECTOR_EVENTS__MIN_NOTIFY_SECONDS="0",
            OMP_NUM_THREADS="1",
        )
        proc = subprocess.Popen([sys.executable, "-m", "homesec_detector"], env=env)
        bus = Bus(bsettings, "bench", persistent=False)
        latencies: list[float] = []
        alert_after: list[float] = []
        first_motion: list[float] = [0.0]
        ready = threading.Event()

        def on_event(msg: Received[MotionEvent]) -> None:
            ev = msg.payload
            if ev.type is not EventType.END:
                latencies.append(msg.received_at - ev.frame_captured_at)
            if ev.decision.alert and ev.type is EventType.START and first_motion[0]:
                alert_after.append(msg.received_at - first_motion[0])

        def on_state(msg: Received[SystemValue]) -> None:
            if msg.params.get("setting") == "armed" and msg.payload.value:
                ready.set()

        bus.subscribe(MOTION_EVENTS, on_event)
        bus.subscribe(SYSTEM_STATE, on_state)
        bus.start(wait_seconds=10)
        try:
            ready.wait(30)
            still = road_frames((640, 480), 1) * int(seconds * 10)
            walk = walk_in_frames()

            def play(frames: list[bytes], mark_motion_at: int | None = None) -> None:
                next_at = time.time()
                for seq, data in enumerate(frames):
                    now = time.time()
                    if seq == mark_motion_at:
                        first_motion[0] = now
                    bus.publish(
                        FRAMES,
                        Frame(
                            camera="bench",
                            seq=seq,
                            captured_at=now,
                            width=640,
                            height=480,
                            jpeg=data,
                        ),
                        camera="bench",
                    )
                    next_at += 0.1
                    time.sleep(max(0.0, next_at - time.time()))

            play(still[:20])  # background learnt, process warm
            cpu0, wall0 = proc_cpu_seconds(proc.pid), time.time()
            play(still)
            out["cpu_idle_percent"] = (
                100 * (proc_cpu_seconds(proc.pid) - cpu0) / (time.time() - wall0)
            )
            cpu0, wall0 = proc_cpu_seconds(proc.pid), time.time()
            rounds = max(3, int(seconds / 4))
            for _ in range(rounds):
                first_motion[0] = 0.0
                play(walk, mark_motion_at=0)  # 4 s walk-in, then 4 s still: event ends
            out["cpu_motion_percent"] = (
                100 * (proc_cpu_seconds(proc.pid) - cpu0) / (time.time() - wall0)
            )
            out["rss_mb"] = proc_rss_mb(proc.pid)
            time.sleep(1)
            if latencies:
                ms = sorted(1000 * x for x in latencies)
                out["event_latency_p50_ms"] = statistics.median(ms)
                out["event_latency_max_ms"] = ms[-1]
                out["event_messages"] = len(ms)
            if alert_after:
                out["alert_after_motion_s"] = statistics.median(alert_after)
        finally:
            bus.stop()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
            broker.stop()
    return out


# ---- labelled composite evaluation --------------------------------------------------------


def _first_frame(name: str) -> np.ndarray:
    cap = cv2.VideoCapture(str(ASSETS / "video" / name))
    ok, image = cap.read()
    cap.release()
    return cv2.resize(image, (640, 480))


def _enc(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


def _slide_in(base: np.ndarray, photo_name: str, width: int) -> list[bytes]:
    photo = cv2.imread(str(ASSETS / "images" / photo_name))
    photo = cv2.resize(photo, (width, int(photo.shape[0] * width / photo.shape[1])))
    frames = [_enc(base)] * 10
    for i in range(40):
        canvas = base.copy()
        x, y = min(20 + 4 * i, 640 - width), 40
        rows = min(photo.shape[0], 480 - y)
        canvas[y : y + rows, x : x + width] = photo[:rows]
        frames.append(_enc(canvas))
    return frames + [_enc(base)] * 110


def labelled_segments() -> list[tuple[str, int, list[bytes]]]:
    """(name, actual person 1/0, frames at 10 fps): real photos composited into real scenes,
    and lighting changes of the kinds behind the original's 6 false positives."""
    road, traffic = _first_frame("road_640x360.avi"), _first_frame("traffic_320x240.avi")
    segments: list[tuple[str, int, list[bytes]]] = []
    for bg_name, bg in (("road", road), ("traffic", traffic)):
        for width in (300, 400, 500):
            for k in range(4):
                segments.append(
                    (
                        f"person{k}-{width}-{bg_name}",
                        1,
                        _slide_in(bg, f"coco_fastestdet_{k}.jpg", width),
                    )
                )
            segments.append(
                (f"cats-{width}-{bg_name}", 0, _slide_in(bg, "coco_fastestdet_4.jpg", width))
            )
        for beta in (25, 45, 70):
            step = cv2.convertScaleAbs(bg, alpha=1.0, beta=beta)
            segments.append(
                (f"light-step+{beta}-{bg_name}", 0, [_enc(bg)] * 20 + [_enc(step)] * 140)
            )
        ramp = [_enc(cv2.convertScaleAbs(bg, alpha=1.0, beta=i)) for i in range(60)]
        segments.append((f"light-ramp-{bg_name}", 0, [_enc(bg)] * 20 + ramp + [ramp[-1]] * 80))
        grey = cv2.cvtColor(cv2.cvtColor(bg, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        ir = cv2.convertScaleAbs(grey, alpha=1.3, beta=30)
        segments.append((f"ir-switch-{bg_name}", 0, [_enc(bg)] * 20 + [_enc(ir)] * 140))
        segments.append((f"static-{bg_name}", 0, [_enc(bg)] * 160))
    return segments


def bench_labelled() -> dict[str, dict[tuple[int, int, int], int]]:
    """The original's 2x2-style table per detector: (motion_model, person, actual) -> count."""
    tables: dict[str, dict[tuple[int, int, int], int]] = {"original": {}, "homesec": {}}
    for _name, actual, frames in labelled_segments():
        original, tracker = OriginalMotion(), EventTracker("x", EventSettings(window_frames=30))
        inputs = DecisionInputs(True, True, PersonMode.OFF, 0.5)
        fired = 0
        for i, data in enumerate(frames):
            occupied = bool(original.process_jpeg(data))
            msgs = tracker.step(i / 10, i, i / 10, MotionResult(occupied=occupied), None, inputs)
            fired |= any(m.type is EventType.START for m in msgs)
        key = (int(fired), 0, actual)
        tables["original"][key] = tables["original"].get(key, 0) + 1
        ev = Evaluation(DetectorSettings(metrics_port=0))
        for i, data in enumerate(frames):
            ev.feed(i, data, 640, 480, 10.0)
        summary = ev.summary(10.0, None)
        person = int(summary["alerts"] > 0)
        key = (int(summary["events"] > 0), person, actual)
        tables["homesec"][key] = tables["homesec"].get(key, 0) + 1
    return tables


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (less precise)")
    parser.add_argument(
        "--glibc-defaults",
        action="store_true",
        help="leave malloc as glibc sets it (the services apply homesec.malloc.tune_malloc)",
    )
    args = parser.parse_args(argv)
    seconds = 1.0 if args.quick else 3.0
    tuned = False if args.glibc_defaults else tune_malloc()
    print(
        f"cpu count {os.cpu_count()}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, "
        f"cv2 {cv2.__version__}, threads {cv2.getNumThreads()}, malloc tuned {tuned}"
    )

    print("\n1. motion stage incl. JPEG decode, frames/s per core (road footage)")
    print(f"   {'input':10} {'original':>10} {'homesec':>10} {'ratio':>7}  target")
    for size, base, new, ratio in bench_motion(seconds):
        target = "8x" if size == "640x480" else "4x"
        print(f"   {size:10} {base:10.0f} {new:10.0f} {ratio:6.1f}x  >= {target}")

    print("\n2. whole detector pipeline, frames/s per core (road footage: motion in most frames)")
    for size, mode, fps in bench_pipeline(seconds):
        print(f"   {size:10} person_mode={mode:8} {fps:8.0f} fps  ({1000 / fps:.2f} ms/frame)")
    print(
        f"   one person check (640x480, motion-region crop): "
        f"{1000 * bench_person_check(20 if args.quick else 60):.1f} ms CPU (target < 30 ms)"
    )

    print("\n6. labelled composites: real photos walking into real scenes, lighting changes")
    print("   (one sample per segment; person = homesec alerted in require mode)")
    for name, table in bench_labelled().items():
        print(f"   {name}: motion_model person actual count")
        for (m, p, a), c in sorted(table.items()):
            print(f"   {'':{len(name)}}  {m:>12} {p:>6} {a:>6} {c:>5}")

    print("\n3-5. detector process through a real Mosquitto at 10 fps (640x480)")
    for key, value in bench_broker(10.0 if args.quick else 30.0).items():
        print(f"   {key:24} {value:8.2f}")
    print("   targets: event latency p50 < 10 ms; idle CPU < 3 % of a core; alert within 1 s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

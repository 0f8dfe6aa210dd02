"""Memory of the whole local stack: resident (RSS) and proportional (PSS) set size per service.

    uv run python bench/memory.py                 # steady state (demo person walked in)
    uv run python bench/memory.py --minutes 10    # and again after 10 minutes (no growth)
    uv run python bench/memory.py --json
    uv run python bench/memory.py --no-fork       # each service a fresh interpreter (as in Docker)

Starts the stack as `make run` does (`homesec run`: a private Mosquitto, every service, the demo
camera at 640x480 10 fps, the person model on), arms it (the worst case: an alert, its clip
encoded), waits until the demo person has walked in, the detector has alerted and the alert's
clip is written, then reads ``/proc/<pid>/smaps_rollup`` of each service and of the runner
(the services' parent) several times (``--samples``, 5 s apart; the figures are the medians:
one instant may fall on an event's person checks or a clip encode). PSS divides every shared
page among the processes that map it, so the total is what the stack really costs the machine
(RSS would count shared libraries once per process); it is split into anonymous memory (heap,
buffers: what only swap could free) and file pages (the code of Python, NumPy and OpenCV: clean
pages the kernel can drop and read again under memory pressure).
Figures only; the guard test (tests/core/test_memory_budget.py) compares against
``bench/memory_budget.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from soak import children

from homesec.broker import free_port, port_open
from homesec.contract import SYSTEM_SET, SetCommand
from homesec.pagemerge import KSM_DIR, ksm_running
from homesec.services import CATALOGUE
from homesec_detector.media_writer import MediaSettings

SERVICES = [info.name for info in CATALOGUE]
FULL_AFTER_SECONDS = MediaSettings().missed_buffer_seconds + 10
"""The bounded buffers are full by then: the missed-alert buffer (120 s of frames) is the last."""


SAMPLES = 6
SAMPLE_EVERY_SECONDS = 5.0


@dataclass(frozen=True)
class Memory:
    rss_bytes: int
    pss_bytes: int
    pss_anon_bytes: int = 0
    pss_file_bytes: int = 0


FIELDS = {"Rss:": "rss_bytes", "Pss:": "pss_bytes", "Pss_Anon:": "pss_anon_bytes"}
FIELDS["Pss_File:"] = "pss_file_bytes"


def memory(pid: int) -> Memory | None:
    """RSS and PSS (anonymous, file) of a process from smaps_rollup (kB in the file)."""
    values: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] in FIELDS:
                values[FIELDS[parts[0]]] = int(parts[1]) * 1024
    except OSError:
        return None
    return Memory(**{name: values.get(name, 0) for name in FIELDS.values()})


def median(samples: list[dict[str, Memory]]) -> dict[str, Memory]:
    """Each process's median of each figure over ``samples``."""
    names = sorted({name for sample in samples for name in sample})
    found: dict[str, Memory] = {}
    for name in names:
        seen = [sample[name] for sample in samples if name in sample]
        found[name] = Memory(
            **{f: int(statistics.median(getattr(m, f) for m in seen)) for f in FIELDS.values()}
        )
    return found


def total_pss(sample: dict[str, Memory]) -> int:
    return sum(m.pss_bytes for m in sample.values())


def service_pids(runner: int) -> dict[str, int]:
    """Service name -> pid among the runner's children (the broker left out)."""
    return {name: pid for name, pid in children(runner).items() if name in SERVICES}


def metric(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Stack:
    """`homesec run` with private ports and a throwaway data folder."""

    def __init__(self, env_extra: dict[str, str] | None = None) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="homesec-memory-"))
        self.port = free_port()
        self.metrics_ports = {name: free_port() for name in SERVICES}
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("HOMESEC_", "SLACK_", "AWS_"))
        }
        env.update(HOMESEC_BROKER_PORT=str(self.port), HOMESEC_DATA_DIR=str(self.data_dir))
        for info in CATALOGUE:
            env[f"{info.env_prefix}METRICS_PORT"] = str(self.metrics_ports[info.name])
            env[f"{info.env_prefix}METRICS_HOST"] = "127.0.0.1"
        env["HOMESEC_SLACK_GATEWAY_PORT"] = str(free_port())
        env.update(env_extra or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "homesec.cli", "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def arm(self) -> None:
        """Arm the system as the owner would (``system/armed/set``, QoS 1)."""
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        try:
            topic = SYSTEM_SET.topic("homesec", setting="armed")
            payload = SetCommand(value=True, source="bench").model_dump_json()
            client.publish(topic, payload, qos=1).wait_for_publish(10)
        finally:
            client.loop_stop()
            client.disconnect()

    def wait_steady(self, timeout: float = 300.0) -> None:
        """Until every service runs, the demo person has been confirmed and alerted on, the
        alert's clip is written (every buffer of an alert has been used once), and the
        detector's missed-alert buffer is full (``FULL_AFTER_SECONDS`` since the start)."""
        started = time.monotonic()
        deadline = started + timeout
        armed = False
        while time.monotonic() < deadline:
            pids = service_pids(self.proc.pid)
            up = len(pids) == len(SERVICES) and port_open("127.0.0.1", self.port)
            if (
                up
                and not armed
                and metric(self.metrics_ports["detector"], "homesec_mqtt_connected")
            ):
                self.arm()
                armed = True
            clips = metric(self.metrics_ports["detector"], "homesec_detector_clips_total")
            if armed and clips > 0 and time.monotonic() - started >= FULL_AFTER_SECONDS:
                time.sleep(5)  # let the event end and buffers settle
                return
            time.sleep(1)
        raise TimeoutError("the stack did not reach a steady state (no alert clip was written)")

    def sample(self) -> dict[str, Memory]:
        """Every service, and the runner itself (their parent: it belongs in the total)."""
        found: dict[str, Memory] = {}
        runner = memory(self.proc.pid)
        if runner is not None:
            found["runner"] = runner
        for name, pid in service_pids(self.proc.pid).items():
            measured = memory(pid)
            if measured is not None:
                found[name] = measured
        return found

    def samples(self, count: int, every: float = SAMPLE_EVERY_SECONDS) -> list[dict[str, Memory]]:
        """``count`` samples, ``every`` seconds apart."""
        taken = []
        for i in range(count):
            if i:
                time.sleep(every)
            taken.append(self.sample())
        return taken

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def measure(
    minutes: float = 0.0,
    env_extra: dict[str, str] | None = None,
    every: float = 1.0,
    samples: int = SAMPLES,
) -> dict[str, object]:
    """Steady-state figures of every service (medians of ``samples`` samples), then
    (``minutes`` > 0) the median total PSS of a few samples every ``every`` minutes and every
    service's figures once more at the end."""
    stack = Stack(env_extra)
    series: list[tuple[float, int]] = []
    ksmd_started, wall_started = ksmd_cpu_seconds(), time.monotonic()
    sharing = 0
    try:
        stack.wait_steady()
        taken = stack.samples(samples)
        sharing = ksm_pages_sharing()
        first = median(taken)
        totals = [total_pss(sample) for sample in taken]
        later: dict[str, Memory] = {}
        series.append((0.0, total_pss(first)))
        started = time.monotonic()
        while minutes > 0 and (elapsed := (time.monotonic() - started) / 60) < minutes:
            time.sleep(max(0.0, min(every, minutes - elapsed)) * 60)
            later = median(stack.samples(3))
            series.append(((time.monotonic() - started) / 60, total_pss(later)))
    finally:
        stack.stop()
    ksmd_seconds = ksmd_cpu_seconds() - ksmd_started
    return {
        "ksm": {
            "running": ksm_running(),
            "pages_sharing_at_steady": sharing,
            "ksmd_cpu_seconds": round(ksmd_seconds, 2),
            "ksmd_cpu_share": round(ksmd_seconds / (time.monotonic() - wall_started), 4),
        },
        "steady": {name: asdict(m) for name, m in sorted(first.items())},
        "steady_total_pss_range": [min(totals), max(totals)],
        "samples": samples,
        "later": {name: asdict(m) for name, m in sorted(later.items())},
        "minutes": minutes,
        "total_pss_series": series,
    }


def ksmd_cpu_seconds() -> float:
    """CPU time the kernel's same-page merging thread has used since boot (0: none runs)."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() != "ksmd":
                continue
            fields = (comm.parent / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def ksm_pages_sharing() -> int:
    try:
        return int((KSM_DIR / "pages_sharing").read_text())
    except (OSError, ValueError):
        return 0


def mb(value: int) -> str:
    return f"{value / 2**20:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=0.0, help="sample again after this")
    parser.add_argument("--every", type=float, default=1.0, help="minutes between samples")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--samples", type=int, default=SAMPLES, help="samples 5 s apart; figures are medians"
    )
    parser.add_argument(
        "--no-fork",
        action="store_true",
        help="HOMESEC_RUN_FORK=false: every service its own interpreter, nothing shared",
    )
    args = parser.parse_args()
    env = {"HOMESEC_RUN_FORK": "false"} if args.no_fork else None
    result = measure(args.minutes, env, args.every, max(1, args.samples))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    steady: dict[str, dict[str, int]] = result["steady"]  # type: ignore[assignment]
    later: dict[str, dict[str, int]] = result["later"]  # type: ignore[assignment]
    header = f"{'service':<14} {'RSS MB':>8} {'PSS MB':>8} {'anon':>6} {'file':>6}"
    if later:
        header += f" {'PSS MB after':>13} {'growth':>8}"
    print(header)
    for name, m in steady.items():
        line = f"{name:<14} {mb(m['rss_bytes']):>8} {mb(m['pss_bytes']):>8}"
        line += f" {mb(m['pss_anon_bytes']):>6} {mb(m['pss_file_bytes']):>6}"
        if name in later:
            after = later[name]["pss_bytes"]
            line += f" {mb(after):>13} {(after - m['pss_bytes']) / max(1, m['pss_bytes']):>+8.1%}"
        print(line)
    total_rss = sum(m["rss_bytes"] for m in steady.values())
    total_pss = sum(m["pss_bytes"] for m in steady.values())
    line = f"{'total':<14} {mb(total_rss):>8} {mb(total_pss):>8}"
    line += f" {mb(sum(m['pss_anon_bytes'] for m in steady.values())):>6}"
    line += f" {mb(sum(m['pss_file_bytes'] for m in steady.values())):>6}"
    if later:
        after_total = sum(m["pss_bytes"] for m in later.values())
        line += f" {mb(after_total):>13} {(after_total - total_pss) / max(1, total_pss):>+8.1%}"
    print(line)
    low, high = result["steady_total_pss_range"]  # type: ignore[misc]
    print(f"total PSS over the {result['samples']} samples: {mb(low)} to {mb(high)} MB")
    ksm: dict[str, object] = result["ksm"]  # type: ignore[assignment]
    if ksm["running"]:
        print(
            f"same-page merging (KSM) on: {ksm['pages_sharing_at_steady']} pages merged away at "
            f"the samples; ksmd used {ksm['ksmd_cpu_seconds']} s of CPU during the run "
            f"({float(ksm['ksmd_cpu_share']):.1%} of a core)"  # type: ignore[arg-type]
        )
    else:
        print("same-page merging (KSM) off on this host (/sys/kernel/mm/ksm/run)")
    series: list[tuple[float, int]] = result["total_pss_series"]  # type: ignore[assignment]
    if len(series) > 1:
        print("total PSS MB by minute: " + ", ".join(f"{t:.0f}: {mb(v)}" for t, v in series))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

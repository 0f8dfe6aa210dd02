"""Soak: run the whole local stack (`homesec run`, demo camera at its full rate) for a bounded time
and print each service's CPU share and resident memory at the start and the end.

    uv run python bench/soak.py --minutes 3

Figures only; nothing is asserted. Memory should not grow between the two samples beyond
allocator noise; the last column says by how much it did.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from homesec.broker import free_port, port_open
from homesec.forking import process_title
from homesec.services import CATALOGUE

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Sample:
    cpu_seconds: float
    rss_bytes: int
    at: float


def sample(pid: int) -> Sample | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        statm = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:
        return None
    utime, stime = int(stat[11]), int(stat[12])
    return Sample((utime + stime) / CLOCK_TICKS, int(statm[1]) * PAGE, time.monotonic())


def children(ppid: int) -> dict[str, int]:
    """Service name -> pid of the runner's children."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat[1]) != ppid:
            continue
        args = [a.decode() for a in cmdline if a]
        for info in CATALOGUE:
            if info.module in args or process_title(info) in args:
                found[info.name] = int(entry.name)
        if args and "mosquitto" in args[0]:
            found["mosquitto"] = int(entry.name)
    return found


def cpu_share(a: Sample, b: Sample) -> float:
    return (b.cpu_seconds - a.cpu_seconds) / max(1e-9, b.at - a.at)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument(
        "--warmup", type=float, default=20.0, help="seconds before the first sample"
    )
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="homesec-soak-"))
    port = free_port()
    env = dict(os.environ)
    env.update(HOMESEC_BROKER_PORT=str(port), HOMESEC_DATA_DIR=str(data_dir))
    for info in CATALOGUE:
        env[f"{info.env_prefix}METRICS_PORT"] = str(free_port())
    env["HOMESEC_SLACK_GATEWAY_PORT"] = str(free_port())
    runner = subprocess.Popen(
        [sys.executable, "-m", "homesec.cli", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(args.warmup)
        pids = children(runner.pid)
        first = {name: sample(pid) for name, pid in pids.items()}
        window = 10.0
        time.sleep(window)
        first_end = {name: sample(pid) for name, pid in pids.items()}
        time.sleep(max(0.0, args.minutes * 60 - 2 * window))
        last_start = {name: sample(pid) for name, pid in pids.items()}
        time.sleep(window)
        last = {name: sample(pid) for name, pid in pids.items()}
    finally:
        runner.send_signal(signal.SIGTERM)
        try:
            runner.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(runner.pid, signal.SIGKILL)

    print(f"soak: {args.minutes:.1f} min of the whole stack, demo camera at full rate")
    print(
        f"{'service':<14} {'cpu start':>10} {'cpu end':>10} {'rss start MB':>13} {'rss end MB':>11} {'growth':>8}"
    )
    for name in sorted(first):
        a, b, c, d = first[name], first_end[name], last_start[name], last[name]
        if not (a and b and c and d):
            print(f"{name:<14} exited during the soak")
            continue
        growth = (d.rss_bytes - a.rss_bytes) / max(1, a.rss_bytes)
        print(
            f"{name:<14} {cpu_share(a, b):>9.1%} {cpu_share(c, d):>10.1%} "
            f"{a.rss_bytes / 2**20:>13.1f} {d.rss_bytes / 2**20:>11.1f} {growth:>+8.1%}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Faults for the lifecycle tests: demo timing, the media volume, and a power cut of the engine."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

from engine import DOCKERD, Compose, run
from mqtt_watch import Watch
from stack_client import Stack, button_value

from homesec.contract import MotionEvent
from support import wait_until

DEMO_PERIOD = 50.0  # services/camera: the demo person walks in once per period
PID_FILE = Path("/run/homesec-dockerd.pid")


def alerting_starts(watch: Watch, since: float = 0.0) -> list[tuple[float, MotionEvent]]:
    """(time received, event) of every alerting ``start`` the watch saw since ``since``."""
    out = []
    for message in watch.on("homesec/motion/events"):
        event = MotionEvent.model_validate_json(message.payload)
        if event.type == "start" and event.decision.alert and message.at >= since:
            out.append((message.at, event))
    return out


def started_at(compose: Compose, service: str) -> float:
    """When the service's container last started (its ``State.StartedAt``, epoch seconds)."""
    # RFC 3339 with nanoseconds and "Z": Python 3.11's fromisoformat reads it (to microseconds)
    return datetime.fromisoformat(str(compose.inspect(service)["State"]["StartedAt"])).timestamp()


def next_alert_at(watch: Watch, compose: Compose, timeout: float = 2 * DEMO_PERIOD + 20) -> float:
    """When the next alerting ``start`` should be published: the demo person walks in once a
    period of the camera's timeline, so one period after the last one seen since the camera
    last started (its timeline starts again with it: an earlier walk-in says nothing of when
    the next comes). Waits to see one."""
    since = started_at(compose, "camera") + 4  # frames from before its restart are gone by now
    at = wait_until(lambda: alerting_starts(watch, since=since), timeout)[-1][0]
    while at < time.time() + 3:
        at += DEMO_PERIOD
    return at


def sleep_until(at: float) -> None:
    time.sleep(max(0.0, at - time.time()))


def alerted_ids(st: Stack) -> list[str]:
    """Event ids of the alerts the Slack stand-in received (from their Occupied button)."""
    return [button_value(c, "homesec_label_occupied").split("|")[0] for c in st.alerts()]


def volume_files(compose: Compose, volume: str, image: str) -> set[str]:
    name = f"{compose.project}_{volume}"
    out = run(["docker", "run", "--rm", "--network", "none", "-v", f"{name}:/v:ro",
               "--entrypoint", "find", image, "/v", "-type", "f"])  # fmt: skip
    return set(out.stdout.split())


def engine_owned_here() -> str:
    """Why the power cut may not kill this engine, or "" (it was started by .ci/dockerd.sh)."""
    try:
        pid = int(PID_FILE.read_text().strip())
    except (OSError, ValueError):
        return f"no {PID_FILE}: the engine was not started by .ci/dockerd.sh"
    running = run(["pgrep", "-x", "dockerd"], check=False).stdout.split()
    if str(pid) not in running:
        return f"dockerd {pid} from {PID_FILE} is not the running engine ({running})"
    return ""


def container_pids() -> list[int]:
    """Every process inside any container (their cgroups), the containers' init processes too."""
    ids = run(["docker", "ps", "-q", "--no-trunc"]).stdout.split()
    pids: set[int] = set()
    for cid in ids:
        for procs in (
            *Path("/sys/fs/cgroup").glob(f"*/docker/{cid}/cgroup.procs"),
            *Path("/sys/fs/cgroup").glob(f"docker/{cid}/cgroup.procs"),
            *Path("/sys/fs/cgroup").glob(f"**/docker-{cid}.scope/cgroup.procs"),
        ):
            pids.update(int(p) for p in procs.read_text().split())
        state = run(["docker", "inspect", "-f", "{{.State.Pid}}", cid], check=False).stdout.strip()
        if state.isdigit() and int(state) > 0:
            pids.add(int(state))
    return sorted(pids)


def alive(pid: int) -> bool:
    """Running (a zombie whose parent is gone counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def power_cut() -> int:
    """SIGKILL dockerd, containerd, every containerd-shim and every container process at once;
    then start the engine again as CI does. Returns how many processes were killed."""
    victims = set(container_pids())
    for name in ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2"):
        victims.update(int(p) for p in run(["pgrep", "-x", name], check=False).stdout.split())
    assert victims, "nothing to kill"
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_until(lambda: not any(alive(p) for p in victims), 30, interval=0.2)
    subprocess.run(["bash", str(DOCKERD), "start"], check=True, timeout=120)
    return len(victims)

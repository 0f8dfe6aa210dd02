"""`homesec run`: starts a broker and every installed service; services survive a broker kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from homesec.broker import free_port, port_open
from homesec.forking import process_title
from homesec.services import CATALOGUE
from support import wait_until

INSTALLED = [s for s in CATALOGUE if s.installed()]


class AvailabilityWatcher:
    """Records the latest availability payload of every service."""

    def __init__(self, port: int) -> None:
        self.state: dict[str, str] = {}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *a: c.subscribe("homesec/+/availability", qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        self.state[msg.topic.split("/")[1]] = msg.payload.decode()

    def all_online(self, names: list[str]) -> bool:
        return all(self.state.get(n) == "online" for n in names)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def runner_env(tmp_path: Path, broker_port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HOMESEC_BROKER_PORT=str(broker_port),
        HOMESEC_BROKER_RECONNECT_MAX_SECONDS="2",
        HOMESEC_DATA_DIR=str(tmp_path / "var"),
        HOMESEC_SLACK_GATEWAY_PORT=str(free_port()),
        PYTHONUNBUFFERED="1",
    )
    for info in CATALOGUE:
        env[f"{info.env_prefix}METRICS_PORT"] = str(free_port())
        env[f"{info.env_prefix}LOG_FORMAT"] = "text"
    return env


def metric_value(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def reconnected(env: dict[str, str], service: str) -> bool:
    """True when the service's /metrics say it reconnected and is connected now."""
    port = env[f"HOMESEC_{service.upper().replace('-', '_')}_METRICS_PORT"]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return False
    return (metric_value(text, "homesec_mqtt_reconnects_total") or 0) >= 1 and metric_value(
        text, "homesec_mqtt_connected"
    ) == 1


def child_titles(ppid: int) -> dict[str, int]:
    """Process title -> pid of ``ppid``'s children (a fork shows ``homesec <service>``)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode()
        except OSError:
            continue
        if int(stat[1]) == ppid:
            found[title] = int(entry.name)
    return found


def refork_after_kill(runner: int, watcher: AvailabilityWatcher, names: list[str]) -> None:
    """A fork that dies (kill -9) is forked again from the runner, with its title, and comes
    back online; the other forks are left alone."""
    victim = INSTALLED[-1]
    before = child_titles(runner)
    os.kill(before[process_title(victim)], signal.SIGKILL)
    wait_until(lambda: watcher.state.get(victim.name) == "offline", timeout=15)
    wait_until(lambda: watcher.all_online(names), timeout=30)
    after = child_titles(runner)
    assert after[process_title(victim)] != before[process_title(victim)]
    for info in INSTALLED:
        if info is not victim:
            assert after[process_title(info)] == before[process_title(info)], info.name


@pytest.mark.skipif(not INSTALLED, reason="no service installed yet")
@pytest.mark.parametrize("fork", [True, False], ids=["forked", "fresh-interpreters"])
def test_run_brings_every_service_online_and_survives_broker_kill(tmp_path, fork):
    port = free_port()
    env = runner_env(tmp_path, port)
    env.update(HOMESEC_RUN_FORK=str(fork).lower(), HOMESEC_RUN_RESTART_MIN_SECONDS="0.2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "homesec.cli", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    watcher = None
    try:
        wait_until(lambda: port_open("127.0.0.1", port), timeout=15)
        watcher = AvailabilityWatcher(port)
        names = [s.name for s in INSTALLED]
        started = time.monotonic()
        wait_until(lambda: watcher.all_online(names), timeout=30)
        first_online = time.monotonic() - started
        titles = child_titles(proc.pid)
        for info in INSTALLED:
            assert (process_title(info) in titles) is fork, titles

        # kill -9 the runner's Mosquitto: the runner restarts it, every service reconnects.
        pid = int(
            subprocess.run(
                ["pgrep", "-f", f"{tmp_path}/var/mosquitto/mosquitto.conf"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()[0]
        )
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not watcher.client.is_connected(), timeout=10)
        # Each service must be connected to the restarted broker again, by itself: its own
        # metrics say so (a retained "online" restored by the broker would prove nothing).
        wait_until(lambda: all(reconnected(env, n) for n in names), timeout=40)
        wait_until(lambda: watcher.all_online(names), timeout=10)
        assert proc.poll() is None, "runner exited"
        if fork:
            refork_after_kill(proc.pid, watcher, names)
        print(f"services online {first_online:.1f} s after start: {names}")
    finally:
        if watcher:
            watcher.close()
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        text = out.decode(errors="replace")
    assert "metrics http://127.0.0.1:" in text
    assert "homesec: stopped" in text, text[-3000:]
    assert not port_open("127.0.0.1", port), "runner left its broker running"

"""``python -m homesec_camera`` as a real process: online, frames, clean stop, bad config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from homesec.broker import free_port
from homesec.contract import AVAILABILITY, FRAMES, Availability, Frame
from homesec.settings import BrokerSettings
from support import Collector, assert_module_exits_2_naming, wait_until


def camera_env(broker_settings: BrokerSettings, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMESEC_")}
    env.update(
        HOMESEC_BROKER_HOST=broker_settings.host,
        HOMESEC_BROKER_PORT=str(broker_settings.port),
        HOMESEC_DATA_DIR=str(tmp_path),
        HOMESEC_CAMERA_LOG_FORMAT="text",
        **extra,
    )
    return env


def test_service_process_goes_online_and_publishes(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    availability: Collector[Availability] = Collector()
    frames: Collector[Frame] = Collector()
    listener = make_bus("listener")
    listener.subscribe(AVAILABILITY, availability, service="camera")
    listener.subscribe(FRAMES, frames, camera="porch")
    time.sleep(0.2)
    port = free_port()
    env = camera_env(
        broker_settings,
        tmp_path,
        HOMESEC_CAMERA_CAMERA_ID="porch",
        HOMESEC_CAMERA_METRICS_PORT=str(port),
        HOMESEC_CAMERA_METRICS_HOST="127.0.0.1",
        HOMESEC_CAMERA_WIDTH="320",
        HOMESEC_CAMERA_HEIGHT="240",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "homesec_camera"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: availability.payloads and availability.payloads[-1].root == "online", 20)
        got = frames.wait_for(5, timeout=20)
        assert got[0].camera == "porch" and (got[0].width, got[0].height) == (320, 240)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        assert 'homesec_camera_frames_published_total{camera="porch"}' in text
        assert 'homesec_camera_frames_dropped_total{camera="porch",reason="late"}' in text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        wait_until(lambda: availability.payloads[-1].root == "offline", 10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        output = proc.stdout.read().decode(errors="replace")
    assert "source opened" in output


def test_bad_setting_exits_2(tmp_path: Path) -> None:
    assert_module_exits_2_naming("homesec_camera", tmp_path, HOMESEC_CAMERA_ROTATE="45")

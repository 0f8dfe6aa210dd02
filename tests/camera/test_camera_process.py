"""``python -m homesec_camera`` as a real process: online, frames, clean stop, bad config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from homesec.contract import FRAMES, Frame
from homesec.settings import BrokerSettings
from support import Collector, ServiceProcess, assert_module_exits_2_naming


def test_service_process_goes_online_and_publishes(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    frames: Collector[Frame] = Collector()
    listener = make_bus("listener")
    assert listener.subscribe(FRAMES, frames, camera="porch").wait(10)
    with ServiceProcess(
        "camera",
        broker_settings,
        tmp_path,
        HOMESEC_CAMERA_CAMERA_ID="porch",
        HOMESEC_CAMERA_WIDTH="320",
        HOMESEC_CAMERA_HEIGHT="240",
    ) as camera:
        got = frames.wait_for(5, timeout=20)
        assert got[0].camera == "porch" and (got[0].width, got[0].height) == (320, 240)
        text = camera.metrics_text()
        assert 'homesec_camera_frames_published_total{camera="porch"}' in text
        assert 'homesec_camera_frames_dropped_total{camera="porch",reason="late"}' in text
        output = camera.stop(15)
    assert "source opened" in output


def test_bad_setting_exits_2(tmp_path: Path) -> None:
    assert_module_exits_2_naming("homesec_camera", tmp_path, HOMESEC_CAMERA_ROTATE="45")

"""The detector publishes Home Assistant discovery: on connect, for each camera it sees, and
again when Home Assistant announces itself online."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from homesec.contract import FRAMES, Frame
from homesec_detector.service import DetectorService
from homesec_detector.settings import DetectorSettings
from support import wait_until

JPEG_GREY = cv2.imencode(".jpg", np.full((8, 8), 128, np.uint8))[1].tobytes()


@pytest.fixture
def detector(broker_settings, make_bus, tmp_path) -> Iterator[DetectorService]:
    settings = DetectorSettings(broker=broker_settings, metrics_port=0, data_dir=tmp_path)
    bus = make_bus("detector", start=False)
    service = DetectorService(bus, settings, bus.metrics)
    bus.start()
    assert bus.wait_connected(10)
    service.start()
    yield service
    service.close()


class Recorder:
    def __init__(self, host: str, port: int) -> None:
        self.docs: dict[str, list[dict[str, Any]]] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.subscribe("homeassistant/#", qos=1)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        if msg.topic.endswith("/config") and msg.payload:
            with self.lock:
                self.docs.setdefault(msg.topic, []).append(json.loads(msg.payload))

    def count(self, fragment: str) -> int:
        with self.lock:
            return sum(len(v) for k, v in self.docs.items() if fragment in k)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_discovery_on_connect_new_camera_and_ha_birth(
    detector: DetectorService, make_bus, broker_settings
) -> None:
    ha = Recorder(broker_settings.host, broker_settings.port)
    try:
        wait_until(lambda: ha.count("alarm_control_panel") >= 1)  # retained, from the connect
        panel = next(v for k, v in ha.docs.items() if "alarm_control_panel" in k)[-1]
        assert panel["command_topic"] == "homesec/alarm/set"
        assert ha.count("/camera/") == 0  # no camera seen yet

        camera = make_bus("camera")
        frame = Frame(camera="garage", seq=0, captured_at=1.0, width=8, height=8, jpeg=JPEG_GREY)
        camera.publish(FRAMES, frame, camera="garage")
        wait_until(lambda: ha.count("garage") >= 5)  # motion, camera, event, image, button
        cam_doc = next(v for k, v in ha.docs.items() if "/camera/" in k)[-1]
        assert cam_doc["topic"] == "homesec/cam/garage/snapshot"

        before = ha.count("alarm_control_panel")
        ha.client.publish("homeassistant/status", b"online", qos=1).wait_for_publish(5)
        wait_until(lambda: ha.count("alarm_control_panel") > before)
        # the new camera is part of every later publication
        wait_until(lambda: ha.count("garage") >= 10)
    finally:
        ha.close()

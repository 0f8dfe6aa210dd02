"""The live stack under MQTT fuzzing: who subscribes to what, a raw publisher, and the checks
made after every batch (same PIDs, availability online, rejects counted)."""

from __future__ import annotations

import importlib.util
import re
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from fuzz_payloads import Message, rejected
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from homesec.contract import (
    ALARM_RESULT,
    ALARM_SERVICE_SET,
    ALARM_SET,
    ALARM_STATE,
    AVAILABILITY,
    FRAMES,
    MISSED_ALERT,
    MOTION_EVENTS,
    PRESENCE,
    PTZ_COMMAND,
    PTZ_STATE,
    SERVICE_STATUS,
    SNAPSHOT,
    SNAPSHOT_REQUEST,
    SYSTEM_SET,
    SYSTEM_STATE,
    TRAINING_LABELS,
    TUNE_RESULT,
    UPLOAD_REQUEST,
    UPLOADER_STATUS,
    Channel,
    SetCommand,
    SystemSetting,
)
from homesec.services import CATALOGUE
from homesec.settings import BrokerSettings

TESTS = Path(__file__).resolve().parent.parent
PREFIX = BrokerSettings().topic_prefix
CAMERA = "front"
TRACKER_TOPIC = "fuzz/device_tracker/alice_phone/state"
HA_STATUS_TOPIC = "homeassistant/status"
NAMES = tuple(info.name for info in CATALOGUE)


def load_system_conftest() -> Any:
    """tests/system/conftest.py (Stack, S3) under a private module name, without editing it."""
    path = TESTS / "system" / "conftest.py"
    spec = importlib.util.spec_from_file_location("fuzz_system_stack", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Sub:
    service: str
    channel: Channel[Any]
    params: tuple[tuple[str, str], ...] = ()

    @property
    def pattern(self) -> str:
        names = re.findall(r"\{([a-z_]+)\}", self.channel.template)
        given = dict(self.params)
        full = {n: given.get(n, "+") for n in names}
        return self.channel.topic(PREFIX, **full)


SUBSCRIPTIONS: tuple[Sub, ...] = (
    Sub("camera", SNAPSHOT_REQUEST, (("camera", CAMERA),)),
    Sub("detector", FRAMES),
    Sub("detector", SYSTEM_STATE),  # SystemStateOwner: retained values at start-up
    Sub("detector", SYSTEM_SET),
    Sub("detector", ALARM_STATE),  # the alarm's owner: retained value at start-up
    Sub("detector", ALARM_SET),
    Sub("detector", ALARM_SERVICE_SET),
    Sub("detector", PRESENCE),  # Home Assistant discovery: people to announce
    Sub("detector", PTZ_STATE),  # ... and pan-tilt heads
    Sub("detector", MISSED_ALERT),  # the owner's missed alerts
    Sub("slack-gateway", AVAILABILITY),
    Sub("slack-gateway", SERVICE_STATUS),
    Sub("slack-gateway", PRESENCE),
    Sub("slack-gateway", PTZ_STATE),
    Sub("slack-gateway", SNAPSHOT),
    Sub("slack-gateway", UPLOADER_STATUS),
    Sub("slack-gateway", MOTION_EVENTS),
    Sub("slack-gateway", SYSTEM_STATE),
    Sub("slack-gateway", ALARM_STATE),
    Sub("slack-gateway", MOTION_EVENTS),  # the training desk's own handler (hard negatives)
    Sub("slack-gateway", TRAINING_LABELS),  # the weekly report counts every label
    Sub("slack-gateway", TUNE_RESULT),
    # homesec.confirm: the detector's answers and whether it is online (commands are sent
    # until answered)
    Sub("slack-gateway", ALARM_RESULT),  # (the detector's availability: through AVAILABILITY)
    Sub("presence", PRESENCE),  # its own retained state, restored at start
    Sub("presence", SYSTEM_STATE),
    Sub("presence", ALARM_RESULT),
    Sub("presence", AVAILABILITY, (("service", "detector"),)),
    Sub("uploader", TRAINING_LABELS),
    Sub("uploader", UPLOAD_REQUEST),
    Sub("ptz", PTZ_STATE, (("camera", CAMERA),)),
    Sub("ptz", PTZ_COMMAND, (("camera", CAMERA),)),
)
"""Every contract subscription of every service (from the services' code). Raw subscriptions
(``homeassistant/status`` in the detector, tracker topics in presence) have no contract, so
nothing is counted for them; they are fuzzed for crashes only."""

KNOWN_SETTINGS = {s.value for s in SystemSetting}


def invalid_counts(msg: Message) -> Counter[str]:
    """How much each service's ``homesec_mqtt_invalid_messages_total`` must rise for ``msg``."""
    counts: Counter[str] = Counter()
    for sub in SUBSCRIPTIONS:
        if not mqtt.topic_matches_sub(sub.pattern, msg.topic):
            continue
        if rejected(sub.channel, PREFIX, msg):
            counts[sub.service] += 1
        elif sub.channel is SYSTEM_SET:
            # the state owner also counts a well-formed command for an unknown setting
            setting = (SYSTEM_SET.match(PREFIX, msg.topic) or {}).get("setting")
            if setting not in KNOWN_SETTINGS:
                counts[sub.service] += 1
    return counts


class Publisher:
    """A raw MQTT v5 client: any topic, any bytes, any user properties; reconnects when the
    broker throws it out (e.g. after a packet above ``max_packet_size``)."""

    def __init__(self, host: str, port: int, name: str = "fuzzer") -> None:
        self.host, self.port, self.name = host, port, name
        self._connected = threading.Event()
        self.client = self._connect()

    def _connect(self) -> mqtt.Client:
        self._connected.clear()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{self.name}-{time.monotonic_ns()}",
            protocol=mqtt.MQTTv5,
        )
        client.on_connect = lambda *a: self._connected.set()
        client.on_disconnect = lambda *a: self._connected.clear()
        client.connect(self.host, self.port)
        client.loop_start()
        assert self._connected.wait(10), "fuzz publisher could not connect"
        return client

    def reconnect(self) -> None:
        self.close()
        self.client = self._connect()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def send(self, msg: Message, qos: int = 1) -> None:
        props = None
        if msg.props:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.UserProperty = list(msg.props)
        info = self.client.publish(msg.topic, msg.payload, qos=qos, properties=props)
        info.wait_for_publish(10)
        assert info.is_published(), f"broker did not acknowledge {msg.topic!r}"

    def send_oversized(self, topic: str, size: int) -> bool:
        """Publish ``size`` bytes from a throw-away client; True if the broker cut it off."""
        victim = Publisher(self.host, self.port, "fuzz-oversized")
        info = victim.client.publish(topic, b"\x00" * size, qos=1)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and victim._connected.is_set():
            if info.is_published():
                break
            time.sleep(0.05)
        cut_off = not victim._connected.is_set()
        victim.client.loop_stop()
        return cut_off

    @staticmethod
    def set_armed(value: bool, source: str) -> Message:
        body = SetCommand(value=value, source=source).model_dump_json().encode()
        return Message(SYSTEM_SET.topic(PREFIX, setting="armed"), body)


@dataclass
class Baseline:
    """Counters of every service before a batch, and the expected rises."""

    invalid: dict[str, float]
    handler_errors: dict[str, float]
    expected: Counter[str] = field(default_factory=Counter)
    sent: int = 0

    def add(self, msg: Message) -> None:
        self.expected.update(invalid_counts(msg))
        self.sent += 1

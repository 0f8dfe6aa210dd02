"""Home Assistant MQTT discovery: documents checked against the keys HA's MQTT platforms accept,
templates rendered with Jinja2 against real contract payloads, and publishing over a real broker.

Key tables follow Home Assistant's MQTT integration docs (alarm_control_panel, binary_sensor,
switch, camera) and ../shared/docs/conventions.md.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import jinja2
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from homesec.bus import Bus
from homesec.contract import (
    AVAILABILITY,
    CHANNELS,
    MOTION_STATE,
    PRESENCE,
    SNAPSHOT,
    SYSTEM_SET,
    SYSTEM_STATE,
    OnOff,
    PersonPresence,
    PresenceState,
    SetCommand,
    SystemValue,
)
from homesec.homeassistant import HomeAssistantDiscovery
from homesec.settings import BrokerSettings
from support import wait_until

# Keys every MQTT entity accepts.
COMMON_KEYS = {
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "payload_available",
    "payload_not_available",
    "device",
    "default_entity_id",
    "enabled_by_default",
    "encoding",
    "entity_category",
    "entity_picture",
    "icon",
    "json_attributes_template",
    "json_attributes_topic",
    "name",
    "object_id",
    "origin",
    "platform",
    "qos",
    "unique_id",
}

COMPONENTS: dict[str, dict[str, set[str]]] = {
    "alarm_control_panel": {
        "required": {"command_topic", "state_topic"},
        "allowed": {
            "code",
            "code_arm_required",
            "code_disarm_required",
            "code_trigger_required",
            "command_template",
            "payload_arm_away",
            "payload_arm_custom_bypass",
            "payload_arm_home",
            "payload_arm_night",
            "payload_arm_vacation",
            "payload_disarm",
            "payload_trigger",
            "retain",
            "supported_features",
            "value_template",
        },
    },
    "binary_sensor": {
        "required": {"state_topic"},
        "allowed": {
            "device_class",
            "expire_after",
            "force_update",
            "off_delay",
            "payload_off",
            "payload_on",
            "value_template",
        },
    },
    "switch": {
        "required": {"command_topic"},
        "allowed": {
            "command_template",
            "device_class",
            "optimistic",
            "payload_off",
            "payload_on",
            "retain",
            "state_off",
            "state_on",
            "state_topic",
            "value_template",
        },
    },
    "camera": {"required": {"topic"}, "allowed": {"image_encoding"}},
}
DEVICE_KEYS = {
    "configuration_url",
    "connections",
    "hw_version",
    "identifiers",
    "manufacturer",
    "model",
    "model_id",
    "name",
    "serial_number",
    "suggested_area",
    "sw_version",
    "via_device",
}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
AVAILABILITY_KEYS = {"topic", "payload_available", "payload_not_available", "value_template"}
ALARM_STATES = {
    "disarmed",
    "armed_home",
    "armed_away",
    "armed_night",
    "armed_vacation",
    "armed_custom_bypass",
    "pending",
    "triggered",
    "arming",
    "disarming",
}
ALARM_FEATURES = {
    "arm_home",
    "arm_away",
    "arm_night",
    "arm_vacation",
    "arm_custom_bypass",
    "trigger",
}
BINARY_SENSOR_CLASSES = {"motion", "occupancy", "presence", "door", "problem", "connectivity"}
TOPIC_RE = re.compile(
    r"^homeassistant/(?P<component>[a-z_]+)/(?P<node>[A-Za-z0-9_-]+)/(?P<object>[A-Za-z0-9_-]+)/config$"
)
PREFIX = "homesec"
CAMERAS = ["front", "back-yard"]


def ha_render(template: str, **variables: Any) -> str:
    """Render like Home Assistant does: Jinja2 with value / value_json / action variables."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    return env.from_string(template).render(**variables).strip()


def channel_of(topic: str) -> str | None:
    for channel in CHANNELS:
        if channel.match(PREFIX, topic) is not None:
            return channel.name
    return None


@pytest.fixture
def discovery() -> HomeAssistantDiscovery:
    bus = Bus(BrokerSettings(), "detector")  # never started: documents() is pure
    return HomeAssistantDiscovery(bus, CAMERAS)


def test_deploy_ha_documents_use_only_keys_home_assistant_accepts(
    discovery: HomeAssistantDiscovery,
) -> None:
    docs = discovery.documents()
    kinds: dict[str, int] = {}
    unique_ids = set()
    for topic, doc in docs.items():
        m = TOPIC_RE.match(topic)
        assert m, f"bad discovery topic {topic}"
        component = m["component"]
        assert component in COMPONENTS, f"unexpected component {component}"
        kinds[component] = kinds.get(component, 0) + 1
        spec = COMPONENTS[component]
        missing = spec["required"] - doc.keys()
        assert not missing, f"{topic}: missing required {sorted(missing)}"
        unknown = doc.keys() - spec["required"] - spec["allowed"] - COMMON_KEYS
        assert not unknown, f"{topic}: keys HA does not know: {sorted(unknown)}"
        assert doc["unique_id"] not in unique_ids
        unique_ids.add(doc["unique_id"])
        assert set(doc["device"]) <= DEVICE_KEYS and doc["device"]["identifiers"] == ["homesec"]
        assert set(doc["origin"]) <= ORIGIN_KEYS and doc["origin"]["name"]
        assert doc["availability"], f"{topic}: no availability"
        for entry in doc["availability"]:
            assert set(entry) <= AVAILABILITY_KEYS and "topic" in entry
            assert channel_of(entry["topic"]) == AVAILABILITY.name
        if component == "binary_sensor":
            assert doc["device_class"] in BINARY_SENSOR_CLASSES
        if component == "alarm_control_panel":
            assert set(doc["supported_features"]) <= ALARM_FEATURES
        json.dumps(doc)  # serialisable
    assert kinds == {
        "alarm_control_panel": 1,
        "switch": 3,
        "binary_sensor": 1 + len(CAMERAS),
        "camera": len(CAMERAS),
    }


def test_deploy_ha_topics_are_contract_topics(discovery: HomeAssistantDiscovery) -> None:
    docs = discovery.documents()
    alarm = docs["homeassistant/alarm_control_panel/homesec/alarm/config"]
    assert alarm["command_topic"] == SYSTEM_SET.topic(PREFIX, setting="armed")
    assert alarm["state_topic"] == SYSTEM_STATE.topic(PREFIX, setting="armed")
    for setting in ("notifications", "auto_arm", "training"):
        switch = docs[f"homeassistant/switch/homesec/{setting}/config"]
        assert switch["command_topic"] == SYSTEM_SET.topic(PREFIX, setting=setting)
        assert switch["state_topic"] == SYSTEM_STATE.topic(PREFIX, setting=setting)
    for camera in CAMERAS:
        motion = docs[f"homeassistant/binary_sensor/homesec/motion_{camera}/config"]
        assert motion["state_topic"] == MOTION_STATE.topic(PREFIX, camera=camera)
        cam = docs[f"homeassistant/camera/homesec/camera_{camera}/config"]
        assert cam["topic"] == SNAPSHOT.topic(PREFIX, camera=camera)
        assert cam["availability"][0]["topic"] == AVAILABILITY.topic(PREFIX, service="camera")
    home = docs["homeassistant/binary_sensor/homesec/anyone_home/config"]
    assert home["state_topic"] == PRESENCE.topic(PREFIX)
    assert home["availability"][0]["topic"] == AVAILABILITY.topic(PREFIX, service="presence")
    # a custom topic prefix flows into every topic
    bus = Bus(BrokerSettings(topic_prefix="house2"), "detector")
    other = HomeAssistantDiscovery(bus, ["front"], node_id="house2").documents()
    for topic, doc in other.items():
        assert "/house2/" in topic
        for key in ("command_topic", "state_topic", "topic"):
            if key in doc:
                assert doc[key].startswith("house2/"), doc[key]


def test_deploy_ha_templates_map_our_payloads(discovery: HomeAssistantDiscovery) -> None:
    docs = discovery.documents()
    alarm = docs["homeassistant/alarm_control_panel/homesec/alarm/config"]
    for value, state in ((True, "armed_away"), (False, "disarmed")):
        wire = SystemValue(value=value).model_dump_json()
        rendered = ha_render(alarm["value_template"], value=wire, value_json=json.loads(wire))
        assert rendered == state and rendered in ALARM_STATES
    for action, expected in (("ARM_AWAY", True), ("DISARM", False)):
        payload = ha_render(alarm["command_template"], action=action, code="")
        command = SYSTEM_SET.decode(payload.encode())
        assert isinstance(command, SetCommand)
        assert command.value is expected and command.source == "home-assistant"
    for setting in ("notifications", "auto_arm", "training"):
        switch = docs[f"homeassistant/switch/homesec/{setting}/config"]
        for value, word in ((True, "ON"), (False, "OFF")):
            wire = SystemValue(value=value).model_dump_json()
            assert ha_render(switch["value_template"], value_json=json.loads(wire)) == word
            assert switch[f"state_{word.lower()}"] == word
        for word, value in ((switch["payload_on"], True), (switch["payload_off"], False)):
            assert SYSTEM_SET.decode(word.encode()).value is value
    home = docs["homeassistant/binary_sensor/homesec/anyone_home/config"]
    for anyone, word in ((True, "ON"), (False, "OFF")):
        state = PresenceState(
            anyone_home=anyone, people=[PersonPresence(name="alice", home=anyone)]
        )
        rendered = ha_render(home["value_template"], value_json=json.loads(state.model_dump_json()))
        assert rendered == home[f"payload_{word.lower()}"]
    for camera in CAMERAS:
        motion = docs[f"homeassistant/binary_sensor/homesec/motion_{camera}/config"]
        for word in ("ON", "OFF"):
            assert MOTION_STATE.decode(word.encode()) == OnOff(word)  # type: ignore[arg-type]
        assert (motion["payload_on"], motion["payload_off"]) == ("ON", "OFF")


def test_deploy_ha_rejects_bad_ids() -> None:
    bus = Bus(BrokerSettings(), "detector")
    with pytest.raises(ValueError, match="camera id"):
        HomeAssistantDiscovery(bus, ["front/../x"])
    with pytest.raises(ValueError, match="node_id"):
        HomeAssistantDiscovery(bus, ["front"], node_id="my home")


def test_deploy_ha_published_on_connect_and_on_ha_online(
    make_bus: Any, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    received: list[tuple[str, bytes, bool]] = []
    lock = threading.Lock()
    ha = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fake-ha", protocol=mqtt.MQTTv5)

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with lock:
            received.append((message.topic, bytes(message.payload), bool(message.retain)))

    ha.on_message = on_message
    ha.connect(broker_settings.host, broker_settings.port)
    ha.subscribe("homeassistant/+/+/+/config", qos=1)
    ha.loop_start()
    try:
        bus = make_bus("detector", start=False)
        discovery = HomeAssistantDiscovery(bus, ["front"])
        discovery.install()
        bus.start()
        expected = discovery.documents()
        wait_until(lambda: len(received) >= len(expected), 15)
        with lock:
            first = {t: json.loads(p) for t, p, _ in received}
        assert first == expected
        # Home Assistant restarts: its birth message triggers a re-publish
        ha.publish("homeassistant/status", b"online", qos=1).wait_for_publish(10)
        wait_until(lambda: len(received) >= 2 * len(expected), 15)
        assert discovery.published >= 2
        # "offline" does not
        count = discovery.published
        ha.publish("homeassistant/status", b"offline", qos=1).wait_for_publish(10)
        ha.publish("homeassistant/status", b"online", qos=1).wait_for_publish(10)
        wait_until(lambda: discovery.published == count + 1, 15)
        # retained: a client connecting later still gets every config
        late: list[str] = []
        sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="late-ha", protocol=mqtt.MQTTv5)
        sub.on_message = lambda c, u, m: late.append(m.topic) if m.retain else None
        sub.connect(broker_settings.host, broker_settings.port)
        sub.subscribe("homeassistant/#", qos=1)
        sub.loop_start()
        try:
            wait_until(lambda: set(late) >= set(expected), 15)
        finally:
            sub.disconnect()
            sub.loop_stop()
        # a camera seen at run time is announced once, and is part of later re-publishes
        assert discovery.add_camera("garage") is True
        assert discovery.add_camera("garage") is False
        garage = "homeassistant/camera/homesec/camera_garage/config"
        wait_until(lambda: any(t == garage for t, _, _ in received), 15)
        assert garage in discovery.documents()
        with pytest.raises(ValueError):
            discovery.add_camera("../etc")
        # removing a camera clears its configs and drops it from later re-publishes
        discovery.remove_camera("front")
        cleared = "homeassistant/binary_sensor/homesec/motion_front/config"
        wait_until(lambda: any(t == cleared and p == b"" for t, p, _ in received), 15)
        assert cleared not in discovery.documents()
    finally:
        ha.disconnect()
        ha.loop_stop()

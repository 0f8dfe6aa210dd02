"""Home Assistant MQTT discovery: documents checked against the keys HA's MQTT platforms accept,
templates rendered with Jinja2 against real contract payloads, and publishing over a real broker.

Key tables follow Home Assistant's MQTT integration (the voluptuous schemas of
homeassistant/components/mqtt/{alarm_control_panel,binary_sensor,switch,camera,event,image,
button,number,select,sensor}.py, late 2026) and ../shared/docs/conventions.md. Home Assistant
itself needs Python 3.13 and far more than CI's time, so it is not installed here.
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
import yaml
from deploy_support import REPO, acl_allows
from paho.mqtt.enums import CallbackAPIVersion

from homesec.bus import Bus
from homesec.codes import CodeSettings
from homesec.contract import (
    ALARM_SET,
    ALARM_STATE,
    ALERT_SNAPSHOT,
    AVAILABILITY,
    CHANNELS,
    MOTION_EVENTS,
    MOTION_STATE,
    PRESENCE,
    PTZ_COMMAND,
    PTZ_STATE,
    SERVICE_STATUS,
    SERVICES,
    SNAPSHOT,
    SNAPSHOT_REQUEST,
    SYSTEM_SET,
    SYSTEM_STATE,
    UPLOADER_STATUS,
    AlarmCommand,
    AlarmMode,
    AlarmState,
    AlarmStatus,
    AlertDecision,
    EventType,
    MotionEvent,
    OnOff,
    PersonPresence,
    PresenceState,
    PtzState,
    ServiceStatus,
    SystemValue,
    UploaderStatus,
)
from homesec.homeassistant import HomeAssistantDiscovery
from homesec.settings import BrokerSettings
from homesec_presence.settings import PresenceSettings
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
    # homeassistant/components/mqtt/event.py: MQTT_RO_SCHEMA + device_class, event_types
    "event": {"required": {"state_topic", "event_types"}, "allowed": {"device_class", "value_template"}},
    # image.py: image_topic or url_topic (exclusive); content_type only with image_topic
    "image": {"required": set(), "allowed": {"content_type", "image_encoding", "image_topic", "url_template", "url_topic"}},
    # button.py
    "button": {"required": {"command_topic"}, "allowed": {"command_template", "device_class", "payload_press", "retain"}},
    # number.py: MQTT_RW_SCHEMA + ...
    "number": {
        "required": {"command_topic"},
        "allowed": {"command_template", "device_class", "max", "min", "mode", "optimistic", "payload_reset", "retain", "state_topic", "step", "unit_of_measurement", "value_template"},
    },
    # select.py: MQTT_RW_SCHEMA + options (required)
    "select": {
        "required": {"command_topic", "options"},
        "allowed": {"command_template", "optimistic", "retain", "state_topic", "value_template"},
    },
    # sensor.py: MQTT_RO_SCHEMA + ...
    "sensor": {
        "required": {"state_topic"},
        "allowed": {"device_class", "expire_after", "force_update", "last_reset_value_template", "options", "suggested_display_precision", "state_class", "unit_of_measurement", "value_template"},
    },
}  # fmt: skip
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
EVENT_CLASSES = {"button", "doorbell", "motion"}
SENSOR_STATE_CLASSES = {"measurement", "total", "total_increasing"}
ENTITY_CATEGORIES = {"config", "diagnostic"}
NUMBER_MODES = {"auto", "box", "slider"}
TOPIC_RE = re.compile(
    r"^homeassistant/(?P<component>[a-z_]+)/(?P<node>[A-Za-z0-9_-]+)/(?P<object>[A-Za-z0-9_-]+)/config$"
)
PREFIX = "homesec"
CAMERAS = ["front", "back-yard"]
ALARM_TOPIC = "homeassistant/alarm_control_panel/homesec/alarm/config"


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
    found = HomeAssistantDiscovery(bus, CAMERAS)
    found.people = ("alice", "bob")  # as if presence/home had named them
    found.ptz = {"front": ("door", "gate")}  # as if ptz/front/state had been seen
    return found


def check_document(topic: str, doc: dict[str, Any]) -> str:
    """Assert ``doc`` passes the key tables of its component; returns the component."""
    m = TOPIC_RE.match(topic)
    assert m, f"bad discovery topic {topic}"
    component = m["component"]
    assert component in COMPONENTS, f"unexpected component {component}"
    spec = COMPONENTS[component]
    missing = spec["required"] - doc.keys()
    assert not missing, f"{topic}: missing required {sorted(missing)}"
    unknown = doc.keys() - spec["required"] - spec["allowed"] - COMMON_KEYS
    assert not unknown, f"{topic}: keys HA does not know: {sorted(unknown)}"
    assert set(doc["device"]) <= DEVICE_KEYS and doc["device"]["identifiers"] == ["homesec"]
    assert set(doc["origin"]) <= ORIGIN_KEYS and doc["origin"]["name"]
    assert doc["availability"], f"{topic}: no availability"
    for entry in doc["availability"]:
        assert set(entry) <= AVAILABILITY_KEYS and "topic" in entry
        assert channel_of(entry["topic"]) == AVAILABILITY.name
    if "entity_category" in doc:
        assert doc["entity_category"] in ENTITY_CATEGORIES
    if component == "binary_sensor":
        assert doc["device_class"] in BINARY_SENSOR_CLASSES
    if component == "alarm_control_panel":
        assert set(doc["supported_features"]) <= ALARM_FEATURES
        if "code" in doc:  # a fixed code would be validated (and readable) in HA: never
            assert doc["code"] in ("REMOTE_CODE", "REMOTE_CODE_TEXT")
    if component == "event":
        assert doc["device_class"] in EVENT_CLASSES and doc["event_types"]
    if component == "image":
        assert ("image_topic" in doc) != ("url_topic" in doc)
        assert "content_type" not in doc or "url_topic" not in doc
    if component == "number":
        assert doc["min"] < doc["max"] and doc["mode"] in NUMBER_MODES
    if component == "select":
        assert isinstance(doc["options"], list) and doc["options"]
    if component == "sensor":
        if "state_class" in doc:
            assert doc["state_class"] in SENSOR_STATE_CLASSES
        if "options" in doc:  # only enum sensors may list options
            assert doc["device_class"] == "enum" and doc["options"]
    for key in ("state_topic", "command_topic", "topic", "image_topic", "json_attributes_topic"):
        if key in doc:
            assert channel_of(doc[key]) is not None, (
                f"{topic}: {key} {doc[key]} not a contract topic"
            )
    json.dumps(doc)  # serialisable
    return component


def test_deploy_ha_documents_use_only_keys_home_assistant_accepts(
    discovery: HomeAssistantDiscovery,
) -> None:
    docs = discovery.documents()
    kinds: dict[str, int] = {}
    unique_ids = set()
    for topic, doc in docs.items():
        component = check_document(topic, doc)
        kinds[component] = kinds.get(component, 0) + 1
        assert doc["unique_id"] not in unique_ids
        unique_ids.add(doc["unique_id"])
    assert kinds == {
        "alarm_control_panel": 1,
        "switch": 3,
        "binary_sensor": 1 + len(CAMERAS) + 2,  # somebody home, motion, each person
        "camera": len(CAMERAS),
        "event": len(CAMERAS),
        "image": len(CAMERAS),
        "button": len(CAMERAS),
        "number": 2,  # pan and tilt of the one head
        "select": 1,
        "sensor": 1 + len(SERVICES) + 1,  # changed by, each service's status, backlog
    }
    # with a code the panel asks for it (numeric: a keypad) and homesec checks it
    bus = Bus(BrokerSettings(), "detector")
    for code, kind in (("1234", "REMOTE_CODE"), ("open sesame", "REMOTE_CODE_TEXT")):
        codes = CodeSettings(code=code, arm_required=True)
        alarm = HomeAssistantDiscovery(bus, [], codes=codes).documents()[ALARM_TOPIC]
        check_document(ALARM_TOPIC, alarm)
        assert alarm["code"] == kind and code not in json.dumps(alarm)
        assert alarm["code_arm_required"] and alarm["code_disarm_required"]
        assert alarm["code_trigger_required"] is False
    plain = docs[ALARM_TOPIC]
    assert "code" not in plain and not plain["code_arm_required"]
    assert not plain["code_disarm_required"]


def test_deploy_ha_topics_are_contract_topics(discovery: HomeAssistantDiscovery) -> None:
    docs = discovery.documents()
    alarm = docs[ALARM_TOPIC]
    assert alarm["command_topic"] == ALARM_SET.topic(PREFIX)
    assert alarm["state_topic"] == ALARM_STATE.topic(PREFIX)
    assert set(alarm["supported_features"]) == {"arm_home", "arm_away", "arm_night", "trigger"}
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
        image = docs[f"homeassistant/image/homesec/last_alert_{camera}/config"]
        assert image["image_topic"] == ALERT_SNAPSHOT.topic(PREFIX, camera=camera)
        button = docs[f"homeassistant/button/homesec/snapshot_{camera}/config"]
        assert button["command_topic"] == SNAPSHOT_REQUEST.topic(PREFIX, camera=camera)
        event = docs[f"homeassistant/event/homesec/events_{camera}/config"]
        assert event["state_topic"] == MOTION_EVENTS.topic(PREFIX)
    for axis in ("pan", "tilt"):
        number = docs[f"homeassistant/number/homesec/{axis}_front/config"]
        assert number["command_topic"] == PTZ_COMMAND.topic(PREFIX, camera="front")
        assert number["state_topic"] == PTZ_STATE.topic(PREFIX, camera="front")
    select = docs["homeassistant/select/homesec/preset_front/config"]
    assert select["options"] == ["home", "door", "gate"]
    for service in SERVICES:
        object_id = f"status_{service.replace('-', '_')}"
        sensor = docs[f"homeassistant/sensor/homesec/{object_id}/config"]
        assert sensor["state_topic"] == SERVICE_STATUS.topic(PREFIX, service=service)
        assert sensor["entity_category"] == "diagnostic"
    backlog = docs["homeassistant/sensor/homesec/uploader_backlog/config"]
    assert backlog["state_topic"] == UPLOADER_STATUS.topic(PREFIX)
    home = docs["homeassistant/binary_sensor/homesec/anyone_home/config"]
    assert home["state_topic"] == PRESENCE.topic(PREFIX)
    assert home["availability"][0]["topic"] == AVAILABILITY.topic(PREFIX, service="presence")
    # a custom topic prefix flows into every topic
    bus = Bus(BrokerSettings(topic_prefix="house2"), "detector")
    other = HomeAssistantDiscovery(bus, ["front"], node_id="house2").documents()
    for topic, doc in other.items():
        assert "/house2/" in topic
        for key in ("command_topic", "state_topic", "topic", "image_topic"):
            if key in doc:
                assert doc[key].startswith("house2/"), doc[key]


def test_deploy_ha_templates_map_our_payloads(discovery: HomeAssistantDiscovery) -> None:
    docs = discovery.documents()
    alarm = docs[ALARM_TOPIC]
    for state in AlarmState:
        status = AlarmStatus(state=state, mode=AlarmMode.AWAY, changed_by="slack:U1")
        wire = json.loads(status.model_dump_json())
        rendered = ha_render(alarm["value_template"], value_json=wire)
        assert rendered == state.value and rendered in ALARM_STATES
        attributes = json.loads(ha_render(alarm["json_attributes_template"], value_json=wire))
        assert attributes["last_changed_by"] == "slack:U1" and "changed_by" not in attributes
    for action in ("ARM_AWAY", "ARM_HOME", "ARM_NIGHT", "DISARM", "TRIGGER"):
        for code in (None, "1234"):
            payload = ha_render(alarm["command_template"], action=action, code=code)
            command = ALARM_SET.decode(payload.encode())
            assert isinstance(command, AlarmCommand)
            assert command.action.value == action and command.source == "home-assistant"
            assert (command.code.get_secret_value() if command.code else None) == code
    changed_by = docs["homeassistant/sensor/homesec/alarm_changed_by/config"]
    wire = json.loads(AlarmStatus(state=AlarmState.DISARMED, changed_by="ha").model_dump_json())
    assert ha_render(changed_by["value_template"], value_json=wire) == "ha"
    for setting in ("notifications", "auto_arm", "training"):
        switch = docs[f"homeassistant/switch/homesec/{setting}/config"]
        for value, word in ((True, "ON"), (False, "OFF")):
            wire = SystemValue(value=value).model_dump_json()
            assert ha_render(switch["value_template"], value_json=json.loads(wire)) == word
            assert switch[f"state_{word.lower()}"] == word
        for word, value in ((switch["payload_on"], True), (switch["payload_off"], False)):
            command = SYSTEM_SET.decode(ha_render(switch["command_template"], value=word).encode())
            assert command.value is value and command.source == "home-assistant"
    home = docs["homeassistant/binary_sensor/homesec/anyone_home/config"]
    people = [PersonPresence(name="alice", home=True), PersonPresence(name="bob", home=False)]
    for anyone, word in ((True, "ON"), (False, "OFF")):
        state = PresenceState(anyone_home=anyone, people=people)
        rendered = ha_render(home["value_template"], value_json=json.loads(state.model_dump_json()))
        assert rendered == home[f"payload_{word.lower()}"]
    wire = json.loads(PresenceState(anyone_home=True, people=people).model_dump_json())
    for name, word in (("alice", "ON"), ("bob", "OFF")):
        person = docs[f"homeassistant/binary_sensor/homesec/home_{name}/config"]
        assert ha_render(person["value_template"], value_json=wire) == word
    gone = json.loads(PresenceState(anyone_home=False).model_dump_json())
    alice = docs["homeassistant/binary_sensor/homesec/home_alice/config"]
    assert ha_render(alice["value_template"], value_json=gone) == "OFF"
    for camera in CAMERAS:
        motion = docs[f"homeassistant/binary_sensor/homesec/motion_{camera}/config"]
        for word in ("ON", "OFF"):
            assert MOTION_STATE.decode(word.encode()) == OnOff(word)  # type: ignore[arg-type]
        assert (motion["payload_on"], motion["payload_off"]) == ("ON", "OFF")
        # the event entity: this camera's events only, with HA's event_type key
        event = docs[f"homeassistant/event/homesec/events_{camera}/config"]
        for source_camera in CAMERAS:
            msg = json.loads(motion_event(source_camera).model_dump_json())
            rendered = ha_render(event["value_template"], value_json=msg)
            if source_camera != camera:
                assert rendered == ""  # HA ignores an empty rendering
                continue
            fired = json.loads(rendered)
            assert fired["event_type"] == "start" and fired["event_type"] in event["event_types"]
            assert fired["reason"] == "armed, person confirmed (0.84)"
            assert fired["person_score"] == 0.84 and fired["alert"] is True
        button = docs[f"homeassistant/button/homesec/snapshot_{camera}/config"]
        request = SNAPSHOT_REQUEST.decode(button["payload_press"].encode())
        assert request.requested_by == "home-assistant"
    ptz = json.loads(PtzState(pan=30, tilt=-10, target_pan=30, target_tilt=-10).model_dump_json())
    for axis, expected in (("pan", 30.0), ("tilt", -10.0)):
        number = docs[f"homeassistant/number/homesec/{axis}_front/config"]
        assert float(ha_render(number["value_template"], value_json=ptz)) == expected
        command = PTZ_COMMAND.decode(ha_render(number["command_template"], value=25).encode())
        assert getattr(command, axis) == 25 and command.source == "home-assistant"
    select = docs["homeassistant/select/homesec/preset_front/config"]
    for option in select["options"]:
        command = PTZ_COMMAND.decode(ha_render(select["command_template"], value=option).encode())
        assert command.home is True if option == "home" else command.preset == option
    for service in SERVICES:
        sensor = docs[f"homeassistant/sensor/homesec/status_{service.replace('-', '_')}/config"]
        wire = json.loads(ServiceStatus(service=service, state="degraded").model_dump_json())
        assert ha_render(sensor["value_template"], value_json=wire) in sensor["options"]
    backlog = docs["homeassistant/sensor/homesec/uploader_backlog/config"]
    status = UploaderStatus(mode="s3", destination="s3://b", pending=7, uploaded_objects_total=1)
    wire = json.loads(status.model_dump_json())
    assert ha_render(backlog["value_template"], value_json=wire) == "7"


def motion_event(camera: str) -> MotionEvent:
    return MotionEvent(
        type=EventType.START,
        event_id=f"{camera}-20261125-213000-0001",
        camera=camera,
        started_at=1764100000.0,
        frame_seq=1,
        frame_captured_at=1764100000.0,
        person_score=0.84,
        decision=AlertDecision(alert=True, reason="armed, person confirmed (0.84)", alarm=True),
    )


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


def test_deploy_ha_people_and_heads_are_announced_when_seen(make_bus: Any) -> None:
    """Per-person presence and the PTZ controls appear once presence/home names the people and
    a head publishes its state; new presets re-announce the select."""
    seen: list[str] = []
    ha = make_bus("fake-ha")
    ha.subscribe_raw("homeassistant/#", lambda topic, _payload: seen.append(topic))
    bus = make_bus("detector", start=False)
    discovery = HomeAssistantDiscovery(bus, ["front"])
    discovery.install()
    bus.start()
    assert bus.wait_connected(10)
    people = [PersonPresence(name="alice", home=True), PersonPresence(name="bob", home=False)]
    make_bus("presence").publish(PRESENCE, PresenceState(anyone_home=True, people=people))
    alice = "homeassistant/binary_sensor/homesec/home_alice/config"
    wait_until(lambda: alice in seen and alice.replace("alice", "bob") in seen)
    head = make_bus("ptz")
    state = PtzState(pan=0, tilt=0, target_pan=0, target_tilt=0, presets=["door"])
    head.publish(PTZ_STATE, state, camera="front")
    select = "homeassistant/select/homesec/preset_front/config"
    wait_until(lambda: select in seen and "homeassistant/number/homesec/pan_front/config" in seen)
    assert discovery.ptz == {"front": ("door",)}
    head.publish(PTZ_STATE, state.model_copy(update={"presets": ["door", "gate"]}), camera="front")
    wait_until(lambda: seen.count(select) >= 2)
    assert discovery.documents()[select]["options"] == ["home", "door", "gate"]


def test_deploy_ha_presence_yaml_matches_the_presence_settings_and_acl() -> None:
    """docs/home-assistant.md's statestream config and automation publish exactly the topics and
    payloads the presence example reads, and the presence user may read them."""
    doc = (REPO / "docs" / "home-assistant.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", doc, re.DOTALL)
    stream = next(yaml.safe_load(b)["mqtt_statestream"] for b in blocks if "statestream:" in b)
    automation = next(yaml.safe_load(b)["automation"][0] for b in blocks if "automation:" in b)
    entities = stream["include"]["entities"]
    assert automation["triggers"][0]["entity_id"] == entities
    publish = automation["actions"][0]
    assert publish["action"] == "mqtt.publish" and publish["data"]["retain"] is True
    (env,) = [line for line in doc.splitlines() if line.startswith("HOMESEC_PRESENCE_MQTT__")]
    trackers = json.loads(env.split("=", 1)[1])
    settings = PresenceSettings(backend="mqtt", mqtt={"trackers": trackers})
    topics = set(settings.mqtt.trackers.values())
    for entity in entities:
        # statestream: <base_topic>/<entity_id with / for .>/state (its source, late 2026)
        streamed = f"{stream['base_topic']}/{entity.replace('.', '/')}/state"
        data = publish["data"]
        trigger = {"entity_id": entity, "to_state": {"state": "not_home"}}
        assert ha_render(data["topic"], trigger=trigger) == streamed
        assert ha_render(data["payload"], trigger=trigger) == "not_home"
        assert streamed in topics
        assert acl_allows("presence", streamed, "read")

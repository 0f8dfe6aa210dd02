"""MQTT fuzzing of every subscribed topic of every service, against the whole stack as
``homesec run`` starts it (private Mosquitto, fake Slack, moto S3).

Each batch publishes hypothesis-generated messages (junk, near-misses, odd topic levels and a
share of valid payloads), then checks that every service still runs with the same PID, is
``online``, counted exactly the messages the contract rejects on its own subscriptions, and had
no handler exception. The last test proves the fuzzing wedged nothing: a ``system/armed/set``
is applied and a PTZ command moves the head.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from fuzz_mqtt_tools import (
    CAMERA,
    HA_STATUS_TOPIC,
    NAMES,
    PREFIX,
    TESTS,
    TRACKER_TOPIC,
    Baseline,
    Publisher,
    load_system_conftest,
)
from fuzz_payloads import (
    SPECIAL_PAYLOADS,
    Message,
    fuzz_settings,
    json_values,
    level,
    mqtt_text,
    payloads,
)
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from homesec.broker import MosquittoProcess
from homesec.contract import (
    ALARM_RESULT,
    ALARM_SET,
    ALARM_STATE,
    AVAILABILITY,
    FRAMES,
    MAX_JPEG_BYTES,
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
    UPLOAD_REQUEST,
    UPLOADER_STATUS,
    Channel,
    PtzCommand,
    PtzState,
    SystemValue,
)
from support import Collector, wait_until

system = load_system_conftest()

INVALID = "homesec_mqtt_invalid_messages_total"
HANDLER_ERRORS = "homesec_mqtt_handler_errors_total"
SETTINGS = ("armed", "notifications", "auto_arm", "training")


# ---- the stack, once for the module ------------------------------------------------------------


class Fuzzed:
    def __init__(self, stack: Any, broker: MosquittoProcess) -> None:
        self.stack = stack
        self.broker = broker
        self.pids = {name: stack.service_pid(name) for name in NAMES}
        self.publisher = Publisher(broker.host, broker.port)

    def baseline(self) -> Baseline:
        return Baseline(
            invalid={n: self.stack.metric(n, INVALID) for n in NAMES},
            handler_errors={n: self.stack.metric(n, HANDLER_ERRORS) for n in NAMES},
        )

    def send(self, base: Baseline, msg: Message) -> None:
        base.add(msg)
        self.publisher.send(msg)

    def availability(self, timeout: float = 10) -> dict[str, str]:
        """The retained availability of every service, read by a fresh subscriber."""
        seen: dict[str, str] = {}
        lock = threading.Lock()

        def on_message(client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
            if message.retain:
                with lock:
                    seen[message.topic.split("/")[-2]] = message.payload.decode()

        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.on_message = on_message
        client.connect(self.broker.host, self.broker.port)
        client.subscribe(AVAILABILITY.pattern(PREFIX), qos=1)
        client.loop_start()
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and not set(NAMES) <= set(seen):
                time.sleep(0.05)
        finally:
            client.disconnect()
            client.loop_stop()
        return seen

    def check(self, base: Baseline) -> None:
        """Same PIDs, online, exact reject counts, no handler exception."""
        for name in NAMES:
            assert self.stack.proc.poll() is None, "the runner died"
            os.kill(self.pids[name], 0)  # still exists
            assert self.stack.service_pid(name) == self.pids[name], f"{name} was restarted"
        avail = self.availability()
        assert all(avail.get(n) == "online" for n in NAMES), avail
        for name in NAMES:
            target = base.invalid[name] + base.expected[name]
            wait_until(lambda n=name, t=target: self.stack.metric(n, INVALID) >= t, 20)
        time.sleep(0.5)  # anything counted twice would show now
        for name in NAMES:
            target = base.invalid[name] + base.expected[name]
            assert self.stack.metric(name, INVALID) == target, name
            assert self.stack.metric(name, HANDLER_ERRORS) == base.handler_errors[name], (
                f"{name} handler raised; see stack.log"
            )


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    tmp = tmp_path_factory.mktemp("fuzz-mqtt")
    broker = MosquittoProcess(
        data_dir=tmp / "mosquitto", repo_config=TESTS.parent / "mosquitto" / "mosquitto.dev.conf"
    )
    broker.start()
    slack = system.FakeSlack().start()
    s3 = system.S3()
    stack = system.Stack(tmp, broker, slack, s3)
    try:
        stack.start(
            HOMESEC_CAMERA_FPS="2",
            HOMESEC_PRESENCE_BACKEND="mqtt",
            HOMESEC_PRESENCE_MQTT__TRACKERS=json.dumps({"alice": TRACKER_TOPIC}),
            HOMESEC_PRESENCE_POLL_SECONDS="1",
            # away at the first poll that sees "not_home": a fuzzed "home" that a poll happened
            # to catch must not keep alice home for the default 10-minute grace period
            HOMESEC_PRESENCE_AWAY_GRACE_SECONDS="0",
        )
        fz = Fuzzed(stack, broker)
        wait_until(lambda: all(fz.availability(3).get(n) == "online" for n in NAMES), 60)
        yield fz
        fz.publisher.close()
    finally:
        stack.stop()
        print(stack.log()[-6000:])
        s3.stop()
        slack.stop()
        broker.kill()


# ---- strategies ----------------------------------------------------------------------------------

LEVELS = {"camera": (CAMERA,), "setting": SETTINGS, "service": NAMES}


def topic_for(channel: Channel[Any]) -> st.SearchStrategy[str]:
    names = re.findall(r"\{([a-z_]+)\}", channel.template)
    if not names:
        return st.just(f"{PREFIX}/{channel.template}")
    return st.fixed_dictionaries({n: level(LEVELS[n]) for n in names}).map(
        lambda params: f"{PREFIX}/{channel.template.format(**params)}"
    )


def messages(channels: tuple[Channel[Any], ...]) -> st.SearchStrategy[Message]:
    return st.sampled_from(channels).flatmap(
        lambda ch: st.builds(Message, topic_for(ch), payloads(ch))
    )


def tiny_jpeg() -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))
    assert ok
    return buf.tobytes()


JPEG = tiny_jpeg()
FRAME_PROPS = {
    "camera": CAMERA,
    "seq": "1",
    "captured_at": "1764100000.5",
    "width": "64",
    "height": "48",
}
odd_prop_values = st.sampled_from(
    ["", "-1", "nan", "inf", "1e999", "9" * 400, "0", "16385", "front/..", "x" * 5000]
) | mqtt_text(30)


@st.composite
def frame_messages(draw: st.DrawFn) -> Message:
    channel = draw(st.sampled_from((FRAMES, SNAPSHOT)))
    topic = draw(topic_for(channel))
    props = dict(FRAME_PROPS)
    props["seq"] = str(draw(st.integers(0, 10**6)))
    for key in draw(st.sets(st.sampled_from(sorted(FRAME_PROPS)), max_size=2)):
        del props[key]
    props.update(
        draw(st.dictionaries(st.sampled_from(sorted(FRAME_PROPS)), odd_prop_values, max_size=2))
    )
    props.update(draw(st.dictionaries(mqtt_text(8, min_size=1), mqtt_text(8), max_size=2)))
    payload = draw(
        st.one_of(
            st.just(JPEG),
            st.just(JPEG),
            st.binary(max_size=4000).map(lambda b: b"\xff\xd8" + b),
            st.binary(max_size=4000),
            st.sampled_from(SPECIAL_PAYLOADS),
        )
    )
    return Message(topic, payload, tuple(props.items()))


# ---- batches -------------------------------------------------------------------------------------

COMMAND_CHANNELS = (
    SNAPSHOT_REQUEST,
    SYSTEM_SET,
    ALARM_SET,
    PTZ_COMMAND,
    TRAINING_LABELS,
    UPLOAD_REQUEST,
)
STATE_CHANNELS = (
    SYSTEM_STATE,
    ALARM_STATE,
    ALARM_RESULT,
    PRESENCE,
    PTZ_STATE,
    AVAILABILITY,
    SERVICE_STATUS,
    UPLOADER_STATUS,
    MOTION_EVENTS,
)


def test_fuzz_commands_and_requests(fuzzed: Fuzzed) -> None:
    """camera: snapshot request; detector: system/<setting>/set; ptz: command;
    uploader: training labels and run requests."""
    base = fuzzed.baseline()

    @fuzz_settings(150)
    @given(messages(COMMAND_CHANNELS))
    def fuzz(msg: Message) -> None:
        fuzzed.send(base, msg)

    fuzz()
    assert base.expected["detector"] and base.expected["ptz"] and base.expected["uploader"]
    assert base.expected["camera"]
    fuzzed.check(base)


def test_fuzz_state_and_status_topics(fuzzed: Fuzzed) -> None:
    """gateway: availability, status, presence, ptz state, uploader state, motion events and
    system state; presence: system state and its own presence state; detector: system state;
    ptz: its own state (restore)."""
    base = fuzzed.baseline()

    @fuzz_settings(200)
    @given(messages(STATE_CHANNELS))
    def fuzz(msg: Message) -> None:
        fuzzed.send(base, msg)

    fuzz()
    assert base.expected["slack-gateway"] and base.expected["presence"]
    fuzzed.check(base)


def test_fuzz_frames_and_snapshots(fuzzed: Fuzzed) -> None:
    """detector: frames (JPEG + user properties); gateway: snapshots. Then frames of a few MB
    that are no JPEG, one above the contract's 8 MB limit and one above the broker's 10 MB
    packet limit (the broker disconnects that publisher; the services do not notice)."""
    base = fuzzed.baseline()

    @fuzz_settings(80)
    @given(frame_messages())
    def fuzz(msg: Message) -> None:
        fuzzed.send(base, msg)

    fuzz()
    frames_topic = FRAMES.topic(PREFIX, camera=CAMERA)
    props = tuple(FRAME_PROPS.items())
    fuzzed.send(base, Message(frames_topic, os.urandom(3 * 1024 * 1024), props))
    fuzzed.send(base, Message(frames_topic, b"\xff\xd8" + os.urandom(3 * 1024 * 1024), props))
    fuzzed.send(base, Message(frames_topic, b"\xff\xd8" + bytes(MAX_JPEG_BYTES), props))
    assert fuzzed.publisher.send_oversized(frames_topic, 11 * 1024 * 1024)
    assert base.expected["detector"] >= 2
    fuzzed.check(base)


def test_fuzz_raw_topics(fuzzed: Fuzzed) -> None:
    """Topics outside the contract: ``homeassistant/status`` (detector re-publishes discovery on
    ``online``) and the presence service's MQTT device tracker. Nothing is counted there; the
    services must only survive, and the tracker must still be read afterwards."""
    base = fuzzed.baseline()
    junk = st.one_of(
        st.sampled_from(SPECIAL_PAYLOADS),
        st.binary(max_size=2000),
        st.sampled_from([b"online", b"offline", b"home", b"not_home", b"HOME", b""]),
        st.builds(lambda v: json.dumps(v).encode(), json_values),
    )

    @fuzz_settings(60)
    @given(st.sampled_from((HA_STATUS_TOPIC, TRACKER_TOPIC)), junk)
    def fuzz(topic: str, payload: bytes) -> None:
        fuzzed.send(base, Message(topic, payload))

    fuzz()
    fuzzed.check(base)

    # The tracker is still read: alice's phone reports home, then away, and presence follows.
    fuzzed.publisher.send(Message(TRACKER_TOPIC, b"home"))
    wait_until(lambda: fuzzed.stack.metric("presence", "homesec_presence_people_home") == 1, 20)
    fuzzed.publisher.send(Message(TRACKER_TOPIC, b"not_home"))
    wait_until(lambda: fuzzed.stack.metric("presence", "homesec_presence_people_home") == 0, 20)


def test_system_still_works_after_fuzzing(fuzzed: Fuzzed, make_bus_for: Any) -> None:
    """A valid arm command is applied and a PTZ command moves the head."""
    bus = make_bus_for(fuzzed.broker)
    states: Collector[SystemValue] = Collector()
    heads: Collector[PtzState] = Collector()
    bus.subscribe(SYSTEM_STATE, states, setting="armed")
    bus.subscribe(PTZ_STATE, heads, camera=CAMERA)
    bus.start()
    assert bus.wait_connected(10)
    tag = uuid.uuid4().hex[:8]
    fuzzed.publisher.send(fuzzed.publisher.set_armed(True, f"fuzz-on-{tag}"))
    fuzzed.publisher.send(fuzzed.publisher.set_armed(False, f"fuzz-off-{tag}"))
    wait_until(
        lambda: any(
            s.changed_by == f"fuzz-off-{tag}" and not s.value and not m.retained
            for m in states.items
            for s in [m.payload]
        ),
        20,
    )
    request_id = f"fuzz-{tag}"
    body = PtzCommand(pan=-33, tilt=21, request_id=request_id).model_dump_json().encode()
    fuzzed.publisher.send(Message(PTZ_COMMAND.topic(PREFIX, camera=CAMERA), body))
    final = wait_until(
        lambda: [s for s in heads.payloads if s.last_request_id == request_id and not s.moving],
        20,
    )[-1]
    assert (final.pan, final.tilt) == (-33, 21)
    fuzzed.check(fuzzed.baseline())


@pytest.fixture
def make_bus_for() -> Iterator[Any]:
    from homesec.bus import Bus
    from homesec.metrics import ServiceMetrics
    from homesec.settings import BrokerSettings

    buses: list[Bus] = []

    def factory(broker: MosquittoProcess) -> Bus:
        settings = BrokerSettings(host=broker.host, port=broker.port)
        bus = Bus(settings, "fuzz-watcher", ServiceMetrics("fuzz-watcher"), persistent=False)
        buses.append(bus)
        return bus

    yield factory
    for bus in buses:
        bus.stop(timeout=1)

"""The bus against a real Mosquitto: typed pub/sub, availability, invalid input, reconnects."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from homesec.broker import MosquittoProcess
from homesec.contract import (
    AVAILABILITY,
    FRAMES,
    PTZ_COMMAND,
    TRAINING_LABELS,
    Availability,
    Frame,
    Label,
    PtzCommand,
    TrainingLabel,
)
from homesec.settings import BrokerSettings
from support import Collector, wait_until

CHILD = Path(__file__).with_name("bus_child.py")


def raw_client(settings: BrokerSettings) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(settings.host, settings.port)
    client.loop_start()
    return client


def label(n: int) -> TrainingLabel:
    return TrainingLabel(
        event_id=f"ev-{n}", camera="front", label=Label.OCCUPIED, labelled_by="slack:U1"
    )


def test_typed_round_trip_with_topic_parameters(make_bus):
    sub, pub = make_bus("ptz"), make_bus("slack-gateway")
    got: Collector[PtzCommand] = Collector()
    assert sub.subscribe(PTZ_COMMAND, got).wait(10)
    pub.publish(PTZ_COMMAND, PtzCommand(pan=30, tilt=20), camera="front")
    (cmd,) = got.wait_for(1)
    assert (cmd.pan, cmd.tilt) == (30, 20)
    assert got.items[0].params == {"camera": "front"}
    assert got.items[0].topic == "homesec/ptz/front/command"


def test_frames_carry_metadata_in_user_properties(make_bus):
    sub, pub = make_bus("detector"), make_bus("camera")
    got: Collector[Frame] = Collector()
    assert sub.subscribe(FRAMES, got, camera="front").wait(10)
    jpeg = b"\xff\xd8" + b"x" * 100 + b"\xff\xd9"
    pub.publish(
        FRAMES,
        Frame(camera="front", seq=7, captured_at=123.5, width=640, height=480, jpeg=jpeg),
        camera="front",
    )
    (frame,) = got.wait_for(1)
    assert frame.seq == 7 and frame.captured_at == 123.5 and frame.jpeg == jpeg
    assert (frame.width, frame.height) == (640, 480)


def test_availability_online_then_offline_on_clean_stop(make_bus, broker_settings):
    watcher = make_bus("watcher")
    seen: Collector[Availability] = Collector()
    watcher.subscribe(AVAILABILITY, seen, service="ptz")
    svc = make_bus("ptz")
    wait_until(lambda: [p.root for p in seen.payloads][-1:] == ["online"])
    svc.stop()
    wait_until(lambda: [p.root for p in seen.payloads][-1:] == ["offline"])


def test_last_will_marks_a_crashed_service_offline(make_bus, broker_settings):
    watcher = make_bus("watcher")
    seen: Collector[Availability] = Collector()
    assert watcher.subscribe(AVAILABILITY, seen, service="camera").wait(10)
    crashed = subprocess.Popen(
        [sys.executable, str(CHILD), "online", broker_settings.host, str(broker_settings.port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: [p.root for p in seen.payloads][-1:] == ["online"])
        crashed.kill()  # no DISCONNECT: the broker sends the will
        wait_until(lambda: [p.root for p in seen.payloads][-1:] == ["offline"], timeout=15)
    finally:
        crashed.kill()
        crashed.wait(10)


def test_invalid_payloads_are_counted_and_skipped(make_bus, broker_settings):
    sub = make_bus("uploader")
    got: Collector[TrainingLabel] = Collector()
    assert sub.subscribe(TRAINING_LABELS, got).wait(10)
    raw = raw_client(broker_settings)
    topic = "homesec/training/labels"
    for junk in [
        b"{not json",
        b'{"event_id": "../../etc", "camera": "front", "label": "occupied", "labelled_by": "x"}',
        b"\x00\xff\xfe",
        b'{"event_id": "e1", "camera": "front", "label": "maybe", "labelled_by": "x"}',
        b"[]",
        b'{"event_id": "e1", "camera": "front", "label": "occupied", "labelled_by": "x", "extra": 1}',
    ]:
        raw.publish(topic, junk, qos=1).wait_for_publish(5)
    raw.publish(topic, label(1).model_dump_json(), qos=1).wait_for_publish(5)
    (ok,) = got.wait_for(1)
    assert ok.event_id == "ev-1"

    def invalid() -> float | None:
        return sub.metrics.registry.get_sample_value(
            "homesec_mqtt_invalid_messages_total", {"topic_class": "training_labels"}
        )

    wait_until(lambda: invalid() == 6)
    raw.loop_stop()
    raw.disconnect()


def test_handler_exception_does_not_stop_delivery(make_bus):
    sub, pub = make_bus("uploader"), make_bus("slack-gateway")
    got: list[str] = []

    def flaky(msg):
        if msg.payload.event_id == "ev-1":
            raise RuntimeError("boom")
        got.append(msg.payload.event_id)

    assert sub.subscribe(TRAINING_LABELS, flaky).wait(10)
    pub.publish(TRAINING_LABELS, label(1))
    pub.publish(TRAINING_LABELS, label(2))
    wait_until(lambda: got == ["ev-2"])  # not held up behind ev-1's retries
    errors = sub.metrics.registry.get_sample_value(
        "homesec_mqtt_handler_errors_total", {"topic_class": "training_labels"}
    )
    assert errors is not None and errors >= 1


def test_qos1_messages_published_while_consumer_down_are_delivered(make_bus):
    consumer = make_bus("uploader")
    got: Collector[TrainingLabel] = Collector()
    assert consumer.subscribe(TRAINING_LABELS, got).wait(10)
    consumer.stop()  # clean stop: the persistent session stays on the broker
    producer = make_bus("slack-gateway")
    for n in range(5):
        assert producer.publish_confirmed(TRAINING_LABELS, label(n))
    back = make_bus("uploader", start=False)
    again: Collector[TrainingLabel] = Collector()
    back.subscribe(TRAINING_LABELS, again)
    back.start()
    wait_until(lambda: [p.event_id for p in again.payloads] == [f"ev-{n}" for n in range(5)])


def test_reconnect_after_broker_kill_and_restart_loses_no_qos1(make_bus, broker: MosquittoProcess):
    consumer = make_bus("uploader")
    got: Collector[TrainingLabel] = Collector()
    consumer.subscribe(TRAINING_LABELS, got)
    producer = make_bus("slack-gateway")
    time.sleep(0.3)
    producer.publish_confirmed(TRAINING_LABELS, label(0))
    got.wait_for(1)
    # kill -9 loses what the broker had not saved yet; wait past its autosave (every 1-2 s in
    # the dev config) so the consumer's session is on disk, as it would be in a running home.
    time.sleep(2.5)
    broker.kill()  # kill -9
    wait_until(lambda: not consumer.connected and not producer.connected)
    # Published while the broker is down: paho queues QoS 1 and sends after reconnecting.
    for n in range(1, 4):
        producer.publish(TRAINING_LABELS, label(n))
    broker.start()
    assert consumer.wait_connected(15) and producer.wait_connected(15)
    wait_until(
        lambda: {p.event_id for p in got.payloads} >= {f"ev-{n}" for n in range(4)}, timeout=15
    )
    reconnects = consumer.metrics.registry.get_sample_value("homesec_mqtt_reconnects_total")
    assert reconnects is not None and reconnects >= 1


def test_qos1_sent_while_consumer_down_survives_broker_restart(make_bus, broker: MosquittoProcess):
    consumer = make_bus("ptz")
    assert consumer.subscribe(PTZ_COMMAND, lambda m: None).wait(10)
    consumer.stop()
    producer = make_bus("slack-gateway")
    assert producer.publish_confirmed(PTZ_COMMAND, PtzCommand(home=True), camera="front")
    broker.stop()  # graceful: mosquitto writes its persistence file
    broker.start()
    back = make_bus("ptz", start=False)
    got: Collector[PtzCommand] = Collector()
    back.subscribe(PTZ_COMMAND, got)  # before start: queued messages arrive right at connect
    back.start()
    (cmd,) = got.wait_for(1, timeout=15)
    assert cmd.home is True


def test_frames_are_dropped_not_queued_while_disconnected(make_bus, broker: MosquittoProcess):
    pub = make_bus("camera")
    broker.kill()
    wait_until(lambda: not pub.connected)
    frame = Frame(
        camera="front", seq=1, captured_at=1.0, width=1, height=1, jpeg=b"\xff\xd8\xff\xd9"
    )
    for _ in range(10):
        future = pub.publish(FRAMES, frame, camera="front")
        assert future.done() and not future.ok
    assert (
        pub.metrics.registry.get_sample_value(
            "homesec_mqtt_messages_dropped_total", {"topic_class": "frames"}
        )
        == 10
    )
    broker.start()

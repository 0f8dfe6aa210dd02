"""Delivery guarantees of the bus against a real Mosquitto, one class at a time:

* messages (QoS 1): acknowledged only after the handler succeeded; a failing handler is
  retried with backoff and dead-lettered after its last try; a crash before the PUBACK loses
  nothing (the broker redelivers; the publisher's outbox re-sends);
* state (retained): consumers subscribe with QoS 0, so nothing is queued for them while they
  are away; publishers keep only the newest value while disconnected;
* subscriptions: a refused one keeps the service offline; the SUBACK can be awaited.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from homesec.broker import MosquittoProcess
from homesec.bus import Bus, Received
from homesec.contract import (
    DEAD_LETTERS,
    MOTION_EVENTS,
    SNAPSHOT,
    SYSTEM_STATE,
    TRAINING_LABELS,
    AlertDecision,
    DeadLetter,
    EventType,
    Frame,
    Label,
    MotionEvent,
    SystemValue,
    TrainingLabel,
)
from homesec.metrics import ServiceMetrics
from homesec.settings import BrokerSettings
from support import Collector, wait_until

CHILD = Path(__file__).with_name("bus_child.py")
REPO = Path(__file__).resolve().parents[2]


def label(n: int | str) -> TrainingLabel:
    return TrainingLabel(
        event_id=f"ev-{n}", camera="front", label=Label.OCCUPIED, labelled_by="slack:U1"
    )


def event(n: int) -> MotionEvent:
    return MotionEvent(
        type=EventType.START,
        event_id=f"front-{n:04d}",
        camera="front",
        started_at=float(n),
        frame_seq=n,
        frame_captured_at=float(n),
        decision=AlertDecision(alert=True, reason="armed"),
    )


def snapshot(n: int) -> Frame:
    return Frame(
        camera="front", seq=n, captured_at=float(n), width=1, height=1, jpeg=b"\xff\xd8\xff\xd9"
    )


def fast_retries(settings: BrokerSettings, attempts: int = 5) -> BrokerSettings:
    return settings.model_copy(
        update={
            "handler_retry_min_seconds": 0.1,
            "handler_retry_max_seconds": 0.3,
            "handler_attempts": attempts,
        }
    )


class Child:
    """``bus_child.py`` as a process; its output lines can be awaited."""

    def __init__(self, settings: BrokerSettings, *args: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), args[0], settings.host, str(settings.port), *args[1:]],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def wait_line(self, prefix: str, timeout: float = 15) -> str:
        return wait_until(
            lambda: next((x for x in self.lines if x.startswith(prefix)), None), timeout
        )

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        if child.proc.poll() is None:
            child.kill()


# ---- messages ---------------------------------------------------------------------------------


def test_handler_failing_twice_is_retried_and_the_message_is_handled_once(
    make_bus, broker_settings: BrokerSettings
) -> None:
    calls: list[str] = []
    stored: list[str] = []

    def flaky(msg: Received[TrainingLabel]) -> None:
        calls.append(msg.payload.event_id)
        if len(calls) <= 2:
            raise OSError("read-only file system")
        stored.append(msg.payload.event_id)

    consumer = make_bus("uploader", start=False, settings=fast_retries(broker_settings))
    sub = consumer.subscribe(TRAINING_LABELS, flaky)
    consumer.start()
    assert sub.wait(10)
    assert make_bus("slack-gateway").publish_confirmed(TRAINING_LABELS, label(1))
    wait_until(lambda: stored == ["ev-1"])
    assert calls == ["ev-1"] * 3
    errors = consumer.metrics.registry.get_sample_value(
        "homesec_mqtt_handler_errors_total", {"topic_class": "training_labels"}
    )
    assert errors == 2
    # acknowledged: the same persistent session gets nothing again after a reconnect
    consumer.stop()
    again = make_bus("uploader", start=False, settings=fast_retries(broker_settings))
    seen: Collector[TrainingLabel] = Collector()
    again.subscribe(TRAINING_LABELS, seen)
    again.start()
    assert again.wait_connected(10)
    time.sleep(1.0)
    assert seen.payloads == []


def test_no_message_is_acknowledged_before_its_handler_succeeded(
    make_bus, broker_settings: BrokerSettings, children: list[Child]
) -> None:
    failing = Child(broker_settings, "fail-labels")
    children.append(failing)
    failing.wait_line("ONLINE")
    assert make_bus("slack-gateway").publish_confirmed(TRAINING_LABELS, label("crash"))
    failing.wait_line("FAILED ev-crash")
    failing.kill()  # the handler never succeeded: the broker must still hold the message
    consumer = make_bus("uploader", start=False)
    got: Collector[TrainingLabel] = Collector()
    consumer.subscribe(TRAINING_LABELS, got)
    consumer.start()
    (delivered,) = got.wait_for(1, timeout=15)
    assert delivered.event_id == "ev-crash"


def test_a_handler_failing_every_try_is_dead_lettered_then_acknowledged(
    make_bus, broker_settings: BrokerSettings
) -> None:
    operator = make_bus("operator", persistent=False)
    parked: Collector[DeadLetter] = Collector()
    assert operator.subscribe(DEAD_LETTERS, parked, service="uploader").wait(10)
    tries: list[float] = []

    def broken(msg: Received[TrainingLabel]) -> None:
        tries.append(time.monotonic())
        raise ValueError("cannot store this label")

    consumer = make_bus("uploader", start=False, settings=fast_retries(broker_settings, 3))
    consumer.subscribe(TRAINING_LABELS, broken)
    consumer.start()
    assert consumer.wait_connected(10)
    assert make_bus("slack-gateway").publish_confirmed(TRAINING_LABELS, label("poison"))
    (letter,) = parked.wait_for(1, timeout=15)
    assert len(tries) == 3
    assert tries[1] - tries[0] >= 0.09 and tries[2] - tries[1] >= 0.19  # backoff 0.1, 0.2
    assert letter.topic == "homesec/training/labels" and letter.attempts == 3
    assert "cannot store this label" in letter.error
    assert json.loads(base64.b64decode(letter.payload_base64))["event_id"] == "ev-poison"
    assert (
        consumer.metrics.registry.get_sample_value(
            "homesec_mqtt_dead_letters_total", {"topic_class": "training_labels"}
        )
        == 1
    )
    # later messages are handled meanwhile and the parked one is not redelivered
    consumer.stop()
    again = make_bus("uploader", start=False)
    seen: Collector[TrainingLabel] = Collector()
    again.subscribe(TRAINING_LABELS, seen)
    again.start()
    assert again.wait_connected(10)
    time.sleep(1.0)
    assert seen.payloads == []


def test_outbox_resends_what_a_crashed_publisher_never_delivered(
    broker: MosquittoProcess, broker_settings: BrokerSettings, make_bus, tmp_path: Path, children
) -> None:
    consumer = make_bus("uploader", start=False)
    got: Collector[TrainingLabel] = Collector()
    consumer.subscribe(TRAINING_LABELS, got)
    consumer.start()
    assert consumer.wait_connected(10)
    consumer.stop()  # the persistent session queues for it
    broker.stop()
    outbox = tmp_path / "gateway-outbox.sqlite3"
    publisher = Child(broker_settings, "publish-labels", "5", str(outbox))
    children.append(publisher)
    publisher.wait_line("STORED 5")
    publisher.kill()  # dies before the broker ever had them
    broker.start()
    restarted = Bus(broker_settings, "slack-gateway", outbox_path=outbox)
    restarted.start()
    try:
        assert restarted.wait_connected(10)
        assert restarted.flush(10), "outbox not drained"
        again = make_bus("uploader", start=False)
        again.subscribe(TRAINING_LABELS, got)
        again.start()
        wait_until(lambda: len(got.payloads) >= 5, 15)
        assert [p.event_id for p in got.payloads] == [f"ev-{n}" for n in range(5)]
    finally:
        restarted.stop()


def test_a_full_memory_queue_never_drops_what_the_outbox_holds(
    broker: MosquittoProcess, broker_settings: BrokerSettings, make_bus, tmp_path: Path
) -> None:
    settings = broker_settings.model_copy(update={"max_queued_messages": 10})
    consumer = make_bus("uploader", start=False)
    got: Collector[TrainingLabel] = Collector()
    consumer.subscribe(TRAINING_LABELS, got)
    consumer.start()
    assert consumer.wait_connected(10)
    broker.stop()
    publisher = Bus(settings, "slack-gateway", outbox_path=tmp_path / "outbox.sqlite3")
    publisher.start()
    try:
        futures = [publisher.publish(TRAINING_LABELS, label(n)) for n in range(300)]
        assert not any(f.dropped for f in futures)
        broker.start()
        assert all(f.wait(30) for f in futures)
        wait_until(lambda: len(got.payloads) >= 300, 30)
        assert [p.event_id for p in got.payloads] == [f"ev-{n}" for n in range(300)]
    finally:
        publisher.stop()


# ---- state ------------------------------------------------------------------------------------


def test_consumer_back_after_downtime_gets_every_event_in_order_and_no_stale_snapshots(
    tmp_path: Path,
) -> None:
    broker = MosquittoProcess(tmp_path / "mosquitto", limits={"max_queued_messages": "20"})
    broker.start()
    settings = BrokerSettings(
        host=broker.host, port=broker.port, reconnect_min_seconds=1, reconnect_max_seconds=2
    )
    buses: list[Bus] = []

    def bus(name: str) -> Bus:
        created = Bus(settings, name, ServiceMetrics(name))
        buses.append(created)
        return created

    try:
        events: Collector[MotionEvent] = Collector()
        snapshots: Collector[Frame] = Collector()
        gateway = bus("slack-gateway")
        gateway.subscribe(MOTION_EVENTS, events)
        gateway.subscribe(SNAPSHOT, snapshots, camera="front")
        gateway.start()
        assert gateway.wait_connected(10)
        gateway.stop()  # down for a while; the broker keeps its session
        camera, detector = bus("camera"), bus("detector")
        camera.start()
        detector.start()
        assert camera.wait_connected(10) and detector.wait_connected(10)
        # snapshots every 0.1 s, well past the broker's queue limit of 20, and 15 events
        for n in range(150):
            camera.publish(SNAPSHOT, snapshot(n), camera="front")
            if n % 10 == 0:
                assert detector.publish_confirmed(MOTION_EVENTS, event(n // 10))
            time.sleep(0.02)
        assert camera.flush(10)
        back = bus("slack-gateway")
        back.subscribe(MOTION_EVENTS, events)
        back.subscribe(SNAPSHOT, snapshots, camera="front")
        back.start()
        assert back.wait_connected(10)
        wait_until(lambda: len(events.payloads) >= 15, 15)
        time.sleep(0.5)
        assert [e.event_id for e in events.payloads] == [f"front-{n:04d}" for n in range(15)]
        # one snapshot: the retained newest, sent on subscribe; none of the stale ones queued
        assert [f.seq for f in snapshots.payloads] == [149]
    finally:
        for b in buses:
            b.stop(timeout=1)
        broker.kill()


def test_publisher_keeps_only_the_newest_state_while_disconnected(
    broker: MosquittoProcess, broker_settings: BrokerSettings, make_bus
) -> None:
    owner = make_bus("detector")
    broker.kill()
    wait_until(lambda: not owner.connected, 10)
    for n in range(100):
        owner.publish(
            SYSTEM_STATE, SystemValue(value=n % 2 == 0, changed_by=f"n{n}"), setting="armed"
        )
    broker.start()
    wait_until(lambda: owner.connected, 15)
    watcher = make_bus("watcher", persistent=False)
    seen: Collector[SystemValue] = Collector()
    assert watcher.subscribe(SYSTEM_STATE, seen, setting="armed").wait(10)
    wait_until(lambda: seen.payloads, 10)
    time.sleep(0.5)
    assert [v.changed_by for v in seen.payloads] == ["n99"]


def test_state_values_come_back_to_a_broker_that_lost_its_store(
    broker: MosquittoProcess, broker_settings: BrokerSettings, make_bus
) -> None:
    owner = make_bus("detector")
    assert owner.publish(
        SYSTEM_STATE, SystemValue(value=True, changed_by="t"), setting="armed"
    ).wait(5)
    broker.kill()
    for store in broker.data_dir.glob("*.db"):
        store.unlink()
    broker.start()
    wait_until(lambda: owner.connected, 15)
    watcher = make_bus("watcher", persistent=False)
    seen: Collector[SystemValue] = Collector()
    watcher.subscribe(SYSTEM_STATE, seen, setting="armed")
    watcher.start()
    (value,) = seen.wait_for(1, timeout=10)
    assert value.value is True and value.changed_by == "t"


# ---- subscriptions ----------------------------------------------------------------------------

DYNSEC_PLUGIN = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")
DYNSEC_CONFIG = """\
per_listener_settings false
user {user}
allow_anonymous true
listener {port} {host}
persistence false
plugin %s
plugin_opt_config_file {data_dir}/dynsec.json
log_dest file {data_dir}/mosquitto.log
"""
DENY_MOTION = {
    "defaultACLAccess": {
        "publishClientSend": True,
        "publishClientReceive": True,
        "subscribe": True,
        "unsubscribe": True,
    },
    "clients": [],
    "groups": [{"groupname": "anonymous", "roles": [{"rolename": "no-motion"}], "clients": []}],
    "roles": [
        {
            "rolename": "no-motion",
            "acls": [{"acltype": "subscribePattern", "topic": "homesec/motion/#", "allow": False}],
        }
    ],
    "anonymousGroup": "anonymous",
}


@pytest.mark.skipif(not DYNSEC_PLUGIN.exists(), reason="mosquitto's dynamic security plugin")
def test_refused_subscription_keeps_the_service_offline(tmp_path: Path) -> None:
    """Mosquitto's own ACL file never refuses a SUBSCRIBE (it filters at delivery); its dynamic
    security plugin does (SUBACK 0x87), as would a broker with an auth plugin."""
    data = tmp_path / "mosquitto"
    data.mkdir()
    (data / "dynsec.json").write_text(json.dumps(DENY_MOTION))
    broker = MosquittoProcess(data, config_text=DYNSEC_CONFIG % DYNSEC_PLUGIN)
    broker.start()
    settings = BrokerSettings(host=broker.host, port=broker.port)
    allowed = Bus(settings, "uploader")
    refused = Bus(settings, "slack-gateway")
    try:
        ok = allowed.subscribe(TRAINING_LABELS, lambda m: None)
        allowed.start()
        assert ok.wait(10) and allowed.wait_connected(10)
        fine = refused.subscribe(TRAINING_LABELS, lambda m: None)
        denied = refused.subscribe(MOTION_EVENTS, lambda m: None)
        refused.start()
        assert fine.wait(10)
        wait_until(lambda: denied.refused is not None, 10)
        time.sleep(1.5)  # a retry of the subscription is refused again
        assert not denied.granted and not refused.connected
        refusals = refused.metrics.registry.get_sample_value(
            "homesec_mqtt_subscriptions_refused_total"
        )
        assert refusals is not None and refusals >= 2
    finally:
        allowed.stop(timeout=1)
        refused.stop(timeout=1)
        broker.kill()

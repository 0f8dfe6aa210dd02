"""Faults a real home has, against the whole local stack, each checked by counting:

* broker ``kill -9`` and restart mid-stream: every service back by itself, frames resume, and
  no event, command or label is lost (counted against the producers' own metrics);
* each service ``kill -9``-ed and restarted by the runner: state restored from retained topics,
  QoS 1 messages published while it was down are delivered;
* a power cut of the armed house (runner, services and broker killed at once), then the
  services up 10 s before the broker: never a ``false`` on ``system/armed``, and the next
  intruder alerts.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from homesec.contract import (
    AVAILABILITY,
    MOTION_EVENTS,
    PTZ_COMMAND,
    PTZ_STATE,
    SYSTEM_SET,
    SYSTEM_STATE,
    TRAINING_LABELS,
    Availability,
    Label,
    MotionEvent,
    PtzCommand,
    PtzState,
    SetCommand,
    SystemValue,
    TrainingLabel,
)
from homesec.services import CATALOGUE
from support import Collector, wait_until

pytestmark = pytest.mark.slow

NAMES = [info.name for info in CATALOGUE]


def online(avail: Collector[Availability], name: str) -> bool:
    states = [m.payload.root for m in avail.items if m.params.get("service") == name]
    return bool(states) and states[-1] == "online"


def reconnected(stack, name: str) -> bool:
    return (
        stack.metric(name, "homesec_mqtt_reconnects_total") >= 1
        and stack.metric(name, "homesec_mqtt_connected") == 1
    )


def test_broker_kill_mid_stream_loses_nothing(stack, make_bus, broker):
    watcher = make_bus("watcher", start=False)
    events: Collector[MotionEvent] = Collector()
    states: Collector[SystemValue] = Collector()
    watcher.subscribe(MOTION_EVENTS, events)
    watcher.subscribe(SYSTEM_STATE, states, setting="armed")
    watcher.start()
    stack.start()
    wait_until(lambda: stack.metric("detector", "homesec_detector_frames_processed_total") > 20, 30)

    # The demo person walks in ~8 s after the camera starts: the broker dies just before, so the
    # event starts while the broker is down (the detector must keep it and deliver it later).
    time.sleep(2.5)  # past the broker's autosave, as in a home that has been running a while
    broker.kill()  # power cut of the broker: no clean shutdown
    wait_until(lambda: stack.metric("camera", "homesec_mqtt_connected") == 0, 15)
    # While the broker is down: the owner arms over Slack (the command must not be lost).
    response, _ = stack.command("/homesec", "arm")
    assert response.status_code == 200
    time.sleep(6)
    broker.start()

    wait_until(lambda: all(reconnected(stack, n) for n in NAMES), 40)
    frames_before = stack.metric("detector", "homesec_detector_frames_processed_total")
    wait_until(
        lambda: (
            stack.metric("detector", "homesec_detector_frames_processed_total") > frames_before + 20
        ),
        20,
    )
    wait_until(lambda: any(s.value for s in states.payloads), 20)

    # When the walk-in's event has ended, count: every event message the detector handed to
    # its broker connection reached the persistent watcher.
    wait_until(lambda: any(e.type == "end" for e in events.payloads), 60)
    published = stack.metric(
        "detector", 'homesec_mqtt_messages_published_total{topic_class="motion_events"}'
    )
    wait_until(lambda: len(events.payloads) >= published, 20)
    assert len({(e.event_id, e.type, e.frame_seq) for e in events.payloads}) >= published


def kill_and_wait_offline(stack, avail: Collector[Availability], name: str) -> None:
    os.kill(stack.service_pid(name), signal.SIGKILL)
    wait_until(lambda: not online(avail, name), 15)  # the broker sent the Last Will


def test_each_service_killed_restores_state_and_gets_queued_messages(stack, make_bus, s3):
    watcher = make_bus("watcher", start=False)
    avail: Collector[Availability] = Collector()
    ptz_states: Collector[PtzState] = Collector()
    watcher.subscribe(AVAILABILITY, avail)
    watcher.subscribe(PTZ_STATE, ptz_states, camera="front")
    watcher.start()
    stack.start()
    wait_until(lambda: all(online(avail, n) for n in NAMES), 30)

    # detector (the state owner): a command sent while it is down is applied when it returns,
    # and the other switches keep their retained values.
    assert stack.command("/homesec", "mute")[0].status_code == 200
    kill_and_wait_offline(stack, avail, "detector")
    watcher.publish(SYSTEM_SET, SetCommand(value=True, source="test"), setting="armed")
    wait_until(lambda: online(avail, "detector"), 40)
    wait_until(lambda: "Armed: *ON*" in stack.command("/homesec", "status")[0].text, 20)
    status = stack.command("/homesec", "status")[0].text
    assert "Notifications: *OFF*" in status, status

    # ptz: position restored from its retained state; a command queued while down is applied.
    watcher.publish(PTZ_COMMAND, PtzCommand(pan=-20, tilt=15, request_id="r1"), camera="front")
    wait_until(lambda: any(s.last_request_id == "r1" and not s.moving for s in ptz_states.payloads))
    kill_and_wait_offline(stack, avail, "ptz")
    watcher.publish(PTZ_COMMAND, PtzCommand(pan_by=10, request_id="r2"), camera="front")
    wait_until(lambda: online(avail, "ptz"), 40)
    final = wait_until(
        lambda: [s for s in ptz_states.payloads if s.last_request_id == "r2" and not s.moving], 20
    )[-1]
    assert (final.pan, final.tilt) == (-10, 15)

    # uploader: a label published while it is down is stored and uploaded when it returns.
    kill_and_wait_offline(stack, avail, "uploader")
    label = TrainingLabel(
        event_id="front-20261125-010203-abcd",
        camera="front",
        label=Label.OCCUPIED,
        labelled_by="test",
    )
    assert watcher.publish_confirmed(TRAINING_LABELS, label)
    wait_until(lambda: online(avail, "uploader"), 40)
    wait_until(lambda: stack.metric("uploader", "homesec_uploader_labels_received_total") >= 1, 20)

    # camera, presence and slack-gateway come back by themselves too.
    for name in ("camera", "presence", "slack-gateway"):
        kill_and_wait_offline(stack, avail, name)
        wait_until(lambda n=name: online(avail, n), 40)
    wait_until(stack.healthy, 20)
    frames = stack.metric("camera", "homesec_camera_frames_published_total")
    wait_until(lambda: stack.metric("camera", "homesec_camera_frames_published_total") > frames, 20)


def test_power_cut_then_services_before_the_broker_keeps_the_house_armed(stack, make_bus, broker):
    stack.start()
    response, _ = stack.command("/homesec", "arm")
    assert response.status_code == 200
    armed: Collector[SystemValue] = Collector()
    watcher = make_bus("watcher", start=False, persistent=False)
    watcher.subscribe(SYSTEM_STATE, armed, setting="armed")
    watcher.start()
    wait_until(lambda: armed.payloads and armed.payloads[-1].value, 20)
    watcher.stop(timeout=1)
    time.sleep(2.5)  # past the broker's autosave
    stack.power_cut()
    broker.kill()

    stack.launch()  # the reboot: Docker brings the services up first, the broker 10 s later
    time.sleep(10)
    broker.start()
    seen: Collector[SystemValue] = Collector()
    events: Collector[MotionEvent] = Collector()
    after = make_bus("watcher-after", start=False, persistent=False)
    after.subscribe(SYSTEM_STATE, seen, setting="armed")
    after.subscribe(MOTION_EVENTS, events)
    after.start()
    assert after.wait_connected(10)
    wait_until(stack.healthy, 40)
    wait_until(lambda: all(online_metric(stack, n) for n in NAMES), 40)
    # the demo person walks in: armed, so the event alerts
    wait_until(lambda: any(e.decision.alert for e in events.payloads), 90)
    values = [(v.value, v.changed_by) for v in seen.payloads]
    assert values and all(value for value, _ in values), values


def online_metric(stack, name: str) -> bool:
    return stack.metric(name, "homesec_mqtt_connected") == 1

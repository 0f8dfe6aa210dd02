"""The whole stack under a real engine, seen only through its published ports: every service
online, the demo camera's person → alert with the snapshot on the Slack stand-in → signed
Occupied click → the event in S3 (moto) → Prometheus scrapes every service and loads the rules;
the broker's ACLs hold inside the network."""

from __future__ import annotations

import json
import time

import pytest
import yaml
from conftest import report
from engine import REPO, SERVICES, Compose
from mqtt_watch import Watch
from stack_client import BUCKET, Stack, button_value

from homesec.contract import MotionEvent, TrainingLabel
from support import wait_until

# builds and waits: longer than the suite's 300 s default (the first run builds every image)
pytestmark = pytest.mark.timeout(1200)


def test_engine_stack_every_service_online(stack: Compose, events: Watch) -> None:
    """(``events`` starts recording here, for the lifecycle tests that predict the demo.)"""
    st = Stack(stack)
    for service in SERVICES:
        assert stack.health(service) == "healthy"
        assert st.retained(f"homesec/{service}/availability") == b"online", service
    report(f"all {len(SERVICES)} services healthy and online on the broker")


def test_engine_stack_scenario_alert_label_upload(stack: Compose) -> None:
    st = Stack(stack)
    st.s3().create_bucket(Bucket=BUCKET)
    watch = st.watch("homesec/motion/events", "homesec/training/labels")
    try:
        response = st.command("arm")
        assert response.status_code == 200, response.text
        wait_until(st.armed, 20)

        # the demo person walks in every 50 s: one alert with the snapshot, posted by the gateway
        alert = wait_until(st.alerts, 120)[0]
        uploads = wait_until(st.uploads, 30)
        assert uploads[0][:2] == b"\xff\xd8", "the alert image is not a JPEG"
        events = [
            MotionEvent.model_validate_json(m.payload) for m in watch.on("homesec/motion/events")
        ]
        alerted = [e for e in events if e.decision.alert]
        assert alerted, f"an alert was posted but no alerting event was seen: {events[-3:]}"
        event_id = alerted[0].event_id

        # the owner clicks Occupied on the gateway's published port, signed as Slack signs
        value = button_value(alert, "homesec_label_occupied")
        assert st.click(value, "homesec_label_occupied").status_code == 200
        labels = wait_until(lambda: watch.on("homesec/training/labels"), 20)
        label = TrainingLabel.model_validate_json(labels[-1].payload)
        assert (label.event_id, label.label.value) == (event_id, "occupied")

        # the uploader puts the event into S3 (label.json is uploaded last)
        def uploaded() -> list[str]:
            return [k for k in st.s3_keys() if f"/{event_id}/" in k]

        keys = wait_until(
            lambda: any(k.endswith("label.json") for k in uploaded()) and uploaded(), 90
        )
        assert all(k.startswith("training/occupied/front/") for k in keys), keys
        assert any(k.endswith("snapshot.jpg") for k in keys), keys
        assert any("/preroll/" in k for k in keys), keys
        report(
            f"scenario passed: event {event_id} alerted, labelled occupied, {len(keys)} objects in S3"
        )
    finally:
        watch.close()


def test_engine_stack_prometheus_scrapes_everything_and_loads_rules(stack: Compose) -> None:
    st = Stack(stack)
    jobs = {*SERVICES, "prometheus"}

    def all_up() -> list[dict[str, object]]:
        targets = st.prometheus("/api/v1/targets")["data"]["activeTargets"]
        up = [t for t in targets if t["health"] == "up"]
        return (
            targets if {t["labels"]["job"] for t in up} == jobs and len(up) == len(targets) else []
        )

    try:
        targets = wait_until(all_up, 90, interval=2)
    except AssertionError:
        raise AssertionError(
            json.dumps(st.prometheus("/api/v1/targets"), indent=1)[-3000:]
        ) from None
    rules_file = yaml.safe_load((REPO / "prometheus" / "rules" / "homesec.yml").read_text())
    expected = {r["alert"] for g in rules_file["groups"] for r in g["rules"] if "alert" in r}
    groups = st.prometheus("/api/v1/rules")["data"]["groups"]
    loaded = {r["name"] for g in groups for r in g["rules"]}
    assert expected and expected <= loaded, f"rules not loaded: {expected - loaded}"
    report(f"prometheus: {len(targets)} targets up, {len(loaded)} alert rules loaded")


def test_engine_stack_broker_acls_hold_inside_the_network(stack: Compose) -> None:
    st = Stack(stack)
    admin = st.watch("homesec/system/#", "homesec/cam/aclprobe/snapshot")
    camera = st.watch(user="camera")
    try:
        assert st.armed(), "the scenario left the system armed"
        seen = len(admin.messages)
        # the camera's credentials may not disarm the house, neither by command nor by state
        camera.publish("homesec/system/armed/set", b'{"value": false, "source": "intruder"}')
        camera.publish("homesec/system/armed", b'{"value": false}', retain=True)
        camera.publish("homesec/motion/events", b"{}")
        # ...but may publish on its own topics
        camera.publish("homesec/cam/aclprobe/snapshot", b"\xff\xd8probe\xff\xd9")
        wait_until(lambda: admin.on("homesec/cam/aclprobe/snapshot"), 10)
        time.sleep(2)
        leaked = [m.topic for m in admin.messages[seen:] if m.topic.startswith("homesec/system/")]
        assert leaked == [], f"the camera user published {leaked}"
        assert st.armed(), "the camera user disarmed the house"
        report("broker ACLs: camera credentials could not disarm or fake events")
    finally:
        admin.close()
        camera.close()

"""The whole stack under a real engine, seen only through its published ports: every service
online, the demo camera's person → alert with the snapshot on the Slack stand-in → signed
Occupied click → the event in S3 (moto) → Prometheus scrapes every service and loads the rules;
the broker's ACLs hold inside the network."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from conftest import report
from engine import REPO, SERVICES, Compose
from mqtt_watch import Watch
from stack_client import BUCKET, Stack, button_value

from homesec.contract import MotionEvent, TrainingLabel
from homesec_detector.trainset_build import write_clip_set
from support import wait_until

ASSETS = REPO / "tests" / "assets"

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
        # and its local copy in the training volume, as the detector's nightly tune sees it
        label_doc = next(f"/data/training/{k}" for k in keys if k.endswith("label.json"))
        folder = label_doc.rsplit("/", 1)[0]

        def copied() -> list[str]:  # (the local write follows the bucket's: give it a moment)
            found = stack("exec", "-T", "detector", "find", folder, "-type", "f", check=False)
            return sorted(found.stdout.split())

        wait_until(lambda: copied() == sorted(f"/data/training/{k}" for k in keys), 20)
        report(
            f"scenario passed: event {event_id} alerted, labelled occupied, {len(keys)} objects "
            "in S3 and in the training volume"
        )
    finally:
        watch.close()


def process_tree_pss_mb(root: int) -> float:
    """PSS of ``root`` and its descendants (host pids; read from the host's /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except (OSError, ValueError):
                continue
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in tree} - tree
        tree |= more
        grew = bool(more)
    total_kb = 0
    for pid in tree:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024


def test_engine_stack_memory_within_the_recorded_figures(stack: Compose) -> None:
    """PSS of each service's container once the demo alert's clip was posted (the stack is
    armed by the scenario test; the scenario of bench/memory.py, but each service in its own
    container, so nothing is shared between them). Reported, and held to the figures recorded
    in bench/memory_budget.json (docs/performance.md) with the guard test's margins."""
    st = Stack(stack)
    if not st.armed():
        assert st.command("arm").status_code == 200
        wait_until(st.armed, 20)
    wait_until(lambda: any(u[4:8] == b"ftyp" for u in st.uploads()), 180)  # the clip.mp4
    time.sleep(5)
    figures = {
        service: process_tree_pss_mb(int(stack.inspect(service)["State"]["Pid"]))
        for service in SERVICES
    }
    total = sum(figures.values())
    report(
        "memory under the engine (PSS, MB): "
        + ", ".join(f"{s} {v:.1f}" for s, v in figures.items())
        + f"; total {total:.1f}"
    )
    budget = json.loads((REPO / "bench" / "memory_budget.json").read_text())
    recorded = budget["docker_pss_mb"]
    for service, pss in figures.items():
        limit = recorded[service] * (1 + budget["margin"]) + budget["slack_mb"]
        assert pss <= limit, f"{service}: {pss:.1f} MB PSS, recorded {recorded[service]}"
    assert total <= sum(recorded.values()) * (1 + budget["total_margin"]), figures


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


# per broker user: topics outside its ACL whose messages would harm the house if accepted
FORBIDDEN = {
    "camera": ("homesec/system/armed/set", "homesec/system/armed", "homesec/motion/events"),
    "detector": ("homesec/ptz/front/command", "homesec/presence/home", "homesec/uploader/run"),
    "slack-gateway": ("homesec/system/armed", "homesec/motion/events", "homesec/presence/home"),
    "presence": (
        "homesec/system/armed",
        "homesec/system/notifications/set",
        "homesec/motion/events",
    ),
    "uploader": ("homesec/system/armed/set", "homesec/training/labels"),
    "ptz": ("homesec/system/armed/set", "homesec/motion/events", "homesec/cam/front/frames"),
}
DISARM = b'{"value": false, "source": "acl-probe"}'


def test_engine_stack_broker_acls_hold_inside_the_network(stack: Compose) -> None:
    """Each service's own credentials, on the stack's broker: what its ACL does not allow is
    dropped (nothing reaches a subscriber, the house stays armed); what it allows goes through."""
    st = Stack(stack)
    topics = sorted({t for ts in FORBIDDEN.values() for t in ts})
    admin = st.watch(*topics, "homesec/cam/aclprobe/snapshot")
    try:
        assert st.armed(), "the scenario left the system armed"
        seen = len(admin.messages)
        for user, forbidden in FORBIDDEN.items():
            client = st.watch(user=user)
            try:
                for topic in forbidden:
                    client.publish(topic, DISARM, retain=topic == "homesec/system/armed")
            finally:
                client.close()
        # the control: the camera may publish on its own topics
        camera = st.watch(user="camera")
        try:
            camera.publish("homesec/cam/aclprobe/snapshot", b"\xff\xd8probe\xff\xd9")
        finally:
            camera.close()
        wait_until(lambda: admin.on("homesec/cam/aclprobe/snapshot"), 10)
        time.sleep(2)
        leaked = [m.topic for m in admin.messages[seen:] if m.payload == DISARM]
        assert leaked == [], f"published outside the ACL: {leaked}"
        assert st.armed(), "a service's credentials disarmed the house"
        count = sum(len(t) for t in FORBIDDEN.values())
        report(f"broker ACLs: {count} publishes outside {len(FORBIDDEN)} users' ACLs all dropped")
    finally:
        admin.close()


def test_engine_stack_tune_runs_in_the_detector_on_the_training_volume(
    stack: Compose, tmp_path: Path
) -> None:
    """The owner's ``docker compose exec detector homesec tune /data/training/training --record``
    (and the nightly run's ``--low-priority``) in the detector's image, as its user, with every
    capability dropped: the training volume is mounted read-only there, the answers and the
    result go to its data volume, and the detector publishes the result for the weekly report."""
    root = tmp_path / "clips"
    keys = write_clip_set(ASSETS, root)
    # the training volume's writer is the uploader: the set goes in through its container (beside
    # the uploader's own copy of the scenario's label, in /data/training/training)
    stack("cp", str(root), "uploader:/data/training/")
    readonly = stack("exec", "-T", "detector", "sh", "-c", "touch /data/training/x", check=False)
    assert readonly.returncode != 0 and "Read-only" in readonly.stderr, readonly
    argv = ["homesec", "tune", "/data/training/clips", "--record", "--json", "--low-priority"]
    watch = Stack(stack).watch("homesec/training/tune")
    try:
        out = stack("exec", "-T", "detector", *argv, "--max-frames", "40", timeout=600)
        result = json.loads(out.stdout)
        assert result["training_set_events"] == len(keys)
        assert result["proposal"]["changes"] >= 1 and result["removed_false_alerts"]
        # the detector publishes the recorded result (its file is polled every 30 s)
        message = wait_until(lambda: watch.on("homesec/training/tune"), 60)[-1]
    finally:
        watch.close()
    published = json.loads(message.payload)
    assert published["events"] == len(keys) and published["proposes_change"] is True
    # a second run by the owner: every model answer kept in the detector's data volume
    owner = ["homesec", "tune", "/data/training/clips", "--json", "--max-frames", "40"]
    again = json.loads(stack("exec", "-T", "detector", *owner).stdout)
    assert again["model_runs"] == 0 and again["proposal"]["env"] == result["proposal"]["env"]
    report(
        f"tune in the detector container: {len(keys)} events, proposal "
        f"{result['proposal']['env']}, {result['seconds']:.1f} s cold, {again['seconds']:.1f} s warm"
    )

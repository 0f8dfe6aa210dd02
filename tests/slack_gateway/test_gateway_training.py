"""The training loop in Slack: ``/homesec missed`` saves, labels and uploads a sample from the
detector's ring buffer; hard negatives come back in the daily digest; the weekly report's
numbers are the labels'."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from gateway_fakes import FakeSlack, motion_event, write_snapshot

from homesec.contract import (
    FRAMES,
    MOTION_EVENTS,
    TRAINING_LABELS,
    TUNE_RESULT,
    AlertDecision,
    EventType,
    Frame,
    Label,
    PersonMode,
    TrainingLabel,
    TuneResult,
)
from homesec.settings import BrokerSettings
from homesec_detector.media_writer import MediaSettings
from homesec_detector.service import DetectorService
from homesec_detector.settings import DetectorSettings
from support import wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "uploader"))
from uploader_support import start_uploader, uploader_settings


def _frame(i: int) -> Frame:
    image = np.full((48, 64, 3), 40 + i, np.uint8)
    cv2.putText(image, str(i), (8, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    return Frame(camera="front", seq=i, captured_at=time.time(), width=64, height=48, jpeg=jpeg)


def test_missed_alert_from_slack_is_saved_labelled_uploaded_and_counted(
    make_gateway, make_bus, broker_settings: BrokerSettings, tmp_path: Path, slack: FakeSlack
) -> None:
    data = tmp_path / "data"
    settings = DetectorSettings(
        broker=broker_settings,
        metrics_port=0,
        data_dir=data,
        person_mode=PersonMode.OFF,
        ha_discovery=False,
        media=MediaSettings(missed_buffer_seconds=30, missed_buffer_fps=0, clip_enabled=False),
    )
    bus = make_bus("detector", start=False)
    detector = DetectorService(bus, settings, bus.metrics)
    bus.start()
    assert bus.wait_connected(10)
    detector.start()
    uploader = start_uploader(uploader_settings(broker_settings, data, interval_seconds=0.2))
    try:
        gateway = make_gateway()
        camera = make_bus("camera")
        for i in range(12):
            camera.publish(FRAMES, _frame(i), camera="front")
            time.sleep(0.03)  # latest-wins slots: give the worker each frame
        wait_until(
            lambda: "front" in detector.workers and detector.workers["front"].pipeline.frames >= 8
        )

        response, _ = gateway.command("/homesec", "missed 1")
        assert response.status_code == 200
        text = response.json()["text"]
        assert response.json()["response_type"] == "in_channel" and "occupied" in text
        event_id = text.split("`")[1]

        root = data / "training" / "training" / "occupied" / "front"
        wait_until(lambda: list(root.glob(f"*/{event_id}/label.json")), timeout=20)
        folder = next(root.glob(f"*/{event_id}"))
        doc = json.loads((folder / "label.json").read_text())
        assert doc["label"]["source"] == "missed" and doc["label"]["labelled_by"] == "slack:U0OWNER"
        frames = sorted((folder / "preroll").glob("*.jpg"))
        assert len(frames) >= 8
        for path in frames:  # the sample's frames decode
            assert (
                cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
                is not None
            )
        meta = json.loads((folder / "event.json").read_text())
        assert meta["type"] == "sample" and meta["label"] == "occupied" and meta["detector"]["fps"]

        # the gateway counted it (it reads training/labels) and reports it
        wait_until(lambda: gateway.service.training.figures()["missed_alerts"] == 1)
        response, _ = gateway.command("/homesec", "report")
        assert "Missed alerts: 1" in response.json()["text"]
        missed = bus.metrics.registry.get_sample_value(
            "homesec_detector_missed_alerts_total", {"camera": "front"}
        )
        assert missed == 1
    finally:
        uploader.stop()
        detector.close()


def test_digest_and_weekly_report_match_the_labels(
    make_gateway, make_bus, slack: FakeSlack
) -> None:
    gateway = make_gateway(report_weekday=0, digest_max=2)
    training = gateway.service.training
    client = make_bus("client")
    for n in (1, 2, 3):  # three alerts
        write_snapshot(
            gateway,
            "front",
            f"ev{n}",
            cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes(),
        )
        client.publish_confirmed(MOTION_EVENTS, motion_event(f"ev{n}"))
    wait_until(lambda: training.figures()["alerts"] == 3)

    now = time.time()
    labels = [
        TrainingLabel(
            event_id="ev1", camera="front", label=Label.OCCUPIED, labelled_by="slack:U0OWNER"
        ),
        TrainingLabel(
            event_id="ev2",
            camera="front",
            label=Label.OCCUPIED,
            labelled_by="slack:U0OWNER",
            labelled_at=now - 5,
        ),
        # relabelled: the owner's newest word counts
        TrainingLabel(
            event_id="ev2", camera="front", label=Label.UNOCCUPIED, labelled_by="slack:U0OWNER"
        ),
        TrainingLabel(
            event_id="front-miss-1",
            camera="front",
            label=Label.OCCUPIED,
            labelled_by="slack:U0OWNER",
            source="missed",
        ),
        TrainingLabel(
            event_id="front-unocc-1",
            camera="front",
            label=Label.UNOCCUPIED,
            labelled_by="detector:auto",
            source="detector",
        ),
    ]
    for label in labels:
        client.publish_confirmed(TRAINING_LABELS, label)
    client.publish_confirmed(
        TUNE_RESULT,
        TuneResult(
            at=now,
            events=40,
            false_alerts=2,
            missed=1,
            proposes_change=True,
            false_alerts_removed=2,
            env={"HOMESEC_DETECTOR_MOTION__DELTA_THRESH": "9"},
        ),
    )
    wait_until(lambda: training.figures()["labels"] == 4 and training.tune is not None)
    figures = training.figures()
    assert figures == {
        "alerts": 3,
        "labels": 4,
        "occupied_labels": 2,
        "unoccupied_labels": 1,
        "missed_alerts": 1,
        "labelled_alerts": 2,
        "false_alerts": 1,
    }

    # a hard negative: the person check rejected it; it comes back in the digest with buttons
    write_snapshot(
        gateway, "front", "ev9", cv2.imencode(".jpg", np.full((8, 8, 3), 99, np.uint8))[1].tobytes()
    )
    rejected = motion_event("ev9", kind=EventType.END, alert=False, media=True).model_copy(
        update={
            "ended_at": now,
            "decision": AlertDecision(alert=False, reason="no person confirmed (best 0.31)"),
        }
    )
    client.publish_confirmed(MOTION_EVENTS, rejected)
    wait_until(lambda: training.store.digest_candidates(0, 5))

    gateway.service.store.set_meta("report_sent_at", "0")  # both are due now
    gateway.service.store.set_meta("digest_sent_at", "0")
    training.step(now)
    posts = slack.posts()
    report = next(p["text"] for p in posts if "training report" in p.get("text", ""))
    assert "• Alerts: 3" in report
    assert "• Labels given: 4 (2 occupied, 1 unoccupied, 1 missed alerts)" in report
    assert "• False-alert rate: 50% (1 of 2 labelled alerts)" in report
    assert "• Missed alerts: 1" in report
    assert "*proposes a change*" in report and "HOMESEC_DETECTOR_MOTION__DELTA_THRESH=9" in report
    buttons = [p for p in posts if "ev9" in p.get("text", "") and p.get("blocks")]
    assert len(buttons) == 1 and "homesec_label_occupied" in json.dumps(buttons[0]["blocks"])
    assert slack.files_named("ev9.jpg")
    assert gateway.metric("homesec_training_false_alert_ratio") == 0.5
    assert gateway.metric("homesec_training_missed_alerts") == 1
    assert gateway.metric("homesec_training_tune_proposes_change") == 1
    # done for today and this week: nothing is posted twice
    count = len(slack.posts())
    training.step(now + 60)
    assert len(slack.posts()) == count


def test_schedule_slots_are_the_last_time_of_day_or_weekday() -> None:
    from homesec_slack_gateway.training import last_slot

    now = time.mktime((2026, 11, 25, 10, 30, 0, 0, 0, -1))  # a Wednesday, 10:30 local
    assert time.localtime(last_slot(now, 9))[:5] == (2026, 11, 25, 9, 0)
    assert time.localtime(last_slot(now, 11))[:5] == (2026, 11, 24, 11, 0)
    assert time.localtime(last_slot(now, 9, weekday=2))[:5] == (2026, 11, 25, 9, 0)
    assert time.localtime(last_slot(now, 11, weekday=2))[:5] == (2026, 11, 18, 11, 0)
    assert time.localtime(last_slot(now, 9, weekday=0))[:5] == (2026, 11, 23, 9, 0)


def test_missed_takes_minutes() -> None:
    from homesec_slack_gateway.commands import Action, UsageError, parse

    assert parse("/homesec", "missed").action is Action.MISSED
    assert parse("/homesec", "missed 2.5").minutes == 2.5
    for bad in ("missed 0", "missed 61", "missed x", "missed 1 2"):
        try:
            parse("/homesec", bad)
        except UsageError:
            continue
        raise AssertionError(bad)

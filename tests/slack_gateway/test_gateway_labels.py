"""Training buttons: a click becomes a label on the bus (reaching a consumer that was down)
and the Slack message shows who answered what."""

from __future__ import annotations

import json

from gateway_fakes import FakeSlack, Harness, button_payload, responses_for

from homesec.bus import Bus
from homesec.contract import TRAINING_LABELS, Label, TrainingLabel
from homesec.metrics import ServiceMetrics
from homesec.settings import BrokerSettings
from support import Collector, wait_until


def test_click_publishes_label_and_updates_message(
    gateway: Harness, make_bus, slack: FakeSlack
) -> None:
    uploader = make_bus("uploader", start=False)
    labels: Collector[TrainingLabel] = Collector()
    uploader.subscribe(TRAINING_LABELS, labels)
    uploader.start()
    assert uploader.wait_connected(10)

    response = gateway.click(
        button_payload("front-0001|front|occupied", "homesec_label_occupied", user="U0OWNER")
    )
    assert response.status_code == 200
    label = labels.wait_for(1)[0]
    assert (label.event_id, label.camera, label.label) == ("front-0001", "front", Label.OCCUPIED)
    assert label.labelled_by == "slack:U0OWNER" and label.source == "slack"
    wait_until(lambda: slack.calls_to("chat.update"), 15)
    update = slack.calls_to("chat.update")[0].args
    assert update["channel"] == "C0ALERTS" and update["ts"] == "1764100000.000100"
    blocks = json.loads(update["blocks"]) if isinstance(update["blocks"], str) else update["blocks"]
    assert "*Occupied* by <@U0OWNER>" in blocks[0]["text"]["text"]
    assert gateway.metric("homesec_slack_labels_total", label="occupied") == 1
    wait_until(lambda: gateway.metric("homesec_slack_label_backlog") == 0)


def test_without_bot_token_the_answer_goes_to_response_url(
    make_gateway, make_bus, slack: FakeSlack
) -> None:
    gateway = make_gateway(slack_bot_token=None)
    url = slack.response_url()
    payload = button_payload("back-7|back|unoccupied", "homesec_label_unoccupied", response_url=url)
    assert gateway.click(payload).status_code == 200
    body = responses_for(slack)[0]
    assert body["replace_original"] is True
    assert "labelled unoccupied" in body["text"]


def test_label_reaches_uploader_that_was_down(
    gateway: Harness, broker_settings: BrokerSettings
) -> None:
    # the uploader has a persistent session: it subscribed once, then went down
    uploader = Bus(broker_settings, "uploader", ServiceMetrics("uploader"))
    uploader.subscribe(TRAINING_LABELS, Collector())
    uploader.start()
    assert uploader.wait_connected(10)
    uploader.stop()

    response = gateway.click(
        button_payload("front-0002|front|unoccupied", "homesec_label_unoccupied")
    )
    assert response.status_code == 200
    wait_until(lambda: gateway.metric("homesec_slack_label_backlog") == 0, 15)
    assert gateway.service.store.pending_labels() == []

    restarted = Bus(broker_settings, "uploader", ServiceMetrics("uploader"))
    labels: Collector[TrainingLabel] = Collector()
    restarted.subscribe(TRAINING_LABELS, labels)
    restarted.start()
    try:
        label = labels.wait_for(1, timeout=15)[0]
        assert (label.event_id, label.label) == ("front-0002", Label.UNOCCUPIED)
    finally:
        restarted.stop()


def test_label_clicked_while_broker_is_down_is_kept(gateway: Harness, broker, make_bus) -> None:
    uploader = make_bus("uploader", start=False)
    labels: Collector[TrainingLabel] = Collector()
    uploader.subscribe(TRAINING_LABELS, labels)
    uploader.start()
    assert uploader.wait_connected(10)
    broker.stop()
    wait_until(lambda: not gateway.bus.connected, 10)
    response = gateway.click(button_payload("front-0003|front|occupied", "homesec_label_occupied"))
    assert response.status_code == 200
    assert len(gateway.service.store.pending_labels()) == 1
    broker.start()
    label = labels.wait_for(1, timeout=20)[0]
    assert label.event_id == "front-0003"
    wait_until(lambda: gateway.service.store.pending_labels() == [], 15)

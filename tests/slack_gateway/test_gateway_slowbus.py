"""Slack's 3-second limit holds when the broker is away: the command is acknowledged at once,
the set command is queued and reaches the detector when the broker is back."""

from __future__ import annotations

from gateway_fakes import FakeSlack, Harness, responses_for

from homesec.contract import SYSTEM_SET, SetCommand
from support import Collector, wait_until

SLACK_ACK_LIMIT_SECONDS = 3.0


def test_commands_are_acked_while_broker_is_down(
    gateway: Harness, broker, make_bus, slack: FakeSlack
) -> None:
    detector = make_bus("detector", start=False)
    sets: Collector[SetCommand] = Collector()
    detector.subscribe(SYSTEM_SET, sets)
    detector.start()
    assert detector.wait_connected(10)

    broker.stop()
    wait_until(lambda: not gateway.bus.connected, 10)
    # the HTTP client gives up after Slack's own limit: an answer must come before it
    response, _ = gateway.command("/pycam_on", timeout=SLACK_ACK_LIMIT_SECONDS)
    assert response.status_code == 200
    assert "broker unreachable: queued" in response.json()["text"]
    response, _ = gateway.command("/homesec", "status", timeout=SLACK_ACK_LIMIT_SECONDS)
    assert "homesec status" in response.json()["text"]
    response, _ = gateway.command("/last_image", timeout=SLACK_ACK_LIMIT_SECONDS)
    assert "Fetching a snapshot" in response.json()["text"]
    assert "No snapshot" in responses_for(slack)[0]["text"]

    broker.start()
    command = sets.wait_for(1, timeout=20)[0]
    assert command.value is True and command.source == "slack:U0OWNER"

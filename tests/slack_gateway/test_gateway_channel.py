"""The alert channel given by name is looked up once (paginated); an upload whose answer was lost
is not posted again when the alert is retried."""

from __future__ import annotations

import time

from gateway_fakes import FakeSlack, Fault, image, motion_event, write_snapshot

from homesec.contract import MOTION_EVENTS, SERVICE_STATUS, ServiceState, ServiceStatus
from support import Collector, wait_until

INTERNAL_ERROR = {"ok": False, "error": "internal_error"}


def channels_of(slack: FakeSlack) -> list[str]:
    return [args["channel_id"] for args, _ in slack.completed_uploads()]


def test_channel_by_name_is_found_across_pages_once(make_gateway, make_bus, slack: FakeSlack):
    slack.channels = [{"id": f"C0OTHER{n}", "name": f"other-{n}"} for n in range(5)]
    slack.channels.append({"id": "C0HOME", "name": "home-alerts"})
    slack.page_size = 2
    gateway = make_gateway(alert_channel="#home-alerts")
    detector = make_bus("detector")
    for n, event_id in enumerate(["front-0101", "front-0102"]):
        write_snapshot(gateway, "front", event_id, image(n))
        detector.publish(MOTION_EVENTS, motion_event(event_id))
    wait_until(lambda: len(slack.completed_uploads()) == 2, 15)
    assert channels_of(slack) == ["C0HOME", "C0HOME"]
    wait_until(lambda: len(slack.calls_to("chat.postMessage")) == 2, 15)
    assert {c.args["channel"] for c in slack.calls_to("chat.postMessage")} == {"C0HOME"}
    lookups = slack.calls_to("conversations.list")
    assert len(lookups) == 3, "three pages of two channels, looked up for the first alert only"
    assert [c.args.get("cursor") for c in lookups] == [None, "2", "4"]


def test_unknown_channel_name_keeps_alerts_queued_until_it_exists(
    make_gateway, make_bus, slack: FakeSlack
):
    statuses: Collector[ServiceStatus] = Collector()
    detector = make_bus("detector", start=False)
    detector.subscribe(SERVICE_STATUS, statuses, service="slack-gateway")
    detector.start()
    assert detector.wait_connected(10)
    gateway = make_gateway(alert_channel="garage")
    write_snapshot(gateway, "front", "front-0201", image(1))
    detector.publish(MOTION_EVENTS, motion_event("front-0201"))
    wait_until(
        lambda: any(
            s.state is ServiceState.DEGRADED and "no channel #garage" in s.detail
            for s in statuses.payloads
        ),
        15,
    )
    assert slack.completed_uploads() == []
    assert gateway.metric("homesec_slack_alert_backlog") == 1
    slack.channels.append({"id": "G0GARAGE", "name": "garage"})  # the bot was invited
    wait_until(lambda: len(slack.completed_uploads()) == 1, 15)
    assert channels_of(slack) == ["G0GARAGE"]
    wait_until(lambda: statuses.payloads[-1].state is ServiceState.OK, 15)


def test_upload_applied_but_answer_lost_is_not_posted_twice(
    gateway, make_bus, slack: FakeSlack
) -> None:
    slack.fail_next("files.completeUploadExternal", Fault(500, INTERNAL_ERROR, applied=True))
    detector = make_bus("detector")
    write_snapshot(gateway, "front", "front-0301", image(3))
    detector.publish(MOTION_EVENTS, motion_event("front-0301"))
    wait_until(lambda: len(slack.calls_to("chat.postMessage")) == 1, 15)
    time.sleep(0.3)
    assert [m["files"][0]["name"] for m in slack.messages] == ["front-0301.jpg"]
    assert len(slack.calls_to("files.completeUploadExternal", ok_only=False)) == 1
    assert slack.calls_to("conversations.history"), "the retry looked before uploading again"
    assert gateway.metric("homesec_slack_alert_reposts_avoided_total") == 1
    assert gateway.metric("homesec_slack_alerts_sent_total") == 1


def test_upload_that_failed_is_retried_after_looking(gateway, make_bus, slack: FakeSlack) -> None:
    slack.fail_next("files.completeUploadExternal", Fault(500, INTERNAL_ERROR))
    detector = make_bus("detector")
    write_snapshot(gateway, "front", "front-0401", image(4))
    detector.publish(MOTION_EVENTS, motion_event("front-0401"))
    wait_until(lambda: len(slack.completed_uploads()) == 1, 15)
    assert [m["files"][0]["name"] for m in slack.messages] == ["front-0401.jpg"]
    assert slack.completed_uploads()[0][1] == image(4)
    assert gateway.metric("homesec_slack_alert_reposts_avoided_total") == 0


def test_without_history_scope_the_retry_still_delivers(
    gateway, make_bus, slack: FakeSlack
) -> None:
    slack.fail_next("files.completeUploadExternal", Fault(500, INTERNAL_ERROR))
    slack.fail_next("conversations.history", Fault(200, {"ok": False, "error": "missing_scope"}))
    detector = make_bus("detector")
    write_snapshot(gateway, "front", "front-0501", image(5))
    detector.publish(MOTION_EVENTS, motion_event("front-0501"))
    wait_until(lambda: len(slack.completed_uploads()) == 1, 15)
    assert not gateway.service.sender._posted.available
    for n, event_id in enumerate(["front-0502", "front-0503"]):
        slack.fail_next("files.completeUploadExternal", Fault(500, INTERNAL_ERROR))
        write_snapshot(gateway, "front", event_id, image(6 + n))
        detector.publish(MOTION_EVENTS, motion_event(event_id))
    wait_until(lambda: len(slack.completed_uploads()) == 3, 15)
    assert len(slack.calls_to("conversations.history", ok_only=False)) == 1, "asked once only"

"""The stack's life under the engine: every service killed and restarted by its restart policy,
the broker restarted, and a power cut of the whole engine. After each: the house is still armed,
what was queued meanwhile is delivered, the media volume is intact.

Runs after test_engine_stack.py on the same stack (armed by its scenario).

A "kill" here is SIGKILL of the service's process from the host, the way a crash or the kernel's
OOM killer ends it: `docker kill` marks a container as stopped by hand, and the engine then leaves
it stopped whatever its restart policy says (checked on Docker 20.10)."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from conftest import IN_CI, report
from engine import SERVICES, Compose, run
from lifecycle import (
    DEMO_PERIOD,
    alerted_ids,
    alerting_starts,
    engine_owned_here,
    next_alert_at,
    power_cut,
    sleep_until,
    volume_files,
)
from mqtt_watch import Watch
from stack_client import Stack

from support import wait_until

# builds and waits: longer than the suite's 300 s default (the first run builds every image)
pytestmark = pytest.mark.timeout(1200)


def crash(compose: Compose, service: str) -> int:
    """SIGKILL the service's process (the child of the container's init); the restart count
    before."""
    state = compose.inspect(service)
    count = int(state["RestartCount"])
    init = int(state["State"]["Pid"])
    # never pgrep -P 0 (the kernel's threads): only a running container's own init
    assert state["State"]["Running"] and init > 1, f"{service} is not running"
    children = [int(p) for p in run(["pgrep", "-P", str(init)], check=False).stdout.split()]
    assert children, f"{service}: no service process under init {init}"
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    return count


def wait_restarted(compose: Compose, service: str, count: int, timeout: float = 90) -> None:
    """Restarted by its policy since ``count``, running (not waiting out the engine's restart
    delay, which doubles with each crash in a row), and healthy again."""

    def running_again() -> bool:
        state = compose.inspect(service)
        return int(state["RestartCount"]) > count and state["State"]["Status"] == "running"

    wait_until(running_again, timeout, 0.5)
    compose.wait_healthy((service,), timeout)


def test_engine_lifecycle_each_service_crashes_and_comes_back(stack: Compose) -> None:
    st = Stack(stack)
    assert st.armed()
    assert st.command("rotate 30 20").status_code == 200
    wait_until(lambda: json.loads(st.retained("homesec/ptz/front/state"))["pan"] == 30, 20)
    watch = st.watch("homesec/+/availability")
    try:
        for service in SERVICES:
            before = crash(stack, service)
            wait_restarted(stack, service, before)
            topic = f"homesec/{service}/availability"
            wait_until(lambda t=topic: [m for m in watch.on(t) if m.payload == b"online"], 30)
            assert any(m.payload == b"offline" for m in watch.on(topic)), f"{service}: no Will"
            assert st.armed(), f"disarmed after {service} restarted"
        ptz = json.loads(st.retained("homesec/ptz/front/state"))
        assert (ptz["pan"], ptz["tilt"]) == (30, 20), f"ptz position not restored: {ptz}"
    finally:
        watch.close()
    report(f"each of {len(SERVICES)} services SIGKILLed: restarted by policy, state restored")


def test_engine_lifecycle_alert_queued_while_gateway_is_down(stack: Compose, events: Watch) -> None:
    """The gateway crashes just before the demo person walks in, and again each time its
    restart policy brings it back, until the event is out: the alert comes after it is let up,
    from the event the broker kept for the gateway's persistent session."""
    st = Stack(stack)
    topic = "homesec/slack-gateway/availability"
    watch = st.watch(topic)
    try:
        expected = next_alert_at(events, stack)
        sleep_until(expected - 1.5)
        down_at = time.time()
        before = int(stack.inspect("slack-gateway")["RestartCount"])
        crashes = 0
        while not alerting_starts(events, since=down_at):
            # kept short: each crash in a row doubles the engine's delay before the next start
            assert time.time() < expected + 20, (
                f"no alerting event within 20 s of the walk-in expected at {expected:.1f} "
                f"({crashes} crashes)"
            )
            try:
                crash(stack, "slack-gateway")
                crashes += 1
            except AssertionError:
                pass  # between two restarts: no process to kill yet
            time.sleep(0.3)
        at, event = alerting_starts(events, since=down_at)[0]
        # the engine waits 0.1 s x 2^n before the restart after n crashes in a row: wait that
        # long and the start on top (a fixed 90 s was not enough once in CI, on 3d4323c)
        wait_restarted(stack, "slack-gateway", before, timeout=60 + 0.1 * 2 ** (crashes + 1))
        seen = [m.payload for m in watch.on(topic) if m.at <= at]
        assert seen and seen[-1] == b"offline", f"the gateway was not down at the event: {seen}"
        try:
            wait_until(lambda: event.event_id in alerted_ids(st), 60)
        except AssertionError as exc:
            raise AssertionError(
                f"no alert for {event.event_id} after {crashes} crashes: "
                f"{stack.logs('slack-gateway', tail=120)}"
            ) from exc
        assert alerted_ids(st).count(event.event_id) == 1
    finally:
        watch.close()
    report(
        f"alert for {event.event_id}, raised while the gateway was down ({crashes} crashes), "
        "delivered once"
    )


def test_engine_lifecycle_broker_restart_loses_nothing(stack: Compose, events: Watch) -> None:
    st = Stack(stack)
    assert st.armed()
    at = next_alert_at(events, stack)
    sleep_until(at - 2)
    stack("restart", "mosquitto", timeout=120)
    stack.wait_healthy(("mosquitto", *SERVICES), 120)
    assert st.armed(), "disarmed after the broker restarted"
    # the walk-in around the restart still reaches Slack
    _, event = wait_until(lambda: alerting_starts(events, since=at - 10), DEMO_PERIOD + 30)[0]
    wait_until(lambda: event.event_id in alerted_ids(st), 60)
    report(f"broker restarted: still armed, services reconnected, alert {event.event_id} delivered")


def test_engine_lifecycle_power_cut(
    stack: Compose, stack_env: dict[str, str], events: Watch
) -> None:
    """Armed, Slack unreachable so an alert is queued in the gateway, then the engine and every
    container die at once (SIGKILL). The engine starts again: the containers come back by their
    restart policy in the engine's order, still armed, the queued alert delivered, media kept."""
    if not IN_CI and os.environ.get("HOMESEC_ENGINE_POWER_CUT") != "1":
        pytest.skip("power cut kills dockerd: set HOMESEC_ENGINE_POWER_CUT=1 (CI always runs it)")
    reason = engine_owned_here()
    if reason:
        pytest.fail(f"power cut needs an engine started by .ci/dockerd.sh: {reason}", pytrace=False)
    st = Stack(stack)
    assert st.armed()
    base = stack_env["HOMESEC_LOCAL_BASE"]
    stack("stop", "slack", timeout=60)
    at = next_alert_at(events, stack)
    _, queued = wait_until(lambda: alerting_starts(events, since=at - 10), DEMO_PERIOD + 30)[0]
    time.sleep(3)  # the gateway has taken the event and is retrying Slack
    media = volume_files(stack, "media", base)
    assert any(queued.event_id in f for f in media), "the queued event's media is not on the volume"
    killed = power_cut()
    stack("start", "slack", timeout=120)  # stopped by hand, so the engine did not restart it
    stack.wait_healthy(("mosquitto", *SERVICES), 180)
    assert st.armed(), "the house came back disarmed after the power cut"
    wait_until(lambda: queued.event_id in alerted_ids(st), 120)
    after = volume_files(stack, "media", base)
    assert media <= after, f"media lost in the power cut: {sorted(media - after)[:5]}"
    report(
        f"power cut ({killed} processes SIGKILLed, dockerd restarted): still armed, queued alert "
        f"{queued.event_id} delivered, {len(media)} media files intact"
    )

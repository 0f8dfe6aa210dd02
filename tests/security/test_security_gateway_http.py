"""The internet-facing gateway: what an unauthenticated caller can reach, and what a hostile
motion event can make it read.

* every route of the FastAPI app that accepts POST refuses unsigned and wrongly signed requests
  (401), whatever the route; the only unauthenticated GET endpoints are `/healthz` and
  `/metrics`; unknown paths are 404;
* `/healthz` says only status, broker connection, backlog and whether a bot token is set;
* an event whose `snapshot` is a symlink (inside the media folder) to a file outside it, or an
  absolute / `..` path, is refused: the file outside is never uploaded to Slack.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import Mount

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "slack_gateway"))

from gateway_fakes import (
    BOT_TOKEN,
    JPEG,
    SIGNING_SECRET,
    FakeSlack,
    Harness,
    button_payload,
    sign,
    slack_fixture,  # noqa: F401 (fixture)
)

from homesec.contract import (
    MOTION_EVENTS,
    SNAPSHOT,
    TRAINING_LABELS,
    AlertDecision,
    EventType,
    Frame,
    MotionEvent,
    TrainingLabel,
)
from homesec.settings import BrokerSettings
from support import Collector, wait_until

UNAUTHENTICATED_GET = {"/healthz"}


@pytest.fixture
def gateway(broker_settings: BrokerSettings, tmp_path: Path, slack: FakeSlack) -> Iterator[Harness]:
    harness = Harness(broker_settings, tmp_path / "data", slack).start()
    yield harness
    harness.stop()


def routes(gateway: Harness) -> tuple[dict[str, set[str]], set[str]]:
    app = gateway.service.app
    assert app is not None
    api = {r.path: set(r.methods or ()) for r in app.routes if isinstance(r, APIRoute)}
    mounts = {r.path for r in app.routes if isinstance(r, Mount)}
    return api, mounts


def test_every_post_route_refuses_unsigned_requests(gateway: Harness) -> None:
    api, _ = routes(gateway)
    post_routes = [path for path, methods in api.items() if "POST" in methods]
    assert post_routes == ["/slack/events"]
    body = urlencode({"command": "/homesec", "text": "arm", "user_id": "U0OWNER"}).encode()
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for path in post_routes:
        for headers in ({}, sign(body, secret="guess"), sign(body, int(time.time()) - 3600)):
            response = httpx.post(
                gateway.url + path, content=body, headers={**form, **headers}, timeout=10
            )
            assert response.status_code == 401, (path, headers)
    # the Events API handshake and interaction payloads are behind the same check
    challenge = b'{"type": "url_verification", "challenge": "c"}'
    click = urlencode({"payload": '{"type": "block_actions"}'}).encode()
    for content, ctype in ((challenge, "application/json"), (click, form["Content-Type"])):
        response = httpx.post(
            gateway.url + "/slack/events", content=content, headers={"Content-Type": ctype}
        )
        assert response.status_code == 401, ctype
    for method in ("PUT", "DELETE", "PATCH"):
        response = httpx.request(method, gateway.url + "/slack/events", timeout=10)
        assert response.status_code == 405, method
    assert httpx.get(gateway.url + "/slack/events", timeout=10).status_code == 405
    for path in ("/", "/admin", "/slack", "/docs", "/redoc", "/../etc/passwd"):
        assert httpx.get(gateway.url + path, timeout=10).status_code == 404, path


def test_only_health_is_served_without_a_signature(gateway: Harness) -> None:
    api, mounts = routes(gateway)
    get_routes = {
        path
        for path, methods in api.items()
        if "GET" in methods and path not in ("/openapi.json", "/docs", "/redoc")
    }
    assert "/healthz" in get_routes
    assert get_routes | mounts <= UNAUTHENTICATED_GET, get_routes | mounts
    health = httpx.get(gateway.url + "/healthz", timeout=10).json()
    assert set(health) == {"status", "mqtt_connected", "alert_backlog", "bot_token"}
    assert health["bot_token"] is True  # a boolean, never the token
    for secret in (BOT_TOKEN, SIGNING_SECRET):
        assert secret not in str(health)


def test_published_gateway_port_does_not_serve_metrics(gateway: Harness) -> None:
    gateway.command("/homesec", "arm")
    response = httpx.get(gateway.url + "/metrics/", timeout=10)
    assert 'command="arm"' not in response.text
    assert response.status_code == 404


def test_no_openapi_schema_is_served(gateway: Harness) -> None:
    assert httpx.get(gateway.url + "/openapi.json", timeout=10).status_code == 404


def _event(event_id: str, snapshot: str) -> MotionEvent:
    return MotionEvent(
        type=EventType.START,
        event_id=event_id,
        camera="front",
        started_at=time.time(),
        frame_seq=1,
        frame_captured_at=time.time(),
        decision=AlertDecision(alert=True, reason="armed"),
        snapshot=snapshot,
    )


def test_snapshot_paths_leaving_the_media_folder_are_never_read(
    gateway: Harness, make_bus, slack: FakeSlack, tmp_path: Path
) -> None:
    secret_file = tmp_path / "outside" / "secret.jpg"
    secret_file.parent.mkdir()
    secret_bytes = JPEG + b"SECRET-OUTSIDE-MEDIA"
    secret_file.write_bytes(secret_bytes)
    media = gateway.settings.media_dir
    link = media / "front" / "front-link" / "snapshot.jpg"
    link.parent.mkdir(parents=True)
    link.symlink_to(secret_file)
    (media / "front" / "front-dirlink").symlink_to(secret_file.parent, target_is_directory=True)
    camera = make_bus("camera")
    retained = JPEG + b"retained"
    camera.publish(
        SNAPSHOT,
        Frame(camera="front", seq=1, captured_at=time.time(), width=64, height=48, jpeg=retained),
        camera="front",
    )
    wait_until(lambda: gateway.service.mirror.latest_snapshot("front") is not None, 10)
    detector = make_bus("detector")
    hostile = [
        "front/front-link/snapshot.jpg",  # a symlink file pointing outside
        "front/front-dirlink/secret.jpg",  # through a symlinked folder
        str(secret_file),  # absolute
        "../outside/secret.jpg",
        "front/../../outside/secret.jpg",
    ]
    for n, path in enumerate(hostile):
        detector.publish(MOTION_EVENTS, _event(f"front-h{n}", path))
    wait_until(lambda: len(slack.completed_uploads()) == len(hostile), 20)
    assert [data for _, data in slack.completed_uploads()] == [retained] * len(hostile)


def test_buttons_are_restricted_to_allowed_users_too(
    broker_settings: BrokerSettings, tmp_path: Path, slack: FakeSlack, make_bus
) -> None:
    watcher = make_bus("uploader", start=False)
    labels: Collector[TrainingLabel] = Collector()
    watcher.subscribe(TRAINING_LABELS, labels)
    watcher.start()
    assert watcher.wait_connected(10)
    gateway = Harness(broker_settings, tmp_path / "data", slack, allowed_users=["U0OWNER"]).start()
    try:
        value, action = "front-0001|front|occupied", "homesec_label_occupied"
        stranger = gateway.click(button_payload(value, action, user="U0STRANGER"))
        assert stranger.status_code in (200, 403)
        time.sleep(1.0)
        assert labels.items == []
        assert (
            gateway.metric("homesec_slack_commands_total", command="label", outcome="denied") == 1
        )
        assert gateway.click(button_payload(value, action, user="U0OWNER")).status_code == 200
        assert labels.wait_for(1, 15)[0].label.value == "occupied"
    finally:
        gateway.stop()

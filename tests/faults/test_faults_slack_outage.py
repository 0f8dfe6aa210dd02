"""Fault: Slack answers 500s and 429s, then is unreachable (requests time out) for a while.

Issue 7 asks for "Slack 500s/429s/timeouts for a minute". Scaled for CI: the silent period lasts
~16 s (every Web API call times out after `slack_timeout_seconds=1`, so the gateway makes many
failing attempts, which is what a minute does too), and the gateway is restarted in the middle of
it. Expected: every alert published during the outage is delivered once Slack is back, in publish
order, none twice, the backlog returns to 0 and the status goes degraded -> ok.

The real parts: a private Mosquitto, the gateway in-process (`Harness`, served by uvicorn), the
fake Slack Web API (`FakeSlack`) and, in front of it, a small TCP proxy of this module that
either forwards bytes or accepts connections and never answers (Slack unreachable).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "slack_gateway"))

from gateway_fakes import JPEG, FakeSlack, Fault, Harness

from homesec.contract import (
    MOTION_EVENTS,
    SERVICE_STATUS,
    AlertDecision,
    EventType,
    MotionEvent,
    ServiceState,
    ServiceStatus,
)
from support import Collector, wait_until

OUTAGE_SECONDS = 16.0


class SilenceableProxy:
    """Forwards TCP connections to ``upstream`` or, while silent, accepts and never answers."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.silent = threading.Event()
        self.held: list[socket.socket] = []
        self.accepted_while_silent = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.silent.is_set():
                with self._lock:
                    self.held.append(conn)  # the request is read by nobody, answered never
                    self.accepted_while_silent += 1
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            for src, dst in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=_pump, args=(src, dst), daemon=True).start()

    def restore(self) -> None:
        self.silent.clear()
        with self._lock:
            held, self.held = self.held, []
        for conn in held:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        self.restore()
        self._thread.join(5)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def alert(event_id: str, camera: str) -> MotionEvent:
    return MotionEvent(
        type=EventType.START,
        event_id=event_id,
        camera=camera,
        started_at=time.time(),
        frame_seq=1,
        frame_captured_at=time.time(),
        area=0.1,
        motion_score=0.5,
        person_score=0.9,
        decision=AlertDecision(alert=True, reason="armed, person confirmed (0.90)"),
        snapshot=f"{camera}/{event_id}/snapshot.jpg",
    )


def image(n: int) -> bytes:
    return JPEG + bytes([n]) * 16


def comment_id(args: dict) -> str:
    return args["initial_comment"].split("`")[1]


def button_event_id(args: dict) -> str:
    blocks = args["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    return blocks[1]["elements"][0]["value"].split("|")[0]


def test_slack_errors_then_unreachable_with_a_restart_delivers_all_in_order_once(
    broker_settings, tmp_path: Path, make_bus
) -> None:
    slack = FakeSlack().start()
    proxy = SilenceableProxy(slack.port)
    data_dir = tmp_path / "data"
    overrides = {
        "slack_api_url": proxy.api_url,
        "slack_timeout_seconds": 1,
        "retry_initial_seconds": 0.1,
        "retry_max_seconds": 0.5,
        "alert_min_interval_seconds": 0,
    }
    statuses: Collector[ServiceStatus] = Collector()
    watcher = make_bus("watcher", start=False)
    watcher.subscribe(SERVICE_STATUS, statuses, service="slack-gateway")
    watcher.start()
    assert watcher.wait_connected(10)
    detector = make_bus("detector")
    gateways: list[Harness] = []
    ids: list[str] = []

    def publish(n: int, gateway: Harness) -> None:
        camera = ("front", "back", "garage")[n % 3]
        event_id = f"{camera}-{n:04d}"
        path = gateway.settings.media_dir / camera / event_id / "snapshot.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image(n))
        detector.publish(MOTION_EVENTS, alert(event_id, camera))
        ids.append(event_id)

    try:
        first = Harness(broker_settings, data_dir, slack, **overrides).start()
        gateways.append(first)
        # phase 1: Slack answers 500/503 and 429 with Retry-After
        slack.fail_next(
            "files.getUploadURLExternal",
            Fault(500, {"ok": False, "error": "internal_error"}),
            Fault(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"}),
            Fault(503, {"ok": False, "error": "service_unavailable"}),
        )
        slack.fail_next(
            "chat.postMessage",
            Fault(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"}),
            Fault(500, {"ok": False, "error": "internal_error"}),
        )
        for n in range(3):
            publish(n, first)
        wait_until(lambda: len(slack.calls_to("chat.postMessage")) == 3, 30)

        # phase 2: Slack unreachable (connections accepted, never answered)
        proxy.silent.set()
        outage_start = time.monotonic()
        for n in range(3, 7):
            publish(n, first)
            time.sleep(0.5)
        wait_until(lambda: first.metric("homesec_slack_alert_backlog") == 4, 15)
        wait_until(lambda: any(s.state is ServiceState.DEGRADED for s in statuses.payloads), 15)
        # the gateway restarts in the middle of the outage; events keep coming meanwhile
        first.stop()
        publish(7, first)
        publish(8, first)
        second = Harness(broker_settings, data_dir, slack, **overrides).start()
        gateways.append(second)
        for n in range(9, 12):
            publish(n, second)
            time.sleep(0.3)
        wait_until(lambda: second.metric("homesec_slack_alert_backlog") == 9, 15)
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_start)))
        assert proxy.accepted_while_silent >= 3, "the gateway kept trying during the outage"
        assert second.metric("homesec_slack_alerts_failed_total") >= 2
        assert len(slack.calls_to("chat.postMessage")) == 3, "nothing got through the outage"

        # phase 3: Slack is back
        proxy.restore()
        wait_until(lambda: len(slack.calls_to("chat.postMessage")) >= len(ids), 40)
        wait_until(lambda: second.metric("homesec_slack_alert_backlog") == 0, 15)
        time.sleep(1.0)  # a duplicate would arrive now

        uploads = slack.completed_uploads()
        assert [comment_id(args) for args, _ in uploads] == ids, "in publish order, once each"
        assert [data for _, data in uploads] == [image(n) for n in range(len(ids))]
        posts = [button_event_id(call.args) for call in slack.calls_to("chat.postMessage")]
        assert posts == ids
        wait_until(lambda: statuses.payloads[-1].state is ServiceState.OK, 15)
    finally:
        for gateway in gateways:
            if gateway._thread.is_alive():
                gateway.stop()
        proxy.close()
        slack.stop()

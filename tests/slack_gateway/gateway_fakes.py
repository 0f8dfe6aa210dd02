"""Test doubles with real network parts: a local Slack Web API (+ Socket Mode WebSocket) and a
harness that runs the gateway in-process, served by uvicorn on a loopback port."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from aiohttp import WSMsgType, web

from homesec.bus import Bus, Received
from homesec.contract import (
    PTZ_COMMAND,
    PTZ_STATE,
    SNAPSHOT,
    SNAPSHOT_REQUEST,
    SYSTEM_SET,
    AlertDecision,
    EventType,
    Frame,
    MotionEvent,
    PtzCommand,
    PtzState,
    SetCommand,
    SnapshotRequest,
)
from homesec.metrics import ServiceMetrics
from homesec.settings import BrokerSettings
from homesec.state import SystemStateOwner
from homesec_slack_gateway.service import GatewayService
from homesec_slack_gateway.settings import SlackGatewaySettings
from support import Collector, wait_until

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-test-bot-token"
APP_TOKEN = "xapp-test-app-token"
RESPONSE_URL_POSTS = 5
"""Slack: a response_url takes up to five posts within 30 minutes."""
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8 + b"\xff\xd9"


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    status: int
    ok: bool = True  # False: answered with a fault (an HTTP error or ``"ok": false``)


@dataclass
class Fault:
    """One answer Slack gives instead of doing the work (``fail_next``)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    applied: bool = False  # Slack did the work, then the answer was lost (a failure reply)
    when: Callable[[dict[str, Any]], bool] | None = None  # only calls with matching arguments
    sticky: bool = False  # answer every matching call so, until clear_faults()


@dataclass(frozen=True)
class SharedFile:
    """A file Slack took: the name given to getUploadURLExternal, its bytes, the complete call."""

    name: str
    data: bytes
    complete: dict[str, Any]


def refusal(error: str, **options: Any) -> Fault:
    """Slack's answer to a call it refuses: HTTP 200, ``{"ok": false, "error": error}``."""
    return Fault(200, {"ok": False, "error": error}, **options)


class FakeSlack:
    """Plays the Slack endpoints the gateway uses and records what it receives."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.uploads: dict[str, bytes] = {}
        self.responses: list[dict[str, Any]] = []  # bodies posted to response_urls
        self.refused_responses: list[dict[str, Any]] = []  # posts past a response_url's five
        self._response_posts: dict[str, int] = {}
        self.acks: list[dict[str, Any]] = []  # Socket Mode acknowledgements
        self.faults: dict[str, list[Fault]] = {}
        self._clear_after: str | None = None
        # conversations.list: the workspace's channels, served page_size at a time
        self.channels: list[dict[str, str]] = [{"id": "C0ALERTS", "name": "alerts"}]
        self.page_size = 100
        self.messages: list[dict[str, Any]] = []  # what conversations.history returns
        self.max_upload_bytes: int | None = None  # the upload URL answers 413 above this
        self._filenames: dict[str, str] = {}  # file id → name given to getUploadURLExternal
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ws: web.WebSocketResponse | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeSlack:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application(client_max_size=20 * 1024 * 1024)
        app.router.add_post("/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_post("/response/{n}", self._response)
        app.router.add_get("/ws", self._websocket)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        async def _stop() -> None:
            if self._ws is not None:
                await self._ws.close()
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return self.base + "/api/"

    def response_url(self) -> str:
        return f"{self.base}/response/{next(self._ids)}"

    # ---- queries -----------------------------------------------------------------------------

    def calls_to(self, method: str, ok_only: bool = True) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method and (c.ok or not ok_only)]

    def fail_next(self, method: str, *faults: Fault) -> None:
        """Answer the next calls of ``method`` with these faults, in order (a sticky one stays)."""
        with self._lock:
            self.faults.setdefault(method, []).extend(faults)

    def clear_faults(self, after: str | None = None) -> None:
        """Slack works again: forget every fault not yet used (sticky ones included). With
        ``after``: once the next faulted call of that method is answered (the end of the
        sender's attempt in progress, so no attempt sees Slack half fixed)."""
        with self._lock:
            if after is None:
                self.faults.clear()
            else:
                self._clear_after = after

    def _fault_for(self, method: str, args: dict[str, Any]) -> Fault | None:
        with self._lock:
            faults = self.faults.get(method, [])
            for n, fault in enumerate(faults):
                if fault.when is None or fault.when(args):
                    if not fault.sticky:
                        del faults[n]
                    if method == self._clear_after:
                        self.faults.clear()
                        self._clear_after = None
                    return fault
        return None

    def posts(self) -> list[dict[str, Any]]:
        """Arguments of the chat.postMessage calls Slack accepted, in order."""
        return [c.args for c in self.calls_to("chat.postMessage")]

    def completed_uploads(self) -> list[tuple[dict[str, Any], bytes]]:
        """(completeUploadExternal args, uploaded bytes) per successful upload, in order."""
        out = []
        for call in self.calls_to("files.completeUploadExternal"):
            files = json.loads(call.args["files"])
            out.append((call.args, self.uploads[files[0]["id"]]))
        return out

    def shared_files(self) -> list[SharedFile]:
        """Every file shared by a successful completeUploadExternal, in order."""
        out = []
        for call in self.calls_to("files.completeUploadExternal"):
            for file in json.loads(call.args["files"]):
                name = self._filenames.get(file["id"], "")
                out.append(SharedFile(name, self.uploads[file["id"]], call.args))
        return out

    def files_named(self, suffix: str) -> list[SharedFile]:
        return [f for f in self.shared_files() if f.name.endswith(suffix)]

    # ---- HTTP handlers -----------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        raw = await request.read()
        if request.content_type == "application/json" and raw:
            args.update(json.loads(raw))
        elif raw:
            args.update(dict(parse_qsl(raw.decode())))
        fault = self._fault_for(method, args)
        if fault is not None:
            if fault.applied:
                self._answer(method, args)
            with self._lock:
                self.calls.append(Call(method, args, fault.status, ok=False))
            return web.json_response(fault.body, status=fault.status, headers=fault.headers)
        body = self._answer(method, args)
        with self._lock:
            self.calls.append(Call(method, args, 200))
        return web.json_response(body)

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "files.getUploadURLExternal":
            file_id = f"F{next(self._ids):06d}"
            self._filenames[file_id] = args.get("filename", "")
            return {"ok": True, "file_id": file_id, "upload_url": f"{self.base}/upload/{file_id}"}
        if method == "files.completeUploadExternal":
            files = json.loads(args["files"])
            shared = [{"id": f["id"], "name": self._filenames.get(f["id"], "")} for f in files]
            with self._lock:
                self.messages.append(
                    {"channel": args.get("channel_id"), "ts": f"{time.time():.6f}", "files": shared}
                )
            return {"ok": True, "files": [{"id": f["id"], "title": f.get("title")} for f in files]}
        if method == "conversations.list":
            return self._page(self.channels, args, "channels")
        if method == "conversations.history":
            with self._lock:
                found = [
                    m
                    for m in reversed(self.messages)
                    if m["channel"] == args.get("channel")
                    and float(m["ts"]) > float(args.get("oldest") or 0)
                ]
            return self._page(found, args, "messages")
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"{time.time():.6f}"}
        if method in ("chat.postMessage", "chat.update"):
            ts = args.get("ts") or f"{time.time():.6f}"
            return {"ok": True, "channel": args.get("channel"), "ts": ts}
        if method == "apps.connections.open":
            return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/ws"}
        return {"ok": False, "error": "unknown_method"}

    def _page(self, items: list[Any], args: dict[str, Any], key: str) -> dict[str, Any]:
        """Slack's cursor pagination: ``cursor`` in, ``response_metadata.next_cursor`` out."""
        start = int(args.get("cursor") or 0)
        end = start + min(int(args.get("limit") or 100), self.page_size)
        next_cursor = str(end) if end < len(items) else ""
        return {
            "ok": True,
            key: items[start:end],
            "response_metadata": {"next_cursor": next_cursor},
        }

    async def _upload(self, request: web.Request) -> web.Response:
        data = await request.read()
        if self.max_upload_bytes is not None and len(data) > self.max_upload_bytes:
            return web.Response(status=413, text="file too large")
        with self._lock:
            self.uploads[request.match_info["file_id"]] = data
        return web.Response(text=f"OK - {len(data)}")

    async def _response(self, request: web.Request) -> web.Response:
        body = await request.json()
        url = request.match_info["n"]
        with self._lock:
            # Slack takes five posts per response_url (its refusal's form is undocumented)
            if self._response_posts.get(url, 0) >= RESPONSE_URL_POSTS:
                self.refused_responses.append(body)
                return web.Response(status=404, text="used_url")
            self._response_posts[url] = self._response_posts.get(url, 0) + 1
            self.responses.append(body)
        return web.Response(text="ok")

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._ws = ws
        await ws.send_str(json.dumps({"type": "hello", "num_connections": 1}))
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                with self._lock:
                    self.acks.append(json.loads(msg.data))
        return ws

    # ---- Socket Mode -------------------------------------------------------------------------

    @property
    def socket_connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    def send_envelope(self, envelope: dict[str, Any]) -> None:
        assert self._ws is not None
        ws = self._ws
        asyncio.run_coroutine_threadsafe(ws.send_str(json.dumps(envelope)), self._loop).result(5)

    def ack_for(self, envelope_id: str) -> dict[str, Any] | None:
        with self._lock:
            for ack in self.acks:
                if ack.get("envelope_id") == envelope_id:
                    return ack
        return None


@pytest.fixture(name="slack")
def slack_fixture() -> Iterator[FakeSlack]:
    """Fixture ``slack``: the fake Slack Web API for one test (import it into a conftest)."""
    fake = FakeSlack().start()
    yield fake
    fake.stop()


def sign(body: bytes, timestamp: int | None = None, secret: str = SIGNING_SECRET) -> dict[str, str]:
    """Headers as Slack builds them for ``body``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = b"v0:" + ts.encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def button_payload(
    value: str, action_id: str, user: str = "U0OWNER", response_url: str | None = None
) -> dict[str, Any]:
    """A block_actions payload shaped like Slack's."""
    return {
        "type": "block_actions",
        "user": {"id": user, "username": "owner", "team_id": "T1"},
        "api_app_id": "A1",
        "team": {"id": "T1", "domain": "home"},
        "container": {
            "type": "message",
            "message_ts": "1764100000.000100",
            "channel_id": "C0ALERTS",
        },
        "channel": {"id": "C0ALERTS", "name": "homesec"},
        "message": {"type": "message", "ts": "1764100000.000100", "text": "Was someone there?"},
        "response_url": response_url,
        "trigger_id": "123.456",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "homesec_label",
                "value": value,
                "action_ts": "1764100001.0",
            }
        ],
    }


class Harness:
    """The gateway running in-process against a real broker and the fake Slack."""

    def __init__(
        self, broker: BrokerSettings, data_dir: Path, slack: FakeSlack, **overrides: Any
    ) -> None:
        values: dict[str, Any] = {
            "broker": broker,
            "metrics_port": 0,
            "data_dir": data_dir,
            "host": "127.0.0.1",
            "port": 0,
            "slack_api_url": slack.api_url,
            "slack_bot_token": BOT_TOKEN,
            "slack_signing_secret": SIGNING_SECRET,
            "slack_app_token": APP_TOKEN,
            "alert_channel": "C0ALERTS",
            "alert_min_interval_seconds": 0,
            "retry_initial_seconds": 0.05,
            "retry_max_seconds": 0.2,
            "alert_clips": False,  # the clip tests turn it on
            "clip_poll_seconds": 0.05,
            "snapshot_wait_seconds": 1.0,
            "ptz_wait_seconds": 3.0,
            "allowed_users": ["U0OWNER"],
            "admin_users": ["U0OWNER"],
            "log_format": "text",
        }
        values.update(overrides)
        self.settings = SlackGatewaySettings(**values)
        self.slack = slack
        self.bus = Bus(broker, "slack-gateway", ServiceMetrics("slack-gateway"))
        self.service = GatewayService(self.bus, self.settings, self.bus.metrics.registry)
        self.stop_event = threading.Event()
        self._thread = threading.Thread(target=self.service.run, args=(self.stop_event,))

    def start(self, wait_bus: bool = True) -> Harness:
        self.bus.start()
        if wait_bus:
            assert self.bus.wait_connected(10)
        self._thread.start()
        assert self.service.ready.wait(10), "gateway did not start"
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self._thread.join(10)
        self.bus.stop(timeout=1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.service.http_port}"

    def post(
        self,
        body: bytes,
        headers: dict[str, str] | None = None,
        content_type: str = "application/x-www-form-urlencoded",
        timeout: float = 10.0,
    ) -> httpx.Response:
        all_headers = {"Content-Type": content_type, **(sign(body) if headers is None else headers)}
        return httpx.post(
            self.url + "/slack/events", content=body, headers=all_headers, timeout=timeout
        )

    def command(
        self,
        command: str,
        text: str = "",
        user: str = "U0OWNER",
        channel: str = "C0ASK",
        timeout: float = 10.0,
    ) -> tuple[httpx.Response, str]:
        """POST a signed slash command; returns the response and its response_url."""
        response_url = self.slack.response_url()
        form = {
            "token": "deprecated",
            "team_id": "T1",
            "team_domain": "home",
            "channel_id": channel,
            "channel_name": "general",
            "user_id": user,
            "user_name": "owner",
            "command": command,
            "text": text,
            "api_app_id": "A1",
            "response_url": response_url,
            "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        }
        return self.post(urlencode(form).encode(), timeout=timeout), response_url

    def click(self, payload: dict[str, Any]) -> httpx.Response:
        return self.post(urlencode({"payload": json.dumps(payload)}).encode())

    def metric(self, name: str, **labels: str) -> float:
        value = self.service.registry.get_sample_value(name, labels or None)
        return 0.0 if value is None else value


def motion_event(
    event_id: str,
    kind: EventType = EventType.START,
    alert: bool = True,
    camera: str = "front",
    snapshot: str | None = "default",
    media: bool = False,
) -> MotionEvent:
    """A detector's motion event; ``snapshot="default"`` names the file write_snapshot writes;
    ``media``: the detector saved the event's media (its folder may get a clip)."""
    rel = f"{camera}/{event_id}/snapshot.jpg" if snapshot == "default" else snapshot
    return MotionEvent(
        media_dir=f"{camera}/{event_id}" if media else None,
        type=kind,
        event_id=event_id,
        camera=camera,
        started_at=1764100000.0,
        frame_seq=10,
        frame_captured_at=1764100000.5,
        area=0.118,
        motion_score=0.63,
        person_score=0.84 if alert else None,
        decision=AlertDecision(
            alert=alert, reason="armed, person confirmed (0.84)" if alert else "no person yet"
        ),
        snapshot=rel,
    )


def write_snapshot(gateway: Harness, camera: str, event_id: str, data: bytes) -> None:
    path = gateway.settings.media_dir / camera / event_id / "snapshot.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def image(n: int, size: int = 16) -> bytes:
    """A small JPEG-looking image, distinct per ``n``."""
    return JPEG + bytes([n % 256]) * size


def responses_for(slack: FakeSlack, count: int = 1, timeout: float = 15.0) -> list[dict[str, Any]]:
    wait_until(lambda: len(slack.responses) >= count, timeout)
    return list(slack.responses)


def iter_texts(bodies: list[dict[str, Any]]) -> Iterator[str]:
    for body in bodies:
        yield str(body.get("text", ""))


class Peers:
    """Stand-ins for detector (the real SystemStateOwner), camera and ptz on the real broker."""

    def __init__(self, make_bus) -> None:
        self.sets: Collector[SetCommand] = Collector()
        self.ptz_commands: Collector[PtzCommand] = Collector()
        self.snapshot_requests: Collector[SnapshotRequest] = Collector()
        detector = make_bus("detector", start=False)
        self.owner = SystemStateOwner(detector, restore_wait_seconds=0.1)
        detector.subscribe(SYSTEM_SET, self.sets)
        detector.start()
        assert detector.wait_connected(10)
        self.owner.start()
        assert self.owner.wait_restored(10)
        self.camera = make_bus("camera", start=False)
        self.camera.subscribe(SNAPSHOT_REQUEST, self._snapshot)
        self.camera.start()
        self.ptz = make_bus("ptz", start=False)
        self.ptz.subscribe(PTZ_COMMAND, self._move)
        self.ptz.start()
        assert self.camera.wait_connected(10) and self.ptz.wait_connected(10)
        self.seq = 0

    def _snapshot(self, msg: Received[SnapshotRequest]) -> None:
        self.snapshot_requests(msg)
        self.seq += 1
        frame = Frame(
            camera=msg.params["camera"],
            seq=self.seq,
            captured_at=time.time(),
            width=640,
            height=480,
            jpeg=JPEG,
        )
        self.camera.publish(SNAPSHOT, frame, camera=msg.params["camera"])

    def _move(self, msg: Received[PtzCommand]) -> None:
        self.ptz_commands(msg)
        cmd = msg.payload
        pan, tilt = float(cmd.pan or 0), float(cmd.tilt or 0)
        state = PtzState(
            pan=pan,
            tilt=tilt,
            target_pan=pan,
            target_tilt=tilt,
            backend="simulated",
            last_request_id=cmd.request_id,
        )
        self.ptz.publish(PTZ_STATE, state, camera=msg.params["camera"])

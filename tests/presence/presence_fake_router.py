"""A local HTTP server that behaves like a home router's web API (for the presence tests).

Three flavours on one server:
* cookie session: ``POST /api/login`` (form ``username``/``password``) sets ``sid``;
  ``GET /api/devices`` needs it; answers ``{"data": {"devices": [{"mac", "hostname"}]}}``;
* token session: ``POST /api/token`` (JSON) → ``{"result": {"token": ...}}``;
  ``GET /api/clients`` needs ``Authorization: Bearer <token>``;
* JSON-RPC like OpenWrt's ubus: ``POST /ubus``; ``session login`` → ``[0, {"ubus_rpc_session"}]``,
  ``hostapd.* get_clients`` → ``[0, {"clients": {"<mac>": {...}}}]``; an unknown session gets
  ``{"error": {"code": -32002, "message": "Access denied"}}``.
``fail_status`` makes every request fail with that status; ``expire()`` forgets sessions.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

USERNAME = "admin"
PASSWORD = 'p@ss "w{o}rd" ${x}'  # quotes, braces and a dollar: must survive templating


@dataclass
class RouterState:
    devices: list[dict[str, Any]] = field(default_factory=list)
    sessions: set[str] = field(default_factory=set)
    fail_status: int | None = None
    logins: int = 0
    device_requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def expire(self) -> None:
        with self.lock:
            self.sessions.clear()

    def set_devices(self, devices: list[dict[str, Any]]) -> None:
        with self.lock:
            self.devices = list(devices)

    def _new_session(self) -> str:
        sid = secrets.token_hex(8)
        with self.lock:
            self.sessions.add(sid)
            self.logins += 1
        return sid


class FakeRouter:
    def __init__(self) -> None:
        self.state = RouterState()
        state = self.state

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _failing(self) -> bool:
                if state.fail_status is not None:
                    self._body()
                    self._send(state.fail_status, {"error": "internal"})
                    return True
                return False

            def do_POST(self) -> None:
                if self._failing():
                    return
                if self.path == "/api/login":
                    form = parse_qs(self._body().decode())
                    if form.get("username") == [USERNAME] and form.get("password") == [PASSWORD]:
                        sid = state._new_session()
                        self._send(200, {"ok": True}, {"Set-Cookie": f"sid={sid}; Path=/"})
                    else:
                        self._send(401, {"error": "bad credentials"})
                elif self.path == "/api/token":
                    body = json.loads(self._body() or b"{}")
                    if body.get("auth") == {"user": USERNAME, "pass": PASSWORD}:
                        self._send(200, {"result": {"token": state._new_session()}})
                    else:
                        self._send(403, {"error": "bad credentials"})
                elif self.path == "/ubus":
                    self._ubus(json.loads(self._body() or b"{}"))
                else:
                    self._send(404, {"error": "not found"})

            def _ubus(self, call: dict[str, Any]) -> None:
                session, obj, method, args = call["params"]
                rid = call.get("id")
                if (obj, method) == ("session", "login"):
                    if args == {"username": USERNAME, "password": PASSWORD}:
                        token = state._new_session()
                        result = [0, {"ubus_rpc_session": token, "timeout": 300}]
                        self._send(200, {"jsonrpc": "2.0", "id": rid, "result": result})
                    else:
                        self._send(200, {"jsonrpc": "2.0", "id": rid, "result": [6]})
                    return
                with state.lock:
                    ok = session in state.sessions
                    devices = list(state.devices)
                    state.device_requests += 1
                if not ok:
                    error = {"code": -32002, "message": "Access denied"}
                    self._send(200, {"jsonrpc": "2.0", "id": rid, "error": error})
                    return
                clients = {d["mac"].lower(): {"auth": True, "signal": -50} for d in devices}
                self._send(200, {"jsonrpc": "2.0", "id": rid, "result": [0, {"clients": clients}]})

            def do_GET(self) -> None:
                if self._failing():
                    return
                with state.lock:
                    state.device_requests += 1
                    devices = list(state.devices)
                    sessions = set(state.sessions)
                if self.path == "/api/devices":
                    cookie = SimpleCookie(self.headers.get("Cookie", ""))
                    if "sid" not in cookie or cookie["sid"].value not in sessions:
                        self._send(401, {"error": "session expired"})
                        return
                    self._send(200, {"data": {"devices": devices, "count": len(devices)}})
                elif self.path == "/api/clients":
                    auth = self.headers.get("Authorization", "")
                    if not auth.startswith("Bearer ") or auth[7:] not in sessions:
                        self._send(401, {"error": "no token"})
                        return
                    self._send(200, {"clients": devices})
                else:
                    self._send(404, {"error": "not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeRouter:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def cookie_router_config(url: str, **overrides: Any) -> dict[str, Any]:
    """Settings (as a dict for RouterSettings) for the cookie flavour."""
    cfg: dict[str, Any] = {
        "base_url": url,
        "login_url": "/api/login",
        "login_body": {"username": "${username}", "password": "${password}"},
        "login_body_format": "form",
        "username": USERNAME,
        "password": PASSWORD,
        "session": "cookie",
        "devices_url": "/api/devices",
        "devices_path": "data.devices[*]",
        "mac_field": "mac",
        "name_field": "hostname",
        "timeout_seconds": 2,
    }
    cfg.update(overrides)
    return cfg

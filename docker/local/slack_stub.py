"""A Slack Web API stand-in for the engine tests (standard library only).

    python3 slack_stub.py PORT

Answers the methods the gateway calls (chat.postMessage, chat.update, files.getUploadURLExternal,
files.completeUploadExternal, conversations.list/history, auth.test), takes file uploads and
response_url posts, and shows what it received: ``GET /_calls``, ``GET /_responses`` (JSON) and
``GET /_uploads/<file id>`` (the bytes). URLs it hands out use the Host header it was called with,
so they work on the compose network."""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

CHANNELS = [{"id": "C0ALERTS", "name": "alerts"}]


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[dict[str, Any]] = []
        self.responses: list[Any] = []
        self.uploads: dict[str, bytes] = {}
        self.messages: list[dict[str, Any]] = []
        self.filenames: dict[str, str] = {}
        self.ids = itertools.count(1)


STATE = State()


def answer(method: str, args: dict[str, Any], base: str) -> dict[str, Any]:
    """What Slack answers ``method`` with (the parts the gateway reads)."""
    if method == "files.getUploadURLExternal":
        file_id = f"F{next(STATE.ids):06d}"
        STATE.filenames[file_id] = str(args.get("filename", ""))
        return {"ok": True, "file_id": file_id, "upload_url": f"{base}/upload/{file_id}"}
    if method == "files.completeUploadExternal":
        files = json.loads(args["files"]) if isinstance(args["files"], str) else args["files"]
        shared = [{"id": f["id"], "name": STATE.filenames.get(f["id"], "")} for f in files]
        STATE.messages.append(
            {"channel": args.get("channel_id"), "ts": f"{time.time():.6f}", "files": shared}
        )
        return {"ok": True, "files": [{"id": f["id"], "title": f.get("title")} for f in files]}
    if method == "conversations.list":
        return {"ok": True, "channels": CHANNELS, "response_metadata": {"next_cursor": ""}}
    if method == "conversations.history":
        found = [
            m
            for m in reversed(STATE.messages)
            if m["channel"] == args.get("channel")
            and float(m["ts"]) > float(args.get("oldest") or 0)
        ]
        return {"ok": True, "messages": found, "response_metadata": {"next_cursor": ""}}
    if method in ("chat.postMessage", "chat.update"):
        return {
            "ok": True,
            "channel": args.get("channel"),
            "ts": args.get("ts") or f"{time.time():.6f}",
        }
    if method == "auth.test":
        return {"ok": True, "user_id": "U0BOT", "team_id": "T1"}
    return {"ok": False, "error": "unknown_method"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(
            f"slack-stub: {self.command} {self.path} {args[1] if len(args) > 1 else ''}\n"
        )

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, value: Any) -> None:
        self._send(200, json.dumps(value).encode())

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        with STATE.lock:
            if path == "/_healthz":
                self._json({"ok": True})
            elif path == "/_calls":
                self._json(STATE.calls)
            elif path == "/_responses":
                self._json(STATE.responses)
            elif path.startswith("/_uploads/"):
                data = STATE.uploads.get(path.rsplit("/", 1)[1])
                self._send(200 if data is not None else 404, data or b"", "image/jpeg")
            else:
                self._send(404, b"{}")

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        base = f"http://{self.headers.get('Host', 'slack')}"
        with STATE.lock:
            if url.path.startswith("/api/"):
                method = url.path.removeprefix("/api/")
                args: dict[str, Any] = dict(parse_qsl(url.query))
                if raw and self.headers.get("Content-Type", "").startswith("application/json"):
                    args.update(json.loads(raw))
                elif raw:
                    args.update(dict(parse_qsl(raw.decode())))
                body = answer(method, args, base)
                STATE.calls.append({"method": method, "args": args, "ok": body["ok"]})
                self._json(body)
            elif url.path.startswith("/upload/"):
                STATE.uploads[url.path.rsplit("/", 1)[1]] = raw
                self._send(200, f"OK - {len(raw)}".encode(), "text/plain")
            elif url.path.startswith("/response/"):
                STATE.responses.append(json.loads(raw or b"null"))
                self._send(200, b"ok", "text/plain")
            else:
                self._send(404, b"{}")


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    print(f"slack-stub: listening on {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

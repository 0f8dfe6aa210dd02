"""The stack under test seen from the host: only through its published loopback ports."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import boto3
import httpx
from botocore.config import Config
from engine import Compose
from mqtt_watch import Watch, retained

OWNER = "U0OWNER"
ALERT_CHANNEL = "C0ALERTS"
BUCKET = "homesec-training"


@dataclass
class Stack:
    compose: Compose

    def env(self, name: str) -> str:
        return self.compose.env[name]

    def port(self, name: str) -> int:
        return int(self.env(f"HOMESEC_TEST_{name}_PORT"))

    def secret(self, name: str) -> str:
        return (Path(self.env("HOMESEC_TEST_SECRETS")) / name).read_text().strip()

    # ---- broker -------------------------------------------------------------------------------

    def watch(self, *topics: str, user: str = "admin") -> Watch:
        password = self.secret(f"mqtt_password_{user.replace('-', '_')}")
        return Watch(self.port("BROKER"), user, password, *topics)

    def retained(self, topic: str, timeout: float = 10) -> bytes:
        password = self.secret("mqtt_password_admin")
        return retained(self.port("BROKER"), "admin", password, topic, timeout)

    def armed(self) -> bool:
        """The retained ``homesec/system/armed`` value."""
        return bool(json.loads(self.retained("homesec/system/armed"))["value"])

    # ---- Slack --------------------------------------------------------------------------------

    @property
    def gateway(self) -> str:
        return "http://" + self.env("HOMESEC_GATEWAY_PUBLISH")

    @property
    def slack(self) -> str:
        return f"http://127.0.0.1:{self.port('SLACK')}"

    def signed_post(self, body: bytes) -> httpx.Response:
        ts = str(int(time.time()))
        secret = self.secret("slack_signing_secret").encode()
        digest = hmac.new(secret, b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": f"v0={digest}",
        }
        return httpx.post(f"{self.gateway}/slack/events", content=body, headers=headers, timeout=10)

    def command(self, text: str) -> httpx.Response:
        form = {
            "team_id": "T1",
            "channel_id": "C0ASK",
            "user_id": OWNER,
            "user_name": "owner",
            "command": "/homesec",
            "text": text,
            "api_app_id": "A1",
            # reached by the gateway on the compose network
            "response_url": "http://slack:8080/response/1",
            "trigger_id": "1.2.3",
        }
        return self.signed_post(urlencode(form).encode())

    def click(self, value: str, action_id: str) -> httpx.Response:
        payload = {
            "type": "block_actions",
            "user": {"id": OWNER, "username": "owner", "team_id": "T1"},
            "api_app_id": "A1",
            "team": {"id": "T1", "domain": "home"},
            "container": {"type": "message", "message_ts": "1.1", "channel_id": ALERT_CHANNEL},
            "channel": {"id": ALERT_CHANNEL, "name": "alerts"},
            "message": {"type": "message", "ts": "1.1", "text": "Was someone there?"},
            "response_url": "http://slack:8080/response/2",
            "trigger_id": "123.456",
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "homesec_label",
                    "value": value,
                    "action_ts": "1.2",
                }
            ],
        }
        return self.signed_post(urlencode({"payload": json.dumps(payload)}).encode())

    def slack_calls(self, method: str) -> list[dict[str, Any]]:
        calls = httpx.get(f"{self.slack}/_calls", timeout=5).json()
        return [c for c in calls if c["method"] == method and c["ok"]]

    def alerts(self) -> list[dict[str, Any]]:
        """chat.postMessage calls to the alert channel that carry the label buttons."""
        return [
            c
            for c in self.slack_calls("chat.postMessage")
            if c["args"].get("channel") == ALERT_CHANNEL and "homesec_label" in json.dumps(c)
        ]

    def uploads(self) -> list[bytes]:
        out = []
        for call in self.slack_calls("files.completeUploadExternal"):
            files = call["args"]["files"]
            files = json.loads(files) if isinstance(files, str) else files
            out.append(httpx.get(f"{self.slack}/_uploads/{files[0]['id']}", timeout=5).content)
        return out

    # ---- S3, Prometheus -------------------------------------------------------------------------

    def s3(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.port('S3')}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard"}),
        )

    def s3_keys(self) -> list[str]:
        pages = self.s3().get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def prometheus(self, path: str) -> Any:
        url = f"http://127.0.0.1:{self.port('PROMETHEUS')}{path}"
        return httpx.get(url, timeout=5).json()


def button_value(call: dict[str, Any], action_id: str) -> str:
    blocks = call["args"]["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    for block in blocks:
        for element in block.get("elements", []):
            if element.get("action_id") == action_id:
                return str(element["value"])
    raise AssertionError(f"no button {action_id} in {blocks}")

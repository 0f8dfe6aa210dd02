"""The whole local stack as `homesec run` starts it, against a private Mosquitto, a fake Slack
Web API (tests/slack_gateway/gateway_fakes.py) and moto's S3 server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import boto3
import httpx
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "slack_gateway"))

from gateway_fakes import BOT_TOKEN, SIGNING_SECRET, FakeSlack, sign, slack_fixture  # noqa: F401 (fixture)

from homesec.broker import MosquittoProcess, free_port
from homesec.forking import process_title
from homesec.services import CATALOGUE
from support import wait_until

BUCKET = "homesec-training"
ALERT_CHANNEL = "C0ALERTS"
OWNER = "U0OWNER"


class S3:
    """moto's standalone S3 server on loopback."""

    def __init__(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(s3={"addressing_style": "path"}),
        )
        self.client.create_bucket(Bucket=BUCKET)

    def keys(self) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def stop(self) -> None:
        self.server.stop()


class Stack:
    """`homesec run` as a subprocess, with every port private to the test."""

    def __init__(self, tmp_path: Path, broker: MosquittoProcess, slack: FakeSlack, s3: S3) -> None:
        self.tmp_path = tmp_path
        self.broker = broker
        self.slack = slack
        self.s3 = s3
        self.data_dir = tmp_path / "var"
        self.gateway_port = free_port()
        self.metrics_ports = {info.name: free_port() for info in CATALOGUE}
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("HOMESEC_", "SLACK_", "AWS_"))
        }
        self.env.update(
            PYTHONUNBUFFERED="1",
            HOMESEC_BROKER_PORT=str(broker.port),
            HOMESEC_BROKER_RECONNECT_MAX_SECONDS="2",
            HOMESEC_DATA_DIR=str(self.data_dir),
            HOMESEC_RUN_START_BROKER="false",
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_BOT_TOKEN=BOT_TOKEN,
            HOMESEC_SLACK_GATEWAY_SLACK_API_URL=slack.api_url,
            HOMESEC_SLACK_GATEWAY_ALERT_CHANNEL=ALERT_CHANNEL,
            HOMESEC_SLACK_GATEWAY_PORT=str(self.gateway_port),
            HOMESEC_SLACK_GATEWAY_HOST="127.0.0.1",
            HOMESEC_SLACK_GATEWAY_ALLOWED_USERS=OWNER,
            HOMESEC_SLACK_GATEWAY_ADMIN_USERS=OWNER,
            HOMESEC_SLACK_GATEWAY_RETRY_INITIAL_SECONDS="0.2",
            HOMESEC_SLACK_GATEWAY_RETRY_MAX_SECONDS="2",
            HOMESEC_UPLOADER_BUCKET=BUCKET,
            HOMESEC_UPLOADER_ENDPOINT_URL=s3.endpoint,
            HOMESEC_UPLOADER_REGION="us-east-1",
            HOMESEC_UPLOADER_ADDRESSING_STYLE="path",
            HOMESEC_UPLOADER_INTERVAL_SECONDS="3",
            HOMESEC_UPLOADER_RETRY_BASE_SECONDS="1",
            HOMESEC_UPLOADER_RETRY_MAX_SECONDS="3",
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
        )
        for info in CATALOGUE:
            self.env[f"{info.env_prefix}METRICS_PORT"] = str(self.metrics_ports[info.name])
            self.env[f"{info.env_prefix}METRICS_HOST"] = "127.0.0.1"
            self.env[f"{info.env_prefix}LOG_FORMAT"] = "text"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = tmp_path / "stack.log"

    def start(self, **env: str) -> Stack:
        self.launch(**env)
        wait_until(self.healthy, timeout=30)
        return self

    def launch(self, **env: str) -> Stack:
        """Start `homesec run` without waiting for it (e.g. before the broker exists)."""
        self.env.update(env)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "homesec.cli", "run"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def power_cut(self) -> None:
        """SIGKILL the runner and every service at once (its own process group)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    # ---- services ------------------------------------------------------------------------------

    def service_pid(self, name: str) -> int:
        info = next(i for i in CATALOGUE if i.name == name)
        # a fork of the runner shows its title; a fresh interpreter (HOMESEC_RUN_FORK=false)
        # its module
        pattern = f"^{process_title(info)}( |$)|-m {info.module}( |$)"
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid), "-f", pattern], capture_output=True, text=True
        )
        pids = out.stdout.split()
        assert pids, f"{name} is not running"
        return int(pids[0])

    def metrics(self, name: str) -> str:
        url = f"http://127.0.0.1:{self.metrics_ports[name]}/metrics"
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.read().decode()

    def metric(self, name: str, sample: str) -> float:
        """Sum of the samples of ``sample`` (a name, optionally with a {label="..."} prefix)."""
        total = 0.0
        try:
            text = self.metrics(name)
        except OSError:
            return 0.0
        for line in text.splitlines():
            if line.startswith(sample) and not line.startswith("#"):
                rest = line[len(sample) :]
                if rest[:1] in (" ", "{") or sample.endswith("}"):
                    total += float(line.rsplit(" ", 1)[1])
        return total

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.gateway_url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    # ---- Slack ---------------------------------------------------------------------------------

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def command(
        self, command: str, text: str = "", user: str = OWNER
    ) -> tuple[httpx.Response, str]:
        """A slash command signed as Slack signs it; returns the response and its response_url."""
        response_url = self.slack.response_url()
        form = {
            "team_id": "T1",
            "channel_id": "C0ASK",
            "user_id": user,
            "user_name": "owner",
            "command": command,
            "text": text,
            "api_app_id": "A1",
            "response_url": response_url,
            "trigger_id": "1.2.3",
        }
        return self.post(urlencode(form).encode()), response_url

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        all_headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            **(sign(body) if headers is None else headers),
        }
        return httpx.post(
            f"{self.gateway_url}/slack/events", content=body, headers=all_headers, timeout=10
        )

    def click(self, payload: dict[str, Any]) -> httpx.Response:
        return self.post(urlencode({"payload": json.dumps(payload)}).encode())


@pytest.fixture
def s3() -> Iterator[S3]:
    server = S3()
    yield server
    server.stop()


@pytest.fixture
def stack(tmp_path: Path, broker: MosquittoProcess, slack: FakeSlack, s3: S3) -> Iterator[Stack]:
    st = Stack(tmp_path, broker, slack, s3)
    yield st
    st.stop()
    print(st.log()[-4000:])

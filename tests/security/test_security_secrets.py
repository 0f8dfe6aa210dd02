"""Secrets never leak: every service started as a process with every secret it takes set
(broker password, Slack tokens and signing secret, AWS keys, router password), at DEBUG level,
doing work that fails (S3 and router unreachable, a wrong broker password, refused Slack
requests): no secret appears in any log line, in any `/metrics` page or in the gateway's
`/healthz`.

The broker is the deployment configuration (password file, ACL, anonymous refused) from
`tests/deploy/deploy_support.py`; each service logs in as its own user.
"""

from __future__ import annotations

import secrets
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "deploy"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "slack_gateway"))

from deploy_support import (
    Running,
    SecuredBroker,
    connect,
    start_secured_broker,
    start_service,
    stop_services,
    wait_healthy,
)
from gateway_fakes import sign

from homesec.broker import free_port
from homesec.contract import AlertDecision, EventType, MotionEvent
from homesec.services import BY_NAME, CATALOGUE


def _secret(kind: str) -> str:
    return f"{kind}-{secrets.token_hex(12)}"


SLACK_BOT_TOKEN = "xoxb-" + _secret("bot")
SLACK_SIGNING_SECRET = _secret("signing")
SLACK_APP_TOKEN = "xapp-" + _secret("app")
AWS_KEY_ID = "AKIA" + secrets.token_hex(8).upper()
AWS_SECRET = _secret("awssecret")
ROUTER_PASSWORD = _secret("router")
WRONG_BROKER_PASSWORD = _secret("wrongpw")


def _closed_port() -> int:
    return free_port()  # nobody listens there


def _extra_env(name: str, gateway_port: int) -> dict[str, str]:
    dead = _closed_port()
    if name == "slack-gateway":
        return {
            "SLACK_BOT_TOKEN": SLACK_BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
            "SLACK_APP_TOKEN": SLACK_APP_TOKEN,
            "HOMESEC_SLACK_GATEWAY_PORT": str(gateway_port),
            "HOMESEC_SLACK_GATEWAY_SLACK_API_URL": f"http://127.0.0.1:{dead}/api/",
            "HOMESEC_SLACK_GATEWAY_ALERT_CHANNEL": "C0ALERTS",
        }
    if name == "uploader":
        return {
            "HOMESEC_UPLOADER_BUCKET": "homesec-secrets-test",
            "HOMESEC_UPLOADER_ENDPOINT_URL": f"http://127.0.0.1:{dead}",
            "HOMESEC_UPLOADER_REGION": "us-east-1",
            "HOMESEC_UPLOADER_AWS_ACCESS_KEY_ID": AWS_KEY_ID,
            "HOMESEC_UPLOADER_AWS_SECRET_ACCESS_KEY": AWS_SECRET,
            "HOMESEC_UPLOADER_INTERVAL_SECONDS": "1",
            "HOMESEC_UPLOADER_CONNECT_TIMEOUT_SECONDS": "1",
            "HOMESEC_UPLOADER_S3_MAX_ATTEMPTS": "1",
        }
    if name == "presence":
        return {
            "HOMESEC_PRESENCE_BACKEND": "router",
            "HOMESEC_PRESENCE_PEOPLE": '{"alice": ["aa:bb:cc:dd:ee:ff"]}',
            "HOMESEC_PRESENCE_POLL_SECONDS": "1",
            "HOMESEC_PRESENCE_ROUTER__BASE_URL": f"http://127.0.0.1:{dead}",
            "HOMESEC_PRESENCE_ROUTER__LOGIN_URL": "/login",
            "HOMESEC_PRESENCE_ROUTER__USERNAME": "admin",
            "HOMESEC_PRESENCE_ROUTER__PASSWORD": ROUTER_PASSWORD,
            "HOMESEC_PRESENCE_ROUTER__LOGIN_BODY": '{"user": "${username}", "pw": "${password}"}',
            "HOMESEC_PRESENCE_ROUTER__TIMEOUT_SECONDS": "1",
        }
    return {}


class Started:
    def __init__(self, broker: SecuredBroker, running: list[Running], gateway_port: int) -> None:
        self.broker = broker
        self.running = running
        self.gateway_port = gateway_port
        self.pages: dict[str, str] = {}

    def all_secrets(self) -> dict[str, str]:
        found = {
            "SLACK_BOT_TOKEN": SLACK_BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
            "SLACK_APP_TOKEN": SLACK_APP_TOKEN,
            "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
            "AWS_ACCESS_KEY_ID": AWS_KEY_ID,
            "router password": ROUTER_PASSWORD,
            "wrong broker password": WRONG_BROKER_PASSWORD,
        }
        for user, password in self.broker.passwords.items():
            found[f"broker password of {user}"] = password
        return found


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Started]:
    broker = start_secured_broker(tmp_path_factory.mktemp("broker"))
    tmp_path = tmp_path_factory.mktemp("services")
    gateway_port = free_port()
    running: list[Running] = []
    try:
        for info in CATALOGUE:
            env = {
                "HOMESEC_BROKER_USERNAME": info.name,
                # half the services read the password from the environment, half from a file
                f"{info.env_prefix}LOG_LEVEL": "DEBUG",
                **_extra_env(info.name, gateway_port),
            }
            if info.name in ("camera", "slack-gateway", "uploader"):
                env["HOMESEC_BROKER_PASSWORD"] = broker.passwords[info.name]
            else:
                secret = broker.secrets_dir / f"mqtt_password_{info.name.replace('-', '_')}"
                env["HOMESEC_BROKER_PASSWORD_FILE"] = str(secret)
            running.append(start_service(info, broker.proc, tmp_path, env))
        problems = wait_healthy(running, 60)
        assert not problems, problems
        # a second ptz instance with a wrong password: refused by the broker, keeps retrying
        wrong = start_service(
            BY_NAME["ptz"],
            broker.proc,
            tmp_path_factory.mktemp("wrong"),
            {
                "HOMESEC_BROKER_USERNAME": "ptz",
                "HOMESEC_BROKER_PASSWORD": WRONG_BROKER_PASSWORD,
                "HOMESEC_PTZ_INSTANCE": "wrong",
                "HOMESEC_PTZ_LOG_LEVEL": "DEBUG",
            },
        )
        running.append(wrong)
        yield Started(broker, running, gateway_port)
    finally:
        stop_services(running)
        broker.proc.kill()


def test_no_secret_in_logs_metrics_or_health(started: Started) -> None:
    base = f"http://127.0.0.1:{started.gateway_port}"
    body = urlencode(
        {"command": "/homesec", "text": "status", "user_id": "U1", "channel_id": "C1"}
    ).encode()
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    # refused requests (they are logged / counted) and one correctly signed request
    assert httpx.post(base + "/slack/events", content=body, headers=form).status_code == 401
    wrong = sign(body, secret="not-the-secret")
    assert (
        httpx.post(base + "/slack/events", content=body, headers={**form, **wrong}).status_code
        == 401
    )
    good = sign(body, secret=SLACK_SIGNING_SECRET)
    assert (
        httpx.post(base + "/slack/events", content=body, headers={**form, **good}).status_code
        == 200
    )
    pages = {"gateway /healthz": httpx.get(base + "/healthz", timeout=10).text}
    pages["gateway /metrics/"] = httpx.get(base + "/metrics/", timeout=10).text
    # an alert the gateway cannot deliver (Slack unreachable): failures with the bot token in use
    admin = connect(started.broker.port, "admin", started.broker.passwords["admin"])
    event = MotionEvent(
        type=EventType.START,
        event_id="front-secret-1",
        camera="front",
        started_at=time.time(),
        frame_seq=1,
        frame_captured_at=time.time(),
        decision=AlertDecision(alert=True, reason="armed"),
    )
    admin.publish("homesec/motion/events", event.model_dump_json().encode())
    time.sleep(3)  # uploader, presence and the refused ptz fail a few times meanwhile
    for r in started.running[:-1]:
        with urllib.request.urlopen(f"http://127.0.0.1:{r.port}/metrics", timeout=10) as resp:
            pages[f"{r.info.name} /metrics"] = resp.read().decode()
    wrong_ptz = started.running[-1]
    assert wrong_ptz.proc.poll() is None, "a refused login must not kill the service"
    admin.close()
    stop_services(started.running)

    logs = {r.info.name: r.log.read_text() for r in started.running[:-1]}
    logs["ptz (wrong password)"] = wrong_ptz.log.read_text()
    # the services really ran and logged (DEBUG), including the failures
    assert all(len(text) > 200 for text in logs.values()), {k: len(v) for k, v in logs.items()}
    joined = "\n".join(logs.values()).lower()
    assert "status=401" in joined and "not authorized" in joined
    assert "connection refused" in logs["presence"].lower()
    assert "alert delivery failed" in logs["slack-gateway"]
    leaks = [
        f"{what} in {where}"
        for where, text in {**logs, **pages}.items()
        for what, value in started.all_secrets().items()
        if value in text
    ]
    assert not leaks, leaks

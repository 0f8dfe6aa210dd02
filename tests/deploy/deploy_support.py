"""Helpers for the deployment checks: the repository's broker config on a real Mosquitto."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from homesec.broker import MosquittoProcess, free_port
from homesec.healthcheck import check
from homesec.services import ServiceInfo
from support import wait_until

REPO = Path(__file__).resolve().parents[2]
MOSQUITTO_DIR = REPO / "mosquitto"
SERVICE_USERS = ("camera", "detector", "slack-gateway", "presence", "uploader", "ptz")
USERS = (*SERVICE_USERS, "homeassistant", "nodered", "admin")


@dataclass
class SecuredBroker:
    proc: MosquittoProcess
    ws_port: int
    passwords: dict[str, str]
    secrets_dir: Path

    @property
    def port(self) -> int:
        return self.proc.port


def deployment_config_text(ws_port: int) -> str:
    """mosquitto.conf with container paths and ports replaced (placeholders for MosquittoProcess)."""
    text = (MOSQUITTO_DIR / "mosquitto.conf").read_text()
    assert "{" not in text and "}" not in text, "braces would break the template"
    replacements = [
        (r"(?m)^password_file /mosquitto/data/passwd$", "password_file {data_dir}/passwd"),
        (r"(?m)^acl_file /mosquitto/config/acl$", f"acl_file {MOSQUITTO_DIR / 'acl'}"),
        (r"(?m)^persistence_location /mosquitto/data/$", "persistence_location {data_dir}/"),
        (r"(?m)^listener 1883$", "listener {port} {host}"),
        (r"(?m)^listener 9001$", f"listener {ws_port} 127.0.0.1"),
        (r"(?m)^log_dest stdout$", "log_dest file {data_dir}/mosquitto.log"),
    ]
    for pattern, new in replacements:
        text, count = re.subn(pattern, new.replace("\\", "\\\\"), text)
        assert count == 1, f"mosquitto.conf: expected exactly one line matching {pattern!r}"
    return text + "\nuser {user}\n"


def make_password_file(secrets_dir: Path, out: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        ["sh", str(MOSQUITTO_DIR / "make-passwords.sh"), str(secrets_dir), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, f"make-passwords.sh failed: {result.stderr}"
    return result.stdout


def start_secured_broker(tmp_path: Path, extra_config: str = "") -> SecuredBroker:
    """The deployment config on free ports, with random passwords for every user."""
    if shutil.which("mosquitto_passwd") is None:
        raise RuntimeError("mosquitto_passwd not found: apt-get install mosquitto")
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir(parents=True)
    passwords = {user: secrets.token_urlsafe(16) for user in USERS}
    for user, password in passwords.items():
        (secrets_dir / f"mqtt_password_{user.replace('-', '_')}").write_text(password + "\n")
    data_dir = (tmp_path / "data").resolve()
    data_dir.mkdir()
    make_password_file(secrets_dir, data_dir / "passwd")
    ws_port = free_port()
    proc = MosquittoProcess(
        data_dir=data_dir, config_text=deployment_config_text(ws_port) + extra_config
    )
    proc.start()
    wait_until(lambda: _port_listening(ws_port), 10)
    return SecuredBroker(proc, ws_port, passwords, secrets_dir)


def _port_listening(port: int) -> bool:
    from homesec.broker import port_open

    return port_open("127.0.0.1", port, 0.2)


@dataclass
class Client:
    """A paho MQTT v5 client that records what it receives."""

    user: str | None
    client: mqtt.Client
    connack: threading.Event = field(default_factory=threading.Event)
    reason: str = ""
    failed: bool = False
    received: list[tuple[str, bytes]] = field(default_factory=list)
    subacks: list[list[int]] = field(default_factory=list)

    def topics(self) -> list[str]:
        return [t for t, _ in list(self.received)]

    def subscribe(self, topic: str) -> list[int]:
        before = len(self.subacks)
        self.client.subscribe(topic, qos=1)
        wait_until(lambda: len(self.subacks) > before, 10)
        return self.subacks[before]

    def publish(self, topic: str, payload: bytes = b"x") -> None:
        self.client.publish(topic, payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect(port: int, user: str | None, password: str | None, transport: str = "tcp") -> Client:
    paho = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"acl-test-{user}-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
        transport=transport,  # type: ignore[arg-type]
        reconnect_on_failure=False,
    )
    if user is not None:
        paho.username_pw_set(user, password)
    c = Client(user, paho)

    def on_connect(client, userdata, flags, reason_code, properties):  # type: ignore[no-untyped-def]
        c.failed = reason_code.is_failure
        c.reason = str(reason_code)
        c.connack.set()

    def on_message(client, userdata, message):  # type: ignore[no-untyped-def]
        c.received.append((message.topic, bytes(message.payload)))

    def on_subscribe(client, userdata, mid, reason_codes, properties):  # type: ignore[no-untyped-def]
        c.subacks.append([rc.value for rc in reason_codes])

    paho.on_connect = on_connect
    paho.on_message = on_message
    paho.on_subscribe = on_subscribe
    paho.connect("127.0.0.1", port)
    paho.loop_start()
    assert c.connack.wait(10), f"no CONNACK for {user}"
    return c


@dataclass
class Running:
    info: ServiceInfo
    proc: subprocess.Popen[bytes]
    port: int
    log: Path


def start_service(
    info: ServiceInfo,
    broker: MosquittoProcess,
    tmp_path: Path,
    extra_env: dict[str, str] | None = None,
) -> Running:
    """``python -m <module>`` against ``broker`` with metrics on a free port, in its own folder."""
    port = free_port()
    work = tmp_path / info.name
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOMESEC_", "SLACK_", "AWS_"))}
    env.update(
        {
            "HOMESEC_BROKER_HOST": broker.host,
            "HOMESEC_BROKER_PORT": str(broker.port),
            "HOMESEC_DATA_DIR": str(work / "data"),
            "HOMESEC_SECRETS_DIR": str(work / "no-secrets"),
            f"{info.env_prefix}METRICS_PORT": str(port),
            f"{info.env_prefix}METRICS_HOST": "127.0.0.1",
            f"{info.env_prefix}LOG_FORMAT": "text",
        }
    )
    if info.http_port is not None:
        env[f"{info.env_prefix}PORT"] = "0"
        env[f"{info.env_prefix}HOST"] = "127.0.0.1"
    env.update(extra_env or {})
    log = work / "service.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", info.module], cwd=work, env=env, stdout=out, stderr=out
        )
    return Running(info, proc, port, log)


def wait_healthy(running: list[Running], timeout: float) -> dict[str, str]:
    """Wait until every service's /metrics answers and says it is connected to the broker (the
    compose health check); returns service → problem (with the log's tail) for the others."""
    deadline = time.monotonic() + timeout
    pending = {r.info.name: r for r in running}
    problems: dict[str, str] = {}
    while pending and time.monotonic() < deadline:
        for name, r in list(pending.items()):
            if r.proc.poll() is not None:
                problems[name] = f"exited with {r.proc.returncode}:\n{r.log.read_text()[-1500:]}"
                del pending[name]
            elif not check(r.port, require_mqtt=True, timeout=2):
                del pending[name]
        time.sleep(0.3)
    for name, r in pending.items():
        problems[name] = f"not healthy in {timeout} s: {check(r.port)}\n{r.log.read_text()[-1500:]}"
    return problems


def stop_services(running: list[Running]) -> None:
    for r in running:
        if r.proc.poll() is None:
            r.proc.terminate()
    for r in running:
        try:
            r.proc.wait(15)
        except subprocess.TimeoutExpired:
            r.proc.kill()
            r.proc.wait()


# ---- metric names used by the dashboard and the alert rules ------------------------------

PROMETHEUS_DIR = REPO / "prometheus"
GRAFANA_DIR = REPO / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "homesec-overview.json"
NAME_RE = re.compile(r"\b(?:homesec|process)_[a-zA-Z0-9_]+\b")
OWNER_PREFIXES: dict[str, tuple[str, ...]] = {
    "homesec_camera_": ("camera",),
    "homesec_detector_": ("detector",),
    "homesec_slack_": ("slack-gateway",),
    "homesec_presence_": ("presence",),
    "homesec_uploader_": ("uploader",),
    "homesec_ptz_": ("ptz",),
    "homesec_training_": ("slack-gateway",),  # the weekly training report's figures
    "homesec_commands_": ("slack-gateway", "presence"),  # homesec.confirm, in both senders
}


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def all_panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dash["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(dash: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in all_panels(dash) for t in p.get("targets", []) if "expr" in t]


def rule_expressions() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS_DIR / "rules" / "homesec.yml").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def metric_names(expressions: list[str]) -> set[str]:
    return {name for expr in expressions for name in NAME_RE.findall(expr)}


def exported_names(text: str) -> tuple[set[str], set[str]]:
    """(names a query may use, names that have samples) from Prometheus text format.

    A labelled metric is declared (HELP/TYPE) at registration but has samples only after its
    first use; a histogram declared ``h`` is queried as ``h_bucket``/``h_sum``/``h_count``."""
    names: set[str] = set()
    sampled: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            if kind in ("histogram", "gaugehistogram"):
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            elif kind == "summary":
                names |= {name, f"{name}_sum", f"{name}_count"}
            else:
                names.add(name)
        elif line and not line.startswith("#"):
            sampled.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names | sampled, sampled


def owners(metric: str) -> tuple[str, ...] | None:
    """The services that export ``metric``; None for the metrics every service has."""
    for prefix, services in OWNER_PREFIXES.items():
        if metric.startswith(prefix):
            return services
    return None


def scrape(port: int) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


# ---- the ACL file, read the way mosquitto applies it ----------------------------------------


def acl_allows(user: str, topic: str, access: str) -> bool:
    """Whether mosquitto/acl grants ``user`` ``access`` (read/write) on ``topic``.

    ``topic`` may be a subscription filter (``+``/``#`` are then matched literally by the ACL's own
    wildcards, as mosquitto does for SUBSCRIBE); ``$share/<group>/`` is stripped."""
    if topic.startswith("$share/"):
        topic = topic.split("/", 2)[2]
    current: str | None = None
    for line in (MOSQUITTO_DIR / "acl").read_text().splitlines():
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if parts[0] == "user":
            current = parts[1]
            continue
        if parts[0] == "topic" and current == user:
            kind, pattern = (parts[1], parts[2]) if len(parts) == 3 else ("readwrite", parts[1])
        elif parts[0] == "pattern":
            kind, pattern = (parts[1], parts[2]) if len(parts) == 3 else ("readwrite", parts[1])
            pattern = pattern.replace("%u", user)
        else:
            continue
        if kind in (access, "readwrite") and mqtt.topic_matches_sub(pattern, topic):
            return True
    return False


def broker_subscriptions(log_text: str) -> list[tuple[str, str]]:
    """(user, subscription filter) pairs from a mosquitto log written with ``log_type all``."""
    users: dict[str, str] = {}
    subs: list[tuple[str, str]] = []
    connected = re.compile(r"New client connected from \S+ as (\S+) \(.*u'([^']*)'\)")
    for line in log_text.splitlines():
        message = line.split(": ", 1)[-1]
        m = connected.search(message)
        if m:
            users[m.group(1)] = m.group(2)
            continue
        parts = message.split(" ")
        if len(parts) == 3 and parts[0] in users and parts[1] in ("0", "1", "2"):
            subs.append((users[parts[0]], parts[2]))
    return subs

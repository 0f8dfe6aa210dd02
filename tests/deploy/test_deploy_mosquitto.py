"""The deployment broker config (mosquitto/) loaded by a real Mosquitto: auth and per-user ACLs.

The password file is built by ``mosquitto/make-passwords.sh`` from secret files, exactly as the
compose service does; the config is the repository's ``mosquitto.conf`` with container paths and
ports rewritten to a temporary folder and free loopback ports.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from homesec.broker import MosquittoProcess, free_port, read_dev_settings
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


@pytest.fixture
def secured_broker(tmp_path: Path) -> Iterator[SecuredBroker]:
    if shutil.which("mosquitto_passwd") is None:
        pytest.fail("mosquitto_passwd not found: apt-get install mosquitto")
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    passwords = {user: secrets.token_urlsafe(16) for user in USERS}
    for user, password in passwords.items():
        (secrets_dir / f"mqtt_password_{user.replace('-', '_')}").write_text(password + "\n")
    data_dir = (tmp_path / "data").resolve()
    data_dir.mkdir()
    make_password_file(secrets_dir, data_dir / "passwd")
    ws_port = free_port()
    proc = MosquittoProcess(data_dir=data_dir, config_text=deployment_config_text(ws_port))
    proc.start()
    wait_until(lambda: _port_listening(ws_port), 10)
    yield SecuredBroker(proc, ws_port, passwords)
    proc.kill()


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


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        c.close()


def login(
    broker: SecuredBroker, clients: list[Client], user: str, transport: str = "tcp"
) -> Client:
    port = broker.ws_port if transport == "websockets" else broker.port
    c = connect(port, user, broker.passwords[user], transport)
    clients.append(c)
    assert not c.failed, f"{user} refused: {c.reason}"
    return c


# --------------------------------------------------------------------------------------------


def test_deploy_mosquitto_limits_match_dev_config() -> None:
    """The deployment broker accepts the same frame sizes as the broker the tests run."""
    deploy = read_dev_settings(MOSQUITTO_DIR / "mosquitto.conf")
    dev = read_dev_settings(MOSQUITTO_DIR / "mosquitto.dev.conf")
    assert deploy == dev
    text = (MOSQUITTO_DIR / "mosquitto.conf").read_text()
    for line in ("allow_anonymous false", "persistence true", "protocol websockets"):
        assert re.search(rf"(?m)^{line}$", text), f"mosquitto.conf lacks {line!r}"


def test_deploy_mosquitto_make_passwords_requires_every_service(tmp_path: Path) -> None:
    secrets_dir = tmp_path / "s"
    secrets_dir.mkdir()
    for user in ("camera", "detector", "admin"):
        (secrets_dir / f"mqtt_password_{user}").write_text("pw\n")
    result = subprocess.run(
        ["sh", str(MOSQUITTO_DIR / "make-passwords.sh"), str(secrets_dir), str(tmp_path / "pw")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "mqtt_password_slack_gateway" in result.stderr
    assert not (tmp_path / "pw").exists(), "a partial password file was written"


def test_deploy_mosquitto_refuses_anonymous_and_wrong_passwords(
    secured_broker: SecuredBroker, clients: list[Client]
) -> None:
    for port, transport in ((secured_broker.port, "tcp"), (secured_broker.ws_port, "websockets")):
        anon = connect(port, None, None, transport)
        clients.append(anon)
        assert anon.failed, f"anonymous accepted on {transport}"
        wrong = connect(port, "admin", "not-the-password", transport)
        clients.append(wrong)
        assert wrong.failed, f"wrong password accepted on {transport}"
    for user in USERS:
        login(secured_broker, clients, user)
    login(secured_broker, clients, "admin", transport="websockets")


# (user, topics it may publish, topics it must not publish)
PUBLISH_CASES = [
    (
        "camera",
        ["homesec/cam/front/frames", "homesec/cam/front/snapshot", "homesec/camera/status"],
        [
            "homesec/motion/events",
            "homesec/system/armed",
            "homesec/system/armed/set",
            "homesec/detector/availability",
            "homesec/ptz/front/command",
        ],
    ),
    (
        "detector",
        [
            "homesec/system/armed",
            "homesec/motion/events",
            "homesec/motion/front/state",
            "homeassistant/alarm_control_panel/homesec/alarm/config",
        ],
        [
            "homesec/cam/front/frames",
            "homesec/presence/home",
            "homesec/training/labels",
            "homesec/camera/availability",
        ],
    ),
    (
        "slack-gateway",
        [
            "homesec/system/armed/set",
            "homesec/ptz/front/command",
            "homesec/training/labels",
            "homesec/cam/front/snapshot/request",
        ],
        [
            "homesec/system/armed",
            "homesec/motion/events",
            "homesec/uploader/state",
            "homeassistant/alarm_control_panel/homesec/alarm/config",
        ],
    ),
    (
        "presence",
        ["homesec/presence/home", "homesec/system/armed/set"],
        ["homesec/system/notifications/set", "homesec/system/armed", "homesec/motion/events"],
    ),
    ("uploader", ["homesec/uploader/state"], ["homesec/training/labels", "homesec/system/armed"]),
    (
        "ptz",
        ["homesec/ptz/front/state"],
        ["homesec/ptz/front/command", "homesec/cam/front/frames", "homesec/system/armed/set"],
    ),
    (
        "homeassistant",
        [
            "homesec/system/armed/set",
            "homesec/system/training/set",
            "homesec/ptz/front/command",
            "homesec/cam/front/snapshot/request",
            "homesec/uploader/run",
            "homeassistant/status",
        ],
        [
            "homesec/system/armed",
            "homesec/motion/events",
            "homesec/presence/home",
            "homesec/cam/front/snapshot",
            "homesec/detector/availability",
        ],
    ),
    (
        "nodered",
        ["homesec/system/armed/set", "homesec/ptz/front/command", "homesec/uploader/run"],
        ["homesec/system/armed", "homesec/motion/front/state", "homeassistant/status"],
    ),
]


@pytest.mark.parametrize(
    ("user", "allowed", "denied"), PUBLISH_CASES, ids=[c[0] for c in PUBLISH_CASES]
)
def test_deploy_mosquitto_acl_publish(
    secured_broker: SecuredBroker,
    clients: list[Client],
    user: str,
    allowed: list[str],
    denied: list[str],
) -> None:
    """Each user reaches its own topics only; the admin (subscribed to #) is the witness."""
    admin = login(secured_broker, clients, "admin")
    assert admin.subscribe("#") == [1]
    sender = login(secured_broker, clients, user)
    marker = f"homesec/{user}/availability"
    for topic in denied + allowed:
        sender.publish(topic, f"{user}->{topic}".encode())
    sender.publish(marker, b"marker")  # the broker keeps one client's messages in order
    wait_until(lambda: marker in admin.topics(), 15)
    got = {t for t in admin.topics() if t != marker}
    assert got == set(allowed), (
        f"{user}: delivered {sorted(got)}; expected exactly {sorted(allowed)} "
        f"(denied should be {sorted(denied)})"
    )


def test_deploy_mosquitto_acl_read(secured_broker: SecuredBroker, clients: list[Client]) -> None:
    """A service subscribed to everything receives only the topics it may read."""
    admin = login(secured_broker, clients, "admin")
    readers = {
        user: login(secured_broker, clients, user) for user in ("uploader", "ptz", "nodered")
    }
    for c in readers.values():
        c.subscribe("homesec/#")
    sequence = [
        "homesec/motion/events",
        "homesec/system/armed",
        "homesec/cam/front/snapshot/request",
        "homesec/ptz/front/command",
        "homesec/training/labels",
        "homesec/uploader/run",
    ]
    for topic in sequence:
        admin.publish(topic, b"{}")
    last = "homesec/uploader/run"  # every reader below may read this one or ptz/command
    expected = {
        "uploader": {"homesec/system/armed", "homesec/training/labels", "homesec/uploader/run"},
        "ptz": {"homesec/system/armed", "homesec/ptz/front/command"},
        "nodered": set(sequence),
    }
    wait_until(lambda: last in readers["uploader"].topics(), 15)
    wait_until(lambda: last in readers["nodered"].topics(), 15)
    # ptz may not read uploader/run: flush with a topic it may read, published last
    admin.publish("homesec/ptz/front/command", b"flush")
    wait_until(lambda: readers["ptz"].topics().count("homesec/ptz/front/command") >= 2, 15)
    for user, c in readers.items():
        assert set(c.topics()) == expected[user], f"{user} read {sorted(set(c.topics()))}"


def test_deploy_mosquitto_websockets_listener_delivers(
    secured_broker: SecuredBroker, clients: list[Client]
) -> None:
    browser = login(secured_broker, clients, "nodered", transport="websockets")
    browser.subscribe("homesec/system/+")
    detector = login(secured_broker, clients, "detector")
    detector.publish("homesec/system/armed", b'{"value": true}')
    wait_until(lambda: "homesec/system/armed" in browser.topics(), 15)

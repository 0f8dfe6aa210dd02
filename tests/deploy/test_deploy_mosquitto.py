"""The deployment broker config (mosquitto/) loaded by a real Mosquitto: auth and per-user ACLs.

The password file is built by ``mosquitto/make-passwords.sh`` from secret files, exactly as the
compose service does; the config is the repository's ``mosquitto.conf`` with container paths and
ports rewritten to a temporary folder and free loopback ports.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_support import (
    MOSQUITTO_DIR,
    REPO,
    USERS,
    Client,
    SecuredBroker,
    acl_allows,
    connect,
    start_secured_broker,
)

from homesec.broker import read_dev_settings
from support import wait_until


@pytest.fixture
def secured_broker(tmp_path: Path) -> Iterator[SecuredBroker]:
    broker = start_secured_broker(tmp_path)
    yield broker
    broker.proc.kill()


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
            "homesec/training/labels",
            "homesec/alarm/state",
            "homesec/alarm/result",
            "homesec/cam/front/alert/snapshot",
        ],
        [
            "homesec/cam/front/frames",
            "homesec/alarm/set",
            "homesec/presence/home",
            "homesec/ptz/front/command",
            "homesec/camera/availability",
        ],
    ),
    (
        "slack-gateway",
        [
            "homesec/system/armed/set",
            "homesec/alarm/service/set",
            "homesec/ptz/front/command",
            "homesec/training/labels",
            "homesec/cam/front/snapshot/request",
        ],
        [
            "homesec/system/armed",
            "homesec/alarm/state",
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
            "homesec/alarm/set",
            "homesec/system/training/set",
            "homesec/ptz/front/command",
            "homesec/cam/front/snapshot/request",
            "homesec/uploader/run",
            "homeassistant/status",
        ],
        [
            "homesec/system/armed",
            "homesec/system/armed/set",
            "homesec/alarm/service/set",
            "homesec/alarm/state",
            "homesec/motion/events",
            "homesec/presence/home",
            "homesec/cam/front/snapshot",
            "homesec/detector/availability",
        ],
    ),
    (
        "nodered",
        ["homesec/alarm/set", "homesec/ptz/front/command", "homesec/uploader/run"],
        [
            "homesec/system/armed",
            "homesec/system/armed/set",
            "homesec/alarm/service/set",
            "homesec/motion/front/state",
            "homeassistant/status",
        ],
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


# ---- the ACL covers what the services' code publishes and subscribes -----------------------

CALL_RE = re.compile(r"\.(publish|publish_confirmed|subscribe)\(\s*([A-Z][A-Z_]+)\b")
HELPERS = {  # core helpers a service may host (a pattern of the call), and their channels
    r"SystemStateOwner\(": [("publish", "SYSTEM_STATE"), ("subscribe", "SYSTEM_STATE"),
                            ("subscribe", "SYSTEM_SET"), ("publish", "ALARM_STATE"),
                            ("subscribe", "ALARM_STATE"), ("subscribe", "ALARM_SET"),
                            ("subscribe", "ALARM_SERVICE_SET"), ("publish", "ALARM_RESULT")],
    r"SystemStateView\(": [("subscribe", "SYSTEM_STATE")],
    r"SystemStateView\([^)]*alarm=True": [("subscribe", "ALARM_STATE")],
    r"HomeAssistantDiscovery\(": [("subscribe", "PRESENCE"), ("subscribe", "PTZ_STATE")],
}  # fmt: skip


def channel_uses(service_dir: Path) -> set[tuple[str, str]]:
    uses: set[tuple[str, str]] = set()
    for path in service_dir.rglob("*.py"):
        text = path.read_text()
        uses |= {(verb, name) for verb, name in CALL_RE.findall(text)}
        for helper, calls in HELPERS.items():
            if re.search(rf"\b{helper}", text, re.DOTALL):
                uses |= set(calls)
    return uses


def test_deploy_mosquitto_acl_covers_the_services_code() -> None:
    """Every channel a service's code publishes (subscribes) is writable (readable) by its
    broker user, for an example topic of the channel (camera front, setting armed)."""
    from homesec import contract
    from homesec.services import CATALOGUE

    problems: list[str] = []
    checked = 0
    for info in CATALOGUE:
        service_dir = REPO / "services" / info.name / "src"
        if not service_dir.is_dir():
            continue
        for verb, name in sorted(channel_uses(service_dir)):
            channel = getattr(contract, name, None)
            if not isinstance(channel, contract.Channel):
                continue
            params = {p: {"camera": "front", "setting": "armed", "service": info.name}[p]
                      for p in re.findall(r"\{([a-z_]+)\}", channel.template)}  # fmt: skip
            topic = channel.topic("homesec", **params)
            access = "read" if verb == "subscribe" else "write"
            checked += 1
            if not acl_allows(info.name, topic, access):
                problems.append(f"{info.name}: .{verb}({name}) on {topic}, but may not {access} it")
    assert checked >= 15, f"only {checked} channel uses found: is the scan broken?"
    assert not problems, "mosquitto/acl lacks:\n  " + "\n  ".join(problems)


def test_deploy_mosquitto_acl_lets_command_senders_see_the_answers() -> None:
    """The gateway and presence send commands until the detector answers (homesec.confirm,
    subscribed in the core library, where the scan above does not look): they must read its
    answers and its availability, or a lost command would never be sent again."""
    for user in ("slack-gateway", "presence"):
        for topic in ("homesec/alarm/result", "homesec/detector/availability", "homesec/system/+"):
            assert acl_allows(user, topic, "read"), f"{user} may not read {topic}"

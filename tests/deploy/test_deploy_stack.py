"""Every service, logged in as its own broker user, runs against the deployment broker config.

This is the compose deployment minus Docker: ``mosquitto/mosquitto.conf`` + ``acl`` + the password
file from ``make-passwords.sh``, and each service started as ``python -m homesec_<name>`` with
``HOMESEC_BROKER_USERNAME`` / ``HOMESEC_BROKER_PASSWORD_FILE`` exactly as docker-compose.yml
sets them. It proves the ACL lets the real services do their work (no ``Denied`` in the broker's
log, state and commands flow) and that Home Assistant's user can drive the system.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_support import (
    Client,
    Running,
    SecuredBroker,
    connect,
    start_secured_broker,
    start_service,
    stop_services,
    wait_healthy,
)

from homesec.services import CATALOGUE
from support import wait_until


@pytest.fixture
def verbose_broker(tmp_path: Path) -> Iterator[SecuredBroker]:
    broker = start_secured_broker(tmp_path / "broker", extra_config="log_type all\n")
    yield broker
    broker.proc.kill()


@pytest.fixture
def stack(verbose_broker: SecuredBroker, tmp_path: Path) -> Iterator[list[Running]]:
    running: list[Running] = []
    for info in CATALOGUE:
        if not info.installed():
            continue
        secret = verbose_broker.secrets_dir / f"mqtt_password_{info.name.replace('-', '_')}"
        env = {"HOMESEC_BROKER_USERNAME": info.name, "HOMESEC_BROKER_PASSWORD_FILE": str(secret)}
        running.append(start_service(info, verbose_broker.proc, tmp_path, env))
    yield running
    stop_services(running)


def last_json(client: Client, topic: str) -> dict[str, object] | None:
    payloads = [p for t, p in list(client.received) if t == topic and p]
    return json.loads(payloads[-1]) if payloads else None


def test_deploy_stack_runs_under_the_acl(
    verbose_broker: SecuredBroker, stack: list[Running]
) -> None:
    names = {r.info.name for r in stack}
    if len(names) < len(CATALOGUE):
        pytest.skip(f"services not written yet: {sorted({i.name for i in CATALOGUE} - names)}")
    problems = wait_healthy(stack, 60)
    assert not problems, "services did not connect with their broker users:\n" + "\n".join(
        f"--- {n}: {p}" for n, p in problems.items()
    )
    admin = connect(verbose_broker.port, "admin", verbose_broker.passwords["admin"])
    ha = connect(verbose_broker.port, "homeassistant", verbose_broker.passwords["homeassistant"])
    try:
        admin.subscribe("homesec/#")
        admin.subscribe("homeassistant/#")
        # every service is online and publishes what it owns
        expected = {f"homesec/{info.name}/availability" for info in CATALOGUE} | {
            "homesec/cam/front/frames",
            "homesec/system/armed",
            "homesec/presence/home",
            "homesec/ptz/front/state",
            "homesec/uploader/state",
        }
        wait_until(lambda: expected <= set(admin.topics()), 30)

        # Home Assistant arms the system: the detector reads /set and republishes the state
        ha.publish("homesec/system/armed/set", b'{"value": true, "source": "home-assistant"}')
        wait_until(
            lambda: (last_json(admin, "homesec/system/armed") or {}).get("value") is True, 20
        )
        ha.publish("homesec/system/armed/set", b"OFF")
        wait_until(
            lambda: (last_json(admin, "homesec/system/armed") or {}).get("value") is False, 20
        )
        # ... moves the camera head: ptz reads its command topic
        ha.publish("homesec/ptz/front/command", b'{"pan": 21, "tilt": -7}')
        wait_until(
            lambda: (last_json(admin, "homesec/ptz/front/state") or {}).get("pan") == 21.0, 20
        )
        # ... asks for a snapshot: the camera answers on the retained snapshot topic
        before = admin.topics().count("homesec/cam/front/snapshot")
        ha.publish("homesec/cam/front/snapshot/request", b'{"requested_by": "home-assistant"}')
        wait_until(lambda: admin.topics().count("homesec/cam/front/snapshot") > before, 20)
    finally:
        admin.close()
        ha.close()

    log = (verbose_broker.proc.data_dir / "mosquitto.log").read_text()
    denied = sorted({line.split(": ", 1)[-1] for line in log.splitlines() if "Denied" in line})
    assert not denied, "the broker denied real service traffic:\n  " + "\n  ".join(denied)

"""Every service, logged in as its own broker user, runs against the deployment broker config.

This is the compose deployment minus Docker: ``mosquitto/mosquitto.conf`` + ``acl`` + the password
file from ``make-passwords.sh``, and each service started as ``python -m homesec_<name>`` with
``HOMESEC_BROKER_USERNAME`` / ``HOMESEC_BROKER_PASSWORD_FILE`` exactly as docker-compose.yml
sets them. It proves the ACL lets the real services do their work (no ``Denied`` in the broker's
log, state and commands flow) and that Home Assistant's user can drive the system.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from deploy_support import (
    Client,
    Running,
    SecuredBroker,
    acl_allows,
    broker_subscriptions,
    connect,
    dashboard,
    dashboard_queries,
    exported_names,
    metric_names,
    owners,
    rule_expressions,
    scrape,
    start_secured_broker,
    start_service,
    stop_services,
    wait_healthy,
)

from homesec.services import CATALOGUE
from support import wait_until


@pytest.fixture(scope="module")
def verbose_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    broker = start_secured_broker(tmp_path_factory.mktemp("broker"), extra_config="log_type all\n")
    yield broker
    broker.proc.kill()


@pytest.fixture(scope="module")
def stack(
    verbose_broker: SecuredBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Running]]:
    """Every installed service, started once for this module, healthy (or the test fails)."""
    tmp_path = tmp_path_factory.mktemp("services")
    running: list[Running] = []
    for info in CATALOGUE:
        if not info.installed():
            continue
        secret = verbose_broker.secrets_dir / f"mqtt_password_{info.name.replace('-', '_')}"
        env = {"HOMESEC_BROKER_USERNAME": info.name, "HOMESEC_BROKER_PASSWORD_FILE": str(secret)}
        running.append(start_service(info, verbose_broker.proc, tmp_path, env))
    problems = wait_healthy(running, 60)
    if problems:
        stop_services(running)
        pytest.fail(
            "services did not become healthy with their broker users:\n"
            + "\n".join(f"--- {n}: {p}" for n, p in problems.items())
        )
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

        # Home Assistant arms the alarm: the detector reads alarm/set, republishes the alarm
        # and its legacy mirror, and answers on alarm/result
        ha.publish("homesec/alarm/set", b'{"action": "ARM_HOME", "source": "home-assistant"}')
        wait_until(
            lambda: (last_json(admin, "homesec/alarm/state") or {}).get("state") == "armed_home",
            20,
        )
        wait_until(
            lambda: (last_json(admin, "homesec/system/armed") or {}).get("value") is True, 20
        )
        ha.publish("homesec/alarm/set", b"DISARM")
        wait_until(
            lambda: (last_json(admin, "homesec/system/armed") or {}).get("value") is False, 20
        )
        assert (last_json(admin, "homesec/alarm/result") or {}).get("accepted") is True
        # the code-less legacy switch is not Home Assistant's (mosquitto/acl)
        ha.publish("homesec/system/armed/set", b"ON")
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
    assert any("homeassistant" in d and "system/armed/set" in d for d in denied), denied
    denied = [d for d in denied if not ("homeassistant" in d and "system/armed/set" in d)]
    assert not denied, "the broker denied real service traffic:\n  " + "\n  ".join(denied)
    # mosquitto does not log refused subscriptions: check every one against the ACL
    subs = broker_subscriptions(log)
    services = {info.name for info in CATALOGUE}
    assert {user for user, _ in subs} >= services, f"subscriptions not found in the log: {subs}"
    refused = sorted(
        f"{user}: {topic}"
        for user, topic in set(subs)
        if user in services and not acl_allows(user, topic, "read")
    )
    assert not refused, "services subscribe to topics their ACL refuses:\n  " + "\n  ".join(refused)


def test_deploy_dashboard_and_alert_metrics_are_exported(
    stack: list[Running],
) -> None:
    """Every metric name in grafana/dashboards and prometheus/rules is exported by its service
    (read from the live /metrics of the services running above)."""
    running = stack
    absent = [i.name for i in CATALOGUE if not i.installed()]
    if not running:
        pytest.skip(f"no service is installed yet (missing: {absent})")
    time.sleep(3)  # let the pipeline run a little so labelled metrics get their first samples
    exports: dict[str, set[str]] = {}
    sampled: dict[str, set[str]] = {}
    for r in running:
        exports[r.info.name], sampled[r.info.name] = exported_names(scrape(r.port))

    wanted = metric_names(dashboard_queries(dashboard()) + rule_expressions())
    missing: list[str] = []
    skipped: list[str] = []
    for metric in sorted(wanted):
        services = list(owners(metric) or [r.info.name for r in running])
        for svc in services:
            if svc in absent:
                skipped.append(f"{metric} ({svc} not written yet)")
            elif metric not in exports[svc]:
                missing.append(f"{metric} (not exported by {svc})")
    assert not missing, (
        "metric names used by grafana/dashboards or prometheus/rules that the services do not "
        "export:\n  " + "\n  ".join(missing)
    )
    not_sampled = sorted(
        f"{m} ({svc})"
        for svc in exports
        for m in wanted & exports[svc] - sampled[svc]
        if svc in (owners(m) or (svc,))
    )
    if not_sampled:
        print("declared but without samples yet (labelled, not used yet):", not_sampled)
    if skipped:
        pytest.skip("not checked, service missing: " + "; ".join(skipped))

"""Engine tests: real images, a real dockerd, real compose.

They run whenever a Docker engine and compose v2 answer. Without one they are skipped with one
line saying why, except in CI (``CI=true``), where a missing engine fails them: .ci/run starts one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine import (
    REPO,
    SERVICES,
    Compose,
    compose_env,
    engine_problem,
    image_size_mb,
    local_base,
    run,
    secrets_override,
)
from mqtt_watch import Watch
from stack_client import Stack

from homesec.broker import free_port

REPORT: list[str] = []
_problem: list[str] = []
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def report(line: str) -> None:
    """A line for the "homesec engine" summary printed at the end of the run."""
    REPORT.append(line)
    print(f"engine: {line}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Engine tests last: the stack (a session fixture) then stops as soon as they are done,
    instead of loading the machine while the rest of the suite runs. Without an engine (and not
    in CI) they are left out, and the summary says so in one line."""
    here = Path(__file__).parent
    engine_items = [i for i in items if here in i.path.parents]
    others = [i for i in items if here not in i.path.parents]
    problem = engine_problem() if engine_items else ""
    if problem:
        _problem[:] = [problem, str(len(engine_items))]
    if problem and not IN_CI:
        config.hook.pytest_deselected(items=engine_items)
        items[:] = others
        return
    items[:] = others + engine_items


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _problem:
        verdict = "FAILED (CI=true)" if IN_CI else f"SKIPPED ({_problem[1]} tests)"
        terminalreporter.write_line(f"homesec engine tests {verdict}: {_problem[0]}", red=True)
    elif REPORT:
        terminalreporter.section("homesec engine")
        for line in REPORT:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def engine() -> str:
    """Fails every engine test when no engine answers (only reached in CI: elsewhere they are
    deselected at collection)."""
    problem = _problem[0] if _problem else engine_problem()
    if problem:
        pytest.fail(f"engine tests cannot run: {problem}", pytrace=False)
    return problem


@pytest.fixture(scope="session")
def base_image(engine: str) -> str:
    started = time.monotonic()
    image = local_base("amd64")
    report(f"local base {image} ready in {time.monotonic() - started:.0f} s")
    return image


@pytest.fixture(scope="session")
def stack_env(tmp_path_factory: pytest.TempPathFactory, base_image: str) -> dict[str, str]:
    """Secrets from docker/make-secrets.sh, test credentials filled in, loopback ports."""
    work = tmp_path_factory.mktemp("engine")
    secrets = work / "secrets"
    run(["sh", str(REPO / "docker" / "make-secrets.sh"), str(secrets)])
    for name, value in {
        "slack_bot_token": "xoxb-engine-test",
        "slack_signing_secret": "engine-test-signing-secret",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }.items():
        (secrets / name).write_text(value)
    override = secrets_override(secrets, work / "compose.secrets.json")
    ports = {
        "HOMESEC_TEST_BROKER_PORT": free_port(),
        "HOMESEC_TEST_PROMETHEUS_PORT": free_port(),
        "HOMESEC_TEST_SLACK_PORT": free_port(),
        "HOMESEC_TEST_S3_PORT": free_port(),
        "gateway": free_port(),
    }
    env = compose_env(
        HOMESEC_LOCAL_BASE=base_image,
        HOMESEC_GATEWAY_PUBLISH=f"127.0.0.1:{ports.pop('gateway')}",
        HOMESEC_TEST_SECRETS=str(secrets),
        HOMESEC_TEST_OVERRIDE=str(override),
        **{k: str(v) for k, v in ports.items()},
    )
    return env


@pytest.fixture(scope="session")
def built(stack_env: dict[str, str]) -> Compose:
    """Every image of the stack built (``docker compose build``), sizes reported."""
    compose = Compose(
        f"homesec-engine-{os.getpid()}", stack_env, [Path(stack_env["HOMESEC_TEST_OVERRIDE"])]
    )
    started = time.monotonic()
    compose("build", timeout=1800)
    took = time.monotonic() - started
    tag = stack_env["HOMESEC_IMAGE_TAG"]
    sizes = ", ".join(f"{s} {image_size_mb(f'homesec/{s}:{tag}'):.0f} MB" for s in SERVICES)
    report(f"images built in {took:.0f} s: {sizes}")
    return compose


@pytest.fixture(scope="session")
def stack(built: Compose) -> Iterator[Compose]:
    """The whole stack (Grafana aside) up and healthy, on empty named volumes."""
    compose = built
    compose("down", "-v", "--remove-orphans", check=False)
    started = time.monotonic()
    compose("up", "-d", "--wait", "--wait-timeout", "240", timeout=300)
    took = time.monotonic() - started
    report(f"stack up on empty named volumes (no chown), every service healthy, in {took:.0f} s")
    try:
        yield compose
    finally:
        print(compose.logs(tail=60))
        compose("down", "-v", "--remove-orphans", timeout=180, check=False)


@pytest.fixture(scope="session")
def events(stack: Compose) -> Iterator[Watch]:
    """Every motion event of the session, from the stack's start (reconnects by itself after
    broker restarts)."""
    watch = Stack(stack).watch("homesec/motion/events")
    yield watch
    watch.close()

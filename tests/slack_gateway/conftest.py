"""Fixtures of the slack-gateway tests: the fake Slack server and the running gateway."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gateway_fakes import FakeSlack, Harness, slack_fixture  # noqa: F401 (fixture)

from homesec.settings import BrokerSettings

GatewayFactory = Callable[..., Harness]


@pytest.fixture
def make_gateway(
    broker_settings: BrokerSettings, tmp_path: Path, slack: FakeSlack
) -> Iterator[GatewayFactory]:
    """Start gateways (settings overrides as keyword arguments); all stopped at teardown."""
    started: list[Harness] = []

    def factory(*, start: bool = True, **overrides: Any) -> Harness:
        harness = Harness(broker_settings, tmp_path / "data", slack, **overrides)
        started.append(harness)
        return harness.start() if start else harness

    yield factory
    for harness in started:
        harness.stop()


@pytest.fixture
def gateway(make_gateway: GatewayFactory) -> Harness:
    return make_gateway()

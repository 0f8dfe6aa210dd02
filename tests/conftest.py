"""Shared fixtures: a private Mosquitto per test, bus factories, repo paths."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from homesec.broker import MosquittoProcess
from homesec.bus import Bus
from homesec.metrics import ServiceMetrics
from homesec.settings import BrokerSettings

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
ASSETS = REPO / "tests" / "assets"


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoProcess]:
    """A private Mosquitto on a free port with its own persistence folder."""
    proc = MosquittoProcess(
        data_dir=tmp_path / "mosquitto", repo_config=REPO / "mosquitto" / "mosquitto.dev.conf"
    )
    proc.start()
    yield proc
    proc.kill()


@pytest.fixture
def broker_settings(broker: MosquittoProcess) -> BrokerSettings:
    return BrokerSettings(
        host=broker.host, port=broker.port, reconnect_min_seconds=1, reconnect_max_seconds=2
    )


BusFactory = Callable[..., Bus]


@pytest.fixture
def make_bus(broker_settings: BrokerSettings) -> Iterator[BusFactory]:
    """Create started buses for a test; all are stopped at teardown."""
    buses: list[Bus] = []

    def factory(service: str = "test", *, start: bool = True, **kwargs: object) -> Bus:
        settings = kwargs.pop("settings", broker_settings)
        assert isinstance(settings, BrokerSettings)
        bus = Bus(settings, service, ServiceMetrics(service), **kwargs)  # type: ignore[arg-type]
        buses.append(bus)
        if start:
            bus.start()
            assert bus.wait_connected(10), f"{service} did not connect"
        return bus

    yield factory
    for bus in buses:
        bus.stop(timeout=1)

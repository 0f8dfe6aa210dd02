"""Fixtures the detector's tests share: the clip training set, a started detector service."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from homesec_detector.service import DetectorService
from homesec_detector.settings import DetectorSettings
from homesec_detector.trainset import TrainingEvent, load_events
from homesec_detector.trainset_build import write_clip_set

ASSETS = Path(__file__).resolve().parents[1] / "assets"


@pytest.fixture(scope="module")
def training_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The evaluation clips as a training set (``trainset_build.write_clip_set``), per module."""
    root = tmp_path_factory.mktemp("training") / "training"
    write_clip_set(ASSETS, root)
    return root


@pytest.fixture(scope="module")
def events(training_set: Path) -> list[TrainingEvent]:
    found, _ = load_events(training_set)
    return found


@pytest.fixture
def run_detector(make_bus: Any) -> Iterator[Callable[[DetectorSettings], DetectorService]]:
    """Start a detector service on the test's broker (its bus connected, then the service);
    every one is closed at teardown."""
    services: list[DetectorService] = []

    def start(settings: DetectorSettings) -> DetectorService:
        bus = make_bus("detector", start=False)
        service = DetectorService(bus, settings, bus.metrics)
        services.append(service)
        bus.start()
        assert bus.wait_connected(10)
        service.start()
        return service

    yield start
    for service in services:
        service.close()

"""``HOMESEC_RUN_*``: the settings of ``homesec run``, read into a :class:`~homesec.runner.RunPlan`.

Kept apart from the runner so that the runner never imports pydantic (``runner.read_plan``
reads these in a short-lived child).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings

from homesec.services import CATALOGUE
from homesec.settings import BrokerSettings, load_settings, settings_config


class RunnerSettings(BaseSettings):
    """``HOMESEC_RUN_*``: what ``homesec run`` starts."""

    model_config = settings_config("HOMESEC_RUN_")

    broker: BrokerSettings = Field(default_factory=lambda: BrokerSettings())
    services: list[str] = Field(
        default_factory=lambda: [s.name for s in CATALOGUE],
        description="Services to start (comma-separated JSON list in env); missing ones are skipped",
    )
    start_broker: bool = Field(True, description="Start a local Mosquitto if none is reachable")
    data_dir: Path = Field(default_factory=lambda: Path(os.environ.get("HOMESEC_DATA_DIR", "var")))
    restart_min_seconds: float = Field(1.0, gt=0)
    restart_max_seconds: float = Field(30.0, gt=0)
    healthy_after_seconds: float = Field(30.0, gt=0, description="Uptime that resets the backoff")
    fork: bool = Field(
        default_factory=lambda: sys.platform == "linux",
        description="Fork services from a preloaded parent (shares memory; Linux only)",
    )
    merge_pages: bool = Field(
        True,
        description="Offer the runner's memory to the kernel's same-page merging (KSM), as "
        "every service does its own (HOMESEC_<SERVICE>_MERGE_PAGES)",
    )


def plan_values(overrides: dict[str, Any]) -> dict[str, Any]:
    """The settings (environment, ``.env``, ``overrides``) as the JSON-able values of a
    ``RunPlan``; a bad setting ends the process with an error that names it."""
    s = load_settings(RunnerSettings, **overrides)
    return {
        "broker_host": s.broker.host,
        "broker_port": s.broker.port,
        "start_broker": s.start_broker,
        "data_dir": str(s.data_dir),
        "services": list(s.services),
        "restart_min_seconds": s.restart_min_seconds,
        "restart_max_seconds": s.restart_max_seconds,
        "healthy_after_seconds": s.healthy_after_seconds,
        "fork": s.fork,
        "merge_pages": s.merge_pages,
    }

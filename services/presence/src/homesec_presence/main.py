"""Entry point: ``python -m homesec_presence``."""

from __future__ import annotations

from homesec.service import run_service
from homesec_presence.service import PresenceService
from homesec_presence.settings import PresenceSettings


def main(argv: list[str] | None = None) -> int:
    return run_service(
        "presence",
        PresenceSettings,
        lambda rt, settings: PresenceService(rt.bus, settings, rt.metrics),
    )

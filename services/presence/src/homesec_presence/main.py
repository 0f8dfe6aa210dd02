"""Entry point: ``python -m homesec_presence``."""

from __future__ import annotations

from homesec.service import ServiceRuntime
from homesec.settings import load_settings
from homesec_presence.service import PresenceService
from homesec_presence.settings import PresenceSettings


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(PresenceSettings)
    with ServiceRuntime("presence", settings) as rt:
        service = PresenceService(rt.bus, settings, rt.metrics)
        rt.start()
        service.run(rt.stop_event)
    return 0

"""``python -m homesec_uploader``: labelled training data → S3 (or a local folder)."""

from __future__ import annotations

import logging

from homesec.service import ServiceRuntime, run_service
from homesec_uploader.settings import UploaderSettings
from homesec_uploader.stores import make_store
from homesec_uploader.uploader import Uploader

log = logging.getLogger("homesec.uploader")


def build(rt: ServiceRuntime, settings: UploaderSettings) -> Uploader:
    """The store and the uploader (it opens the ledger and subscribes before the bus starts)."""
    store = make_store(settings)
    uploader = Uploader(rt.bus, settings, rt.metrics, store)
    log.info(
        "uploader ready",
        extra={
            "mode": settings.mode,
            "destination": store.destination,
            "interval_seconds": settings.interval_seconds,
            "ledger": str(settings.ledger_path),
        },
    )
    return uploader


def main(argv: list[str] | None = None) -> int:
    return run_service("uploader", UploaderSettings, build)

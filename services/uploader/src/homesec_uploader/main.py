"""``python -m homesec_uploader``: labelled training data → S3 (or a local folder)."""

from __future__ import annotations

import logging
import sqlite3

from homesec.service import ServiceRuntime
from homesec.settings import load_settings
from homesec_uploader.settings import UploaderSettings
from homesec_uploader.stores import make_store
from homesec_uploader.uploader import Uploader

log = logging.getLogger("homesec.uploader")


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(UploaderSettings)
    with ServiceRuntime("uploader", settings) as rt:
        store = make_store(settings)
        try:
            uploader = Uploader(rt.bus, settings, rt.metrics, store)  # subscribes before start
        except (sqlite3.Error, OSError) as exc:
            log.error(
                "cannot open the ledger",
                extra={"ledger": str(settings.ledger_path), "error": str(exc)},
            )
            return 1
        log.info(
            "uploader ready",
            extra={
                "mode": settings.mode,
                "destination": store.destination,
                "interval_seconds": settings.interval_seconds,
                "ledger": str(settings.ledger_path),
            },
        )
        try:
            rt.start()
            uploader.run(rt.stop_event)
        finally:
            uploader.close()
    return 0

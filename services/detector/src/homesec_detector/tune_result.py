"""Publishes the last ``homesec tune --record`` result, retained, on ``training/tune``.

``homesec tune --record`` (run by the owner, e.g. ``docker compose exec detector homesec tune
...``) leaves its summary in ``<data_dir>/tune/result.json``; the detector service, the topic's
one writer, publishes it when it starts and whenever the file changes (polled, cheap: one
``stat``). The gateway's weekly report reads it to say whether tune would propose a change.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import ValidationError

from homesec.bus import Bus
from homesec.contract import TUNE_RESULT, TuneResult

log = logging.getLogger("homesec_detector.tune_result")

RESULT_FILE = "tune/result.json"
"""Under the data dir: the last recorded result."""


class TuneResultPublisher:
    def __init__(self, bus: Bus, data_dir: Path, interval: float = 30.0) -> None:
        self.bus = bus
        self.path = data_dir / RESULT_FILE
        self.interval = interval
        self._seen: float | None = None

    def poll(self) -> bool:
        """Publish the result file if it changed since the last poll; True when published."""
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return False
        if mtime == self._seen:
            return False
        self._seen = mtime
        try:
            result = TuneResult.model_validate_json(self.path.read_bytes())
        except (OSError, ValidationError) as exc:
            log.warning("tune result unreadable", extra={"error": str(exc)[:200]})
            return False
        self.bus.publish(TUNE_RESULT, result)
        log.info("tune result published", extra={"proposes_change": result.proposes_change})
        return True

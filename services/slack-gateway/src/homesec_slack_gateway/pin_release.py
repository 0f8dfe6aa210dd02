"""Release the detector's alert pins once the gateway's outbox has settled their alerts.

The detector pins an alerting event's folder (:mod:`homesec.pins`) before it publishes the
alert, so retention keeps the media while the alert is still owed to Slack. This thread checks
the ``alert`` pins against the outbox every ``interval`` seconds and releases those whose alert
row is settled: posted, suppressed by the rate limit, or parked for good. A pin of an event the
gateway has not received yet (still queued at the broker while the gateway was down) stays.
Reconciling against the durable outbox, rather than releasing from the sender, means a crash
between a post and its release only delays the release.
"""

from __future__ import annotations

import logging
import threading

from homesec.pins import PinKind, Pins
from homesec_slack_gateway.metrics import GatewayMetrics
from homesec_slack_gateway.store import Store

log = logging.getLogger("homesec.slack_gateway.pins")

INTERVAL_SECONDS = 30.0


class AlertPinRelease:
    """A thread that releases settled alerts' pins."""

    def __init__(
        self, pins: Pins, store: Store, metrics: GatewayMetrics, interval: float | None = None
    ) -> None:
        self._pins = pins
        self._store = store
        self._metrics = metrics
        self._interval = INTERVAL_SECONDS if interval is None else interval
        self._thread: threading.Thread | None = None

    def release_once(self) -> int:
        """Release the pins of settled alerts now; returns how many."""
        released = self._pins.release_settled(PinKind.ALERT, self._store.alert_settled)
        if released:
            self._metrics.alert_pins_released.inc(released)
        return released

    def start(self, stop: threading.Event) -> None:
        self._thread = threading.Thread(
            target=self.run, args=(stop,), name="slack-pin-release", daemon=True
        )
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.release_once()
            except Exception:  # a broken store must not end the thread
                log.exception("releasing alert pins failed; retrying")
            stop.wait(self._interval)

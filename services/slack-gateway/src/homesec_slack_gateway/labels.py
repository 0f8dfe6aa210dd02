"""Training labels: stored in the outbox first, then published QoS 1 until the broker acks.

The uploader has a persistent session, so once the broker holds a label the uploader gets it
even if it is down at that moment; the outbox covers the gateway's side (a broker outage or a
gateway restart before the PUBACK).
"""

from __future__ import annotations

import logging
import threading

from pydantic import ValidationError

from homesec.bus import Bus, PublishFuture
from homesec.contract import TRAINING_LABELS, TrainingLabel
from homesec_slack_gateway.metrics import GatewayMetrics
from homesec_slack_gateway.store import Store

log = logging.getLogger("homesec.slack_gateway.labels")


class LabelOutbox:
    """Store a label durably, then publish it and mark it once the broker confirmed it."""

    def __init__(self, bus: Bus, store: Store, metrics: GatewayMetrics) -> None:
        self._bus = bus
        self._store = store
        self._metrics = metrics
        self._wake = threading.Event()
        self._in_flight: dict[int, PublishFuture] = {}
        self._thread: threading.Thread | None = None

    def add(self, label: TrainingLabel) -> None:
        self._store.add_label(label.model_dump_json())
        self._metrics.labels.labels(label.label.value).inc()
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def start(self, stop: threading.Event) -> None:
        self._thread = threading.Thread(
            target=self.run, args=(stop,), name="slack-label-outbox", daemon=True
        )
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.pump()
            except Exception:
                log.exception("label outbox failed; retrying")
            self._wake.wait(0.2)
            self._wake.clear()

    def pump(self) -> None:
        """Publish stored labels not yet in flight; mark the ones the broker acknowledged."""
        pending = self._store.pending_labels()
        self._metrics.label_backlog.set(len(pending))
        for label_id, payload in pending:
            future = self._in_flight.get(label_id)
            if future is None or future.dropped:
                try:
                    label = TrainingLabel.model_validate_json(payload)
                except ValidationError:
                    log.error("stored label unreadable; dropped", extra={"id": label_id})
                    self._store.mark_label_published(label_id)
                    continue
                future = self._bus.publish(TRAINING_LABELS, label)
                self._in_flight[label_id] = future
            if future.ok:
                self._store.mark_label_published(label_id)
                del self._in_flight[label_id]
                log.info("label delivered to broker", extra={"id": label_id})

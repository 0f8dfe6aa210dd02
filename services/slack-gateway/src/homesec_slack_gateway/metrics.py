"""The gateway's own Prometheus metrics, registered on the service registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

API_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GatewayMetrics:
    """Commands, alerts, labels, Slack API latency and signature failures."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.commands = Counter(
            "homesec_slack_commands",
            "Slash commands handled, by command and outcome",
            ["command", "outcome"],
            registry=registry,
        )
        self.alerts_sent = Counter(
            "homesec_slack_alerts_sent", "Alerts delivered to Slack", registry=registry
        )
        self.alerts_failed = Counter(
            "homesec_slack_alerts_failed",
            "Failed attempts to deliver an alert (retried, or parked if Slack refuses it for good)",
            registry=registry,
        )
        self.alerts_parked = Counter(
            "homesec_slack_alerts_parked",
            "Alerts Slack refused for good and parked, by whether their text fallback was posted",
            ["fallback"],
            registry=registry,
        )
        for fallback in ("posted", "failed"):  # exported as 0 from the start
            self.alerts_parked.labels(fallback)
        self.alerts_suppressed = Counter(
            "homesec_slack_alerts_suppressed",
            "Alert events not posted because of the per-camera rate limit",
            registry=registry,
        )
        self.alert_reposts_avoided = Counter(
            "homesec_slack_alert_reposts_avoided",
            "Retried alert uploads skipped because the image was already in the channel",
            registry=registry,
        )
        self.alert_backlog = Gauge(
            "homesec_slack_alert_backlog", "Alerts queued and not yet delivered", registry=registry
        )
        self.api_seconds = Histogram(
            "homesec_slack_api_seconds",
            "Slack Web API call duration, by method",
            ["method"],
            buckets=API_BUCKETS,
            registry=registry,
        )
        self.signature_failures = Counter(
            "homesec_slack_signature_failures",
            "Requests refused by Slack request verification, by reason",
            ["reason"],
            registry=registry,
        )
        self.training_alerts = Gauge(
            "homesec_training_alerts", "Alerts in the last 7 days", registry=registry
        )
        self.training_labels = Gauge(
            "homesec_training_labels",
            "Labels the owner gave in the last 7 days (missed alerts included)",
            registry=registry,
        )
        self.training_false_alert_ratio = Gauge(
            "homesec_training_false_alert_ratio",
            "Labelled alerts of the last 7 days the owner called unoccupied (0-1)",
            registry=registry,
        )
        self.training_missed = Gauge(
            "homesec_training_missed_alerts",
            "Missed alerts the owner reported in the last 7 days",
            registry=registry,
        )
        self.tune_proposes_change = Gauge(
            "homesec_training_tune_proposes_change",
            "1 when the last homesec tune --record proposes a settings change",
            registry=registry,
        )
        self.digest_candidates = Counter(
            "homesec_training_digest_candidates",
            "Hard negatives posted in the daily digest",
            registry=registry,
        )
        self.labels = Counter(
            "homesec_slack_labels",
            "Training labels received from Slack buttons, by label",
            ["label"],
            registry=registry,
        )
        self.pin_errors = Counter(
            "homesec_slack_pin_errors",
            "Pins that could not be written or removed (the pins folder not writable?)",
            registry=registry,
        )
        self.alert_pins_released = Counter(
            "homesec_slack_alert_pins_released",
            "Event folders released for retention once their alert was settled",
            registry=registry,
        )
        self.label_backlog = Gauge(
            "homesec_slack_label_backlog",
            "Training labels stored but not yet acknowledged by the broker",
            registry=registry,
        )
        self.clips_sent = Counter(
            "homesec_slack_clips_sent", "Alert clips posted to Slack", registry=registry
        )
        self.clips_given_up = Counter(
            "homesec_slack_clips_given_up",
            "Alert clips not posted: no clip in time (missing), a bad file (unusable), or "
            "Slack refused it (refused)",
            ["reason"],
            registry=registry,
        )
        for reason in ("missing", "unusable", "refused"):
            self.clips_given_up.labels(reason)
        self.clip_backlog = Gauge(
            "homesec_slack_clip_backlog",
            "Alert clips waiting: for their file, their alert, or Slack",
            registry=registry,
        )

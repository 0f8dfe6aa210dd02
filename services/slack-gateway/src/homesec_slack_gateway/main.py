"""``python -m homesec_slack_gateway``: the Slack gateway service."""

from __future__ import annotations

from homesec.service import run_service
from homesec_slack_gateway.service import GatewayService
from homesec_slack_gateway.settings import SlackGatewaySettings


def main(argv: list[str] | None = None) -> int:
    return run_service(
        "slack-gateway",
        SlackGatewaySettings,
        lambda rt, settings: GatewayService(rt.bus, settings, rt.metrics.registry),
    )

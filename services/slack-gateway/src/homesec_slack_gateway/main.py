"""``python -m homesec_slack_gateway``: the Slack gateway service."""

from __future__ import annotations

from homesec.service import ServiceRuntime
from homesec.settings import load_settings
from homesec_slack_gateway.service import GatewayService
from homesec_slack_gateway.settings import SlackGatewaySettings


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(SlackGatewaySettings)
    with ServiceRuntime("slack-gateway", settings) as rt:
        service = GatewayService(rt.bus, settings, rt.metrics.registry)  # subscribes
        rt.start()
        service.run(rt.stop_event)
    return 0

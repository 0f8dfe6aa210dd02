"""Socket Mode: the same handlers over Slack's WebSocket (for a Pi behind NAT, no public URL).

Slack authenticates the connection with the app-level token, so no request signature applies;
every envelope is acknowledged with its ``envelope_id`` (slash commands carry the answer in the
acknowledgement, as an HTTP response would).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any

from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from homesec_slack_gateway.handlers import Gateway, InteractionError
from homesec_slack_gateway.metrics import GatewayMetrics
from homesec_slack_gateway.settings import SlackGatewaySettings
from homesec_slack_gateway.slack_api import web_client

log = logging.getLogger("homesec.slack_gateway.socket_mode")


class SocketModeRunner:
    """Owns the SocketModeClient and routes its envelopes to the :class:`Gateway`."""

    def __init__(
        self,
        gateway: Gateway,
        settings: SlackGatewaySettings,
        metrics: GatewayMetrics,
        app_token: str,
    ) -> None:
        self._gateway = gateway
        self._seen: OrderedDict[str, dict[str, Any] | None] = OrderedDict()
        self._seen_lock = threading.Lock()
        self.client = SocketModeClient(
            app_token=app_token,
            web_client=web_client(settings, metrics, token=None),
            ping_interval=10,
        )
        self.client.socket_mode_request_listeners.append(self._on_request)

    def start(self) -> None:
        """Open the WebSocket (``apps.connections.open`` then connect; reconnects by itself)."""
        self.client.connect()
        log.info("socket mode connected")

    def close(self) -> None:
        self.client.close()

    def _on_request(self, client: BaseSocketModeClient, req: SocketModeRequest) -> None:
        with self._seen_lock:
            repeated = req.envelope_id in self._seen
            answer = self._seen.get(req.envelope_id)
        if repeated:
            # Slack redelivers an envelope whose ack it missed: ack again, do not act twice
            log.info("socket mode envelope redelivered", extra={"envelope_id": req.envelope_id})
            client.send_socket_mode_response(
                SocketModeResponse(envelope_id=req.envelope_id, payload=answer)
            )
            return
        payload: dict[str, Any] | None = None
        try:
            if req.type == "slash_commands":
                payload = self._gateway.handle_command(req.payload)
            elif req.type == "interactive":
                payload = self._gateway.handle_interaction(req.payload)
            else:
                log.info("socket mode envelope ignored", extra={"type": req.type})
        except InteractionError as exc:
            log.warning("interaction refused", extra={"reason": str(exc)})
        except Exception:
            log.exception("socket mode handler failed", extra={"type": req.type})
        with self._seen_lock:
            self._seen[req.envelope_id] = payload
            while len(self._seen) > 500:
                self._seen.popitem(last=False)
        client.send_socket_mode_response(
            SocketModeResponse(envelope_id=req.envelope_id, payload=payload)
        )

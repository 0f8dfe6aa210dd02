"""The HTTP face of the gateway: ``POST /slack/events`` and ``GET /healthz``.

This port is the one published to the internet for Slack, so it serves nothing else: metrics
are on the separate metrics port (``METRICS_PORT``, not published) and no OpenAPI schema is
served."""

# No "from __future__ import annotations": FastAPI must resolve the closure-local dependency.

import json
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from slack_sdk.signature import Clock

from homesec_slack_gateway.handlers import Gateway, InteractionError
from homesec_slack_gateway.metrics import GatewayMetrics
from homesec_slack_gateway.settings import SlackGatewaySettings
from homesec_slack_gateway.verify import signed_body

MAX_FORM_FIELDS = 50


def parse_form(body: bytes) -> dict[str, str]:
    """A urlencoded body as a dict of first values; 400 on anything else."""
    try:
        text = body.decode("utf-8")
        fields = parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise HTTPException(400, f"body is not a form: {str(exc)[:100]}") from None
    return {key: values[0] for key, values in fields.items()}


def create_app(
    gateway: Gateway,
    settings: SlackGatewaySettings,
    metrics: GatewayMetrics,
    clock: Clock | None = None,
) -> FastAPI:
    """The FastAPI application; every Slack route depends on request verification."""
    app = FastAPI(title="homesec slack-gateway", docs_url=None, redoc_url=None, openapi_url=None)
    verified = signed_body(
        SlackGatewaySettings.reveal(settings.slack_signing_secret),
        settings.max_body_bytes,
        settings.signature_max_age_seconds,
        metrics,
        clock,
    )

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "mqtt_connected": gateway.bus.connected,
            "alert_backlog": gateway.store.alert_backlog(),
            "bot_token": gateway.bot is not None,
        }

    @app.post("/slack/events", response_model=None)
    def slack_events(
        request: Request, body: Annotated[bytes, Depends(verified)]
    ) -> Response | dict[str, Any]:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            return _json_event(body)
        form = parse_form(body)
        if "payload" in form:
            try:
                payload = json.loads(form["payload"])
            except ValueError:
                raise HTTPException(400, "payload is not JSON") from None
            if not isinstance(payload, dict):
                raise HTTPException(400, "payload is not a JSON object")
            try:
                answer = gateway.handle_interaction(payload)
            except InteractionError as exc:
                raise HTTPException(400, str(exc)) from None
            return answer if answer is not None else Response(status_code=200)
        if "command" in form:
            return JSONResponse(gateway.handle_command(form))
        raise HTTPException(400, "neither a slash command nor an interaction payload")

    return app


def _json_event(body: bytes) -> dict[str, Any]:
    """Events API requests: only the URL verification handshake is expected."""
    try:
        event = json.loads(body)
    except ValueError:
        raise HTTPException(400, "body is not JSON") from None
    if isinstance(event, dict) and event.get("type") == "url_verification":
        challenge = event.get("challenge")
        if isinstance(challenge, str) and len(challenge) <= 200:
            return {"challenge": challenge}
    raise HTTPException(400, "unsupported Events API request (no events are subscribed)")

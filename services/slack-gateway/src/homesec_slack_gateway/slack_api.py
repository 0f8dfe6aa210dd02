"""Slack Web API clients: a WebClient that times every call and retries 429s, and helpers."""

from __future__ import annotations

import time
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)
from slack_sdk.web import SlackResponse
from slack_sdk.webhook import WebhookClient

from homesec_slack_gateway.metrics import GatewayMetrics
from homesec_slack_gateway.settings import SlackGatewaySettings


class TimedWebClient(WebClient):
    """WebClient observing ``homesec_slack_api_seconds{method}`` for every Web API call."""

    def __init__(self, metrics: GatewayMetrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._gateway_metrics = metrics

    def api_call(self, api_method: str, **kwargs: Any) -> SlackResponse:
        started = time.perf_counter()
        try:
            return super().api_call(api_method, **kwargs)
        finally:
            self._gateway_metrics.api_seconds.labels(api_method).observe(
                time.perf_counter() - started
            )


def web_client(
    settings: SlackGatewaySettings, metrics: GatewayMetrics, token: str | None
) -> TimedWebClient:
    """A client for ``token`` (bot or app token) at the configured API URL."""
    return TimedWebClient(
        metrics,
        token=token,
        base_url=settings.slack_api_url,
        timeout=settings.slack_timeout_seconds,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=1),
            RateLimitErrorRetryHandler(max_retry_count=settings.rate_limit_retries),
        ],
    )


def webhook(url: str, settings: SlackGatewaySettings) -> WebhookClient:
    """A client for a command's or an interaction's ``response_url``."""
    return WebhookClient(
        url,
        timeout=settings.slack_timeout_seconds,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=2),
            RateLimitErrorRetryHandler(max_retry_count=settings.rate_limit_retries),
        ],
    )


def retry_after_seconds(exc: Exception) -> float | None:
    """Slack's ``Retry-After`` for a 429 error, if that is what ``exc`` is."""
    if isinstance(exc, SlackApiError) and exc.response is not None:
        if exc.response.status_code == 429:
            value = exc.response.headers.get("Retry-After") or exc.response.headers.get(
                "retry-after"
            )
            try:
                return float(value) if value is not None else 1.0
            except (TypeError, ValueError):
                return 1.0
    return None


def describe_error(exc: Exception) -> str:
    """Short, secret-free description of a Slack call failure."""
    if isinstance(exc, SlackApiError) and exc.response is not None:
        error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        return f"slack api error {exc.response.status_code}: {str(error or 'no error field')[:200]}"
    return f"{type(exc).__name__}: {str(exc)[:200]}"

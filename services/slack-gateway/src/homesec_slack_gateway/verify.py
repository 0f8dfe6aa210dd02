"""Slack request verification (signing secret, v0 HMAC-SHA256, replay window, size limit)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Mapping

from fastapi import HTTPException, Request
from slack_sdk.signature import Clock, SignatureVerifier

from homesec_slack_gateway.metrics import GatewayMetrics

log = logging.getLogger("homesec.slack_gateway.verify")


class ReplayGuard:
    """Signatures seen within the replay window: a request Slack signed is accepted once.

    Slack's own scheme only bounds the timestamp; a captured request could otherwise be re-sent
    for 5 minutes. Entries expire with the window, so memory stays bounded by the request rate."""

    def __init__(self, window_seconds: int) -> None:
        self.window = window_seconds
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_time(self, signature: str, now: float) -> bool:
        with self._lock:
            # kept for twice the window: a replay is refused for as long as its timestamp passes
            expired = [s for s, at in self._seen.items() if now - at > 2 * self.window]
            for sig in expired:
                del self._seen[sig]
            if signature in self._seen:
                return False
            self._seen[signature] = now
            return True


class RequestRefused(Exception):
    """A request that failed verification: HTTP ``status`` with a ``reason`` code and text."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail


def check_signature(
    verifier: SignatureVerifier | None,
    body: bytes,
    headers: Mapping[str, str],
    max_age_seconds: int,
    clock: Clock,
) -> None:
    """Raise :class:`RequestRefused` unless ``body`` is signed by Slack within the window."""
    if verifier is None:
        raise RequestRefused(
            401, "no_signing_secret", "signing secret not configured (set SLACK_SIGNING_SECRET)"
        )
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp = lowered.get("x-slack-request-timestamp")
    signature = lowered.get("x-slack-signature")
    if not timestamp or not signature:
        raise RequestRefused(401, "missing_headers", "missing X-Slack-Signature or timestamp")
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise RequestRefused(401, "bad_timestamp", "X-Slack-Request-Timestamp is not a number")
    try:
        body.decode("utf-8")  # slack-sdk's verifier decodes the body and would raise
    except UnicodeDecodeError:
        raise RequestRefused(400, "not_utf8", "request body is not UTF-8") from None
    if abs(clock.now() - int(timestamp)) > max_age_seconds:
        raise RequestRefused(
            401, "stale_timestamp", "request timestamp outside the 5-minute window"
        )
    if not verifier.is_valid(body=body, timestamp=timestamp, signature=signature):
        raise RequestRefused(401, "bad_signature", "signature does not match")


def signed_body(
    secret: str | None,
    max_body_bytes: int,
    max_age_seconds: int,
    metrics: GatewayMetrics,
    clock: Clock | None = None,
) -> Callable[[Request], Awaitable[bytes]]:
    """A FastAPI dependency returning the raw body of a verified Slack request."""
    clock = clock or Clock()
    verifier = SignatureVerifier(secret, clock=clock) if secret else None
    replays = ReplayGuard(max_age_seconds)
    if verifier is None:
        log.error("SLACK_SIGNING_SECRET is not set: POST /slack/events refuses every request")

    def refuse(status: int, reason: str, detail: str) -> HTTPException:
        metrics.signature_failures.labels(reason).inc()
        log.warning("slack request refused", extra={"reason": reason, "status": status})
        return HTTPException(status_code=status, detail=detail)

    async def dependency(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_body_bytes):
            raise refuse(413, "too_large", f"body larger than {max_body_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                raise refuse(413, "too_large", f"body larger than {max_body_bytes} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        try:
            check_signature(verifier, body, request.headers, max_age_seconds, clock)
        except RequestRefused as exc:
            raise refuse(exc.status, exc.reason, exc.detail) from None
        if not replays.first_time(request.headers["x-slack-signature"], clock.now()):
            raise refuse(401, "replayed", "request already received (replay)")
        return body

    return dependency

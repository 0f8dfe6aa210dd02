"""What a failed Slack call means for an alert: retry it, hold every alert, or park this one.

The alert sender asks :func:`classify` about each failure. The table in the gateway README
("Alert delivery and Slack errors") is this module in prose; keep the two together.
"""

from __future__ import annotations

import http.client
import sqlite3
import urllib.error
from dataclasses import dataclass
from enum import StrEnum

from slack_sdk.errors import SlackApiError, SlackRequestError

from homesec_slack_gateway.channel import ChannelNotFound
from homesec_slack_gateway.slack_api import describe_error, retry_after_seconds


class FailureKind(StrEnum):
    TRANSIENT = "transient"  # Slack or the network is having a bad moment: retry this alert
    WORKSPACE = "workspace"  # no alert can be posted until the owner fixes the app or channel
    ALERT = "alert"  # Slack refuses this alert's content: park it, post a text fallback
    UNKNOWN = "unknown"  # an error this table does not know


TRANSIENT_CODES = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "fatal_error",
        "internal_error",
        "service_unavailable",
        "request_timeout",
        "timeout",
        "team_added_to_org",
    }
)

WORKSPACE_HINTS: dict[str, str] = {
    "not_in_channel": "invite the bot to the alert channel (/invite @homesec)",
    "channel_not_found": "check HOMESEC_SLACK_GATEWAY_ALERT_CHANNEL and invite the bot to it",
    "is_archived": "the alert channel is archived: unarchive it or set another channel",
    "invalid_auth": "SLACK_BOT_TOKEN is not valid: copy the Bot User OAuth Token again",
    "not_authed": "SLACK_BOT_TOKEN is missing from the requests: check the gateway's secrets",
    "account_inactive": "the app's bot user was deactivated: reinstall the app",
    "token_revoked": "the bot token was revoked: reinstall the app and update SLACK_BOT_TOKEN",
    "token_expired": "the bot token expired: reinstall the app and update SLACK_BOT_TOKEN",
    "no_permission": "the bot may not post there: check the channel's posting permissions",
    "missing_scope": "the app lacks a scope (chat:write, files:write, files:read): reinstall "
    "it from services/slack-gateway/slack-app-manifest.yaml",
    "not_allowed_token_type": "SLACK_BOT_TOKEN must be a bot token (xoxb-...)",
    "team_access_not_granted": "the app is not installed in this workspace",
    "access_denied": "Slack denied the app access: check its installation",
    "ekm_access_denied": "the workspace's key management denied access",
    "org_login_required": "the workspace is migrating: wait or reinstall the app",
    "two_factor_setup_required": "the workspace requires 2FA for the app's owner",
    "restricted_action": "a workspace policy stops the bot posting in the alert channel",
    "restricted_action_read_only_channel": "the alert channel is read-only for the bot",
    "restricted_action_thread_only_channel": "the alert channel allows thread replies only",
    "restricted_action_non_threadable_channel": "a workspace policy stops the bot posting",
    "team_not_found": "the app's workspace was not found",
    "enterprise_is_restricted": "an Enterprise Grid policy stops the app",
}

ALERT_CODES = frozenset(
    {
        "invalid_blocks",
        "invalid_blocks_format",
        "invalid_arguments",
        "invalid_arg_name",
        "invalid_array_arg",
        "invalid_charset",
        "invalid_form_data",
        "invalid_post_type",
        "invalid_json",
        "json_not_object",
        "msg_too_long",
        "msg_blocks_too_long",
        "no_text",
        "too_many_attachments",
        "alt_txt_too_large",
        "file_upload_size_restricted",
        "file_upload_size_exceeded",
        "file_uploads_disabled",
        "file_type_not_allowed",
        "file_not_found",
        "invalid_file",
    }
)


@dataclass(frozen=True)
class Failure:
    """One failed attempt, classified."""

    kind: FailureKind
    code: str  # Slack's error code, or the exception's type name
    description: str  # short, secret-free (for logs, status and the fallback text)
    retry_after: float | None = None  # Slack's Retry-After, when it gave one
    hint: str = ""  # what the owner can do (workspace errors)

    @property
    def reason(self) -> str:
        """Code and description in one line (for the store and the status)."""
        if self.code in self.description:
            return self.description
        return f"{self.code}: {self.description}"


def slack_error_code(exc: BaseException) -> str | None:
    """The ``error`` field of a Slack Web API error answer."""
    if isinstance(exc, SlackApiError) and exc.response is not None:
        data = exc.response.data
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return str(data["error"])
    return None


def classify(exc: Exception) -> Failure:
    """Sort a failure of a Slack call (or of the gateway's own queue) into a :class:`FailureKind`."""
    description = describe_error(exc)
    if isinstance(exc, ChannelNotFound):
        return Failure(FailureKind.WORKSPACE, "channel_not_found", str(exc)[:200], hint=str(exc))
    if isinstance(exc, SlackApiError) and exc.response is not None:
        code = slack_error_code(exc) or f"http_{exc.response.status_code}"
        retry_after = retry_after_seconds(exc)
        if (
            exc.response.status_code >= 500
            or exc.response.status_code in (408, 429)
            or code in TRANSIENT_CODES
        ):
            return Failure(FailureKind.TRANSIENT, code, description, retry_after)
        if code in WORKSPACE_HINTS:
            return Failure(FailureKind.WORKSPACE, code, description, hint=WORKSPACE_HINTS[code])
        if code in ALERT_CODES:
            return Failure(FailureKind.ALERT, code, description)
        return Failure(FailureKind.UNKNOWN, code, description)
    if isinstance(exc, urllib.error.HTTPError):  # the file upload URL answered an HTTP error
        code = f"http_{exc.code}"
        if exc.code >= 500 or exc.code in (408, 429):
            return Failure(FailureKind.TRANSIENT, code, description)
        if exc.code in (401, 403):
            return Failure(FailureKind.UNKNOWN, code, description)
        return Failure(FailureKind.ALERT, code, description)  # e.g. 413: the file is refused
    if isinstance(exc, SlackRequestError):  # the upload URL did not answer 200, or a bad request
        return Failure(FailureKind.ALERT, "request_refused", description)
    if isinstance(exc, (OSError, http.client.HTTPException, sqlite3.Error)):
        # network errors and timeouts (URLError is an OSError), or the gateway's own store
        return Failure(FailureKind.TRANSIENT, type(exc).__name__, description)
    return Failure(FailureKind.UNKNOWN, type(exc).__name__, description)

"""Where alerts go: the configured channel as an ID, and whether an earlier attempt already
posted an alert's image there.

Slack's file upload (``files.completeUploadExternal``) takes channel IDs only, so a channel given
by name (``#alerts``) is looked up once with ``conversations.list``. Slack has no idempotency key
for uploads: when the answer to a completed upload is lost, the next attempt would post the image
again, so a retried upload first looks for the file in the channel's recent history.
"""

from __future__ import annotations

import logging
import re

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger("homesec.slack_gateway.channel")

CHANNEL_ID_PATTERN = r"[CG][A-Z0-9]{2,30}"
CHANNEL_NAME_PATTERN = r"#?[a-z0-9][a-z0-9_-]{0,79}"
CHANNEL_ID = re.compile(rf"^{CHANNEL_ID_PATTERN}$")
MAX_PAGES = 20  # 200 channels or messages a page
# errors after which looking in the history cannot work until the app is reconfigured
_UNAVAILABLE = {"missing_scope", "not_in_channel", "channel_not_found", "not_allowed_token_type"}


class ChannelNotFound(Exception):
    """No channel of that name is visible to the bot."""


def is_channel_id(value: str) -> bool:
    return bool(CHANNEL_ID.match(value))


def find_channel_id(client: WebClient, name: str) -> str:
    """The ID of the public or private channel called ``name`` (``#`` optional)."""
    wanted = name.removeprefix("#")
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        response = client.conversations_list(
            types="public_channel,private_channel",
            exclude_archived=True,
            limit=200,
            cursor=cursor,
        )
        for channel in response.get("channels") or []:
            if channel.get("name") == wanted and isinstance(channel.get("id"), str):
                return str(channel["id"])
        cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
        if not cursor:
            break
    raise ChannelNotFound(
        f"no channel #{wanted} visible to the bot: check the name, invite the bot to a private "
        "channel, or set the channel ID (C0...)"
    )


class ChannelResolver:
    """The alert channel's ID, looked up on first use when configured by name."""

    def __init__(self, configured: str) -> None:
        self.configured = configured
        self._id = configured if is_channel_id(configured) else None

    def channel_id(self, client: WebClient) -> str:
        if self._id is None:
            self._id = find_channel_id(client, self.configured)
            log.info("alert channel found", extra={"name": self.configured, "channel": self._id})
        return self._id


class PostedFileCheck:
    """Finds a file posted by an earlier attempt (needs the ``channels:history`` scope, and
    ``groups:history`` for a private channel); without it, it says so once and finds nothing."""

    def __init__(self) -> None:
        self.available = True

    def already_posted(self, client: WebClient, channel: str, filename: str, since: float) -> bool:
        """True when a message in ``channel`` newer than ``since`` carries ``filename``."""
        if not self.available:
            return False
        cursor: str | None = None
        try:
            for _ in range(MAX_PAGES):
                response = client.conversations_history(
                    channel=channel, oldest=f"{since:.6f}", limit=200, cursor=cursor
                )
                for message in response.get("messages") or []:
                    for file in message.get("files") or []:
                        if file.get("name") == filename:
                            return True
                cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor:
                    return False
        except SlackApiError as exc:
            error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
            if error not in _UNAVAILABLE:
                raise
            self.available = False
            log.warning(
                "cannot read the alert channel's history; a retried upload may post an image "
                "twice (add the channels:history / groups:history scope)",
                extra={"error": error},
            )
        return False

"""Follow-ups to a slash command or a button: what the gateway tells the owner afterwards.

Slack takes at most five posts on one ``response_url``, within 30 minutes of the command. One
command can want more: ``/homesec initialize`` with the detector down sets three switches, and
each of them is late, then confirmed. So notices that come within a short window are sent as
one message, and once a ``response_url`` is used up (or too old), a follow-up goes to the
command's channel through the bot instead of being refused by Slack and lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slack_sdk import WebClient

from homesec_slack_gateway.slack_api import describe_error

log = logging.getLogger("homesec.slack_gateway.followups")

RESPONSE_URL_POSTS = 5
"""Slack: a ``response_url`` takes up to five posts…"""
RESPONSE_URL_SECONDS = 30 * 60
"""…within 30 minutes."""
FORGET_SECONDS = 24 * 3600
"""How long a used ``response_url`` is remembered (as used up) before it is forgotten."""


@dataclass
class _Url:
    first_used: float
    posts: int = 0
    pending: list[str] = field(default_factory=list)


class FollowUps:
    """Posts follow-ups within Slack's ``response_url`` budget, falling back to the channel."""

    def __init__(
        self,
        post: Callable[[str, dict[str, Any]], bool],
        bot: WebClient | None,
        window_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._post = post
        self._bot = bot
        self._window = window_seconds
        self._clock = clock
        self._urls: dict[str, _Url] = {}
        self._lock = threading.Lock()

    def send(
        self,
        response_url: str | None,
        body: dict[str, Any],
        channel: str | None = None,
        user: str | None = None,
    ) -> None:
        """Post ``body`` on ``response_url`` while it has posts left; else, or when Slack
        does not take it, to ``channel`` (ephemeral bodies to ``user`` only), when a bot token
        and a channel are known."""
        if not response_url:
            return
        with self._lock:
            usable = self._take(response_url)
        if usable and self._post(response_url, body):
            return
        self._to_channel(body, channel, user)

    def tell(self, response_url: str | None, text: str, channel: str | None = None) -> None:
        """Tell the channel ``text`` about a command: notices about one command that come
        within the window go out as one message."""
        if not response_url:
            return
        with self._lock:
            entry = self._entry(response_url)
            entry.pending.append(text)
            first = len(entry.pending) == 1
        if first:
            timer = threading.Timer(self._window, self._flush, (response_url, channel))
            timer.daemon = True
            timer.start()

    def _flush(self, response_url: str, channel: str | None) -> None:
        with self._lock:
            entry = self._entry(response_url)
            texts, entry.pending = entry.pending, []
        if texts:
            body = {"response_type": "in_channel", "text": "\n".join(texts)}
            self.send(response_url, body, channel)

    def _entry(self, response_url: str) -> _Url:
        now = self._clock()
        for url, entry in list(self._urls.items()):  # long past Slack's 30 minutes
            if now - entry.first_used > FORGET_SECONDS and not entry.pending:
                del self._urls[url]
        return self._urls.setdefault(response_url, _Url(first_used=now))

    def _take(self, response_url: str) -> bool:
        entry = self._entry(response_url)
        if entry.posts >= RESPONSE_URL_POSTS:
            return False
        if self._clock() - entry.first_used > RESPONSE_URL_SECONDS:
            return False
        entry.posts += 1
        return True

    def _to_channel(self, body: dict[str, Any], channel: str | None, user: str | None) -> None:
        text = str(body.get("text", ""))
        ephemeral = body.get("response_type") == "ephemeral"
        if self._bot is None or not channel or not text or (ephemeral and not user):
            log.warning(
                "follow-up not delivered: its response_url is used up or refused it, and no "
                "channel post is possible",
                extra={"has_bot": self._bot is not None, "channel": channel},
            )
            return
        try:
            if ephemeral:
                self._bot.chat_postEphemeral(channel=channel, user=user, text=text)
            else:
                self._bot.chat_postMessage(channel=channel, text=text, mrkdwn=True)
            log.info("follow-up posted to the channel instead of its response_url")
        except Exception as exc:
            log.warning("follow-up not posted to the channel", extra={"error": describe_error(exc)})

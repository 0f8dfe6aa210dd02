"""Pydantic models for the parts of Slack payloads the gateway reads."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Slack(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SlackUser(_Slack):
    id: str = Field(min_length=1, max_length=50)


class SlackAction(_Slack):
    action_id: str = Field(max_length=255)
    value: str = Field("", max_length=2000)
    block_id: str | None = None


class SlackContainer(_Slack):
    message_ts: str | None = None
    channel_id: str | None = None


class SlackChannel(_Slack):
    id: str


class BlockActions(_Slack):
    """A ``block_actions`` interaction (a button click)."""

    type: str
    user: SlackUser
    actions: list[SlackAction] = Field(min_length=1, max_length=10)
    container: SlackContainer = SlackContainer()
    channel: SlackChannel | None = None
    response_url: str | None = Field(None, max_length=1000)


class SlashCommand(_Slack):
    """The form fields of a slash command that the gateway uses."""

    command: str = Field(min_length=1, max_length=100)
    text: str = Field("", max_length=4000)
    user_id: str = Field(min_length=1, max_length=50)
    channel_id: str = Field("", max_length=50)
    response_url: str | None = Field(None, max_length=1000)

"""Follow-ups within Slack's response_url budget: five posts, then the command's channel."""

from __future__ import annotations

from typing import Any

from gateway_fakes import FakeSlack
from slack_sdk import WebClient
from slack_sdk.webhook import WebhookClient

from homesec_slack_gateway.followups import RESPONSE_URL_SECONDS, FollowUps
from support import wait_until


def post(url: str, body: dict[str, Any]) -> bool:
    return bool(WebhookClient(url).send_dict(body).status_code == 200)


def test_past_five_posts_a_follow_up_goes_to_the_channel(slack: FakeSlack) -> None:
    bot = WebClient(token="xoxb-test-bot-token", base_url=slack.api_url)
    followups = FollowUps(post, bot)
    url = slack.response_url()
    for n in range(6):
        followups.send(url, {"response_type": "in_channel", "text": f"notice {n}"}, "C0HOME")
    followups.send(url, {"response_type": "ephemeral", "text": "only you"}, "C0HOME", "U0OWNER")
    assert [r["text"] for r in slack.responses] == [f"notice {n}" for n in range(5)]
    assert slack.refused_responses == []
    assert [(p["channel"], p["text"]) for p in slack.posts()] == [("C0HOME", "notice 5")]
    (ephemeral,) = [c.args for c in slack.calls_to("chat.postEphemeral")]
    assert (ephemeral["channel"], ephemeral["user"], ephemeral["text"]) == (
        "C0HOME",
        "U0OWNER",
        "only you",
    )


def test_a_response_url_older_than_slack_takes_is_not_used(slack: FakeSlack) -> None:
    now = [1000.0]
    bot = WebClient(token="xoxb-test-bot-token", base_url=slack.api_url)
    followups = FollowUps(post, bot, clock=lambda: now[0])
    url = slack.response_url()
    followups.send(url, {"response_type": "in_channel", "text": "first"}, "C0HOME")
    now[0] += RESPONSE_URL_SECONDS + 1
    followups.send(url, {"response_type": "in_channel", "text": "late"}, "C0HOME")
    assert [r["text"] for r in slack.responses] == ["first"]
    assert [p["text"] for p in slack.posts()] == ["late"]


def test_notices_within_the_window_are_one_message(slack: FakeSlack) -> None:
    followups = FollowUps(post, None, window_seconds=0.3)
    url = slack.response_url()
    for n in range(3):
        followups.tell(url, f"notice {n}", "C0HOME")
    wait_until(lambda: len(slack.responses) >= 1)
    followups.tell(url, "later", "C0HOME")
    wait_until(lambda: len(slack.responses) >= 2)
    assert [r["text"] for r in slack.responses] == ["notice 0\nnotice 1\nnotice 2", "later"]
    assert all(r["response_type"] == "in_channel" for r in slack.responses)


def test_without_a_bot_a_used_up_url_drops_with_a_warning(slack: FakeSlack, caplog) -> None:
    followups = FollowUps(post, None)
    url = slack.response_url()
    for n in range(6):
        followups.send(url, {"text": f"notice {n}"}, "C0HOME")
    assert len(slack.responses) == 5
    assert "response_url is used up" in caplog.text


def test_a_follow_up_slack_refuses_goes_to_the_channel(slack: FakeSlack) -> None:
    """Slack counts a response_url's posts itself: one it refuses is not lost."""
    bot = WebClient(token="xoxb-test-bot-token", base_url=slack.api_url)
    url = slack.response_url()
    for n in range(5):  # another sender used this URL up
        post(url, {"text": f"other {n}"})
    FollowUps(post, bot).send(url, {"response_type": "in_channel", "text": "mine"}, "C0HOME")
    assert [r["text"] for r in slack.refused_responses] == ["mine"]
    assert [(p["channel"], p["text"]) for p in slack.posts()] == [("C0HOME", "mine")]

"""The slash-command parser: every subcommand, every alias of the original, and bad input."""

from __future__ import annotations

import pytest

from homesec_slack_gateway.commands import ALIASES, USAGE, Action, Parsed, UsageError, parse


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("arm", Parsed(Action.ARM)),
        ("disarm", Parsed(Action.DISARM)),
        ("status", Parsed(Action.STATUS)),
        ("snapshot", Parsed(Action.SNAPSHOT)),
        ("mute", Parsed(Action.MUTE)),
        ("unmute", Parsed(Action.UNMUTE)),
        ("auto on", Parsed(Action.AUTO_ON)),
        ("AUTO   off", Parsed(Action.AUTO_OFF)),
        ("train on", Parsed(Action.TRAIN_ON)),
        ("train off", Parsed(Action.TRAIN_OFF)),
        ("rotate 30 -10", Parsed(Action.ROTATE, pan=30, tilt=-10)),
        ("rotate +90 -90", Parsed(Action.ROTATE, pan=90, tilt=-90)),
        ("position", Parsed(Action.POSITION)),
        ("initialize", Parsed(Action.INITIALIZE)),
        ("help", Parsed(Action.HELP)),
        ("", Parsed(Action.HELP)),
    ],
)
def test_homesec_subcommands(text: str, expected: Parsed) -> None:
    assert parse("/homesec", text) == expected


@pytest.mark.parametrize(
    ("command", "text", "expected"),
    [
        ("/pycam_on", "", Parsed(Action.ARM)),
        ("/pycam_off", "", Parsed(Action.DISARM)),
        ("/notifications_on", "", Parsed(Action.UNMUTE)),
        ("/notifications_off", "", Parsed(Action.MUTE)),
        ("/auto_detect_on", "", Parsed(Action.AUTO_ON)),
        ("/auto_detect_off", "", Parsed(Action.AUTO_OFF)),
        ("/status", "", Parsed(Action.STATUS)),
        ("/last_image", "", Parsed(Action.SNAPSHOT)),
        ("/rotate", "40 10", Parsed(Action.ROTATE, pan=40, tilt=10)),
        ("/current_position", "", Parsed(Action.POSITION)),
        ("/initialize", "", Parsed(Action.INITIALIZE)),
    ],
)
def test_original_aliases(command: str, text: str, expected: Parsed) -> None:
    assert parse(command, text) == expected


def test_every_alias_is_tested_and_documented() -> None:
    assert set(ALIASES) == {
        "/pycam_on",
        "/pycam_off",
        "/notifications_on",
        "/notifications_off",
        "/auto_detect_on",
        "/auto_detect_off",
        "/status",
        "/last_image",
        "/rotate",
        "/current_position",
        "/initialize",
    }
    for alias in ALIASES:
        assert alias in USAGE


@pytest.mark.parametrize(
    ("command", "text", "fragment"),
    [
        ("/homesec", "explode", "Unknown command"),
        ("/homesec", "rotate 30", "two whole numbers"),
        ("/homesec", "rotate 91 0", "pan 91 is out of range"),
        ("/homesec", "rotate 0 -95", "tilt -95 is out of range"),
        ("/homesec", "rotate 1.5 2", "two whole numbers"),
        ("/homesec", "rotate __import__('os') 1", "two whole numbers"),
        ("/rotate", "", "two whole numbers"),
        ("/status", "now please", "takes no arguments"),
        ("/top", "", "Unknown slash command"),
        ("/logz", "", "Unknown slash command"),
    ],
)
def test_bad_input_explains_itself(command: str, text: str, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        parse(command, text)

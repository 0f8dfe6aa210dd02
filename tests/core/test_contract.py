"""The contract: topic building/matching, codecs, validation, and generated docs being current."""

from __future__ import annotations

import json

import pytest

from homesec import apidocs
from homesec.contract import (
    CHANNELS,
    PTZ_COMMAND,
    SYSTEM_SET,
    InvalidPayload,
    PtzCommand,
    SetCommand,
    example_payload,
)


def test_topics_are_built_and_matched():
    assert PTZ_COMMAND.topic("homesec", camera="front") == "homesec/ptz/front/command"
    assert PTZ_COMMAND.pattern("homesec") == "homesec/ptz/+/command"
    assert PTZ_COMMAND.match("homesec", "homesec/ptz/garage/command") == {"camera": "garage"}
    assert PTZ_COMMAND.match("homesec", "homesec/ptz/garage/state") is None
    assert PTZ_COMMAND.match("other", "homesec/ptz/garage/command") is None


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "#", "x" * 65, "a b"])
def test_topic_parameters_must_be_identifiers(bad):
    with pytest.raises(ValueError):
        PTZ_COMMAND.topic("homesec", camera=bad)


def test_every_example_is_valid_and_every_channel_documented():
    for channel in CHANNELS:
        assert channel.description and channel.publisher
        example_payload(channel)  # validates dict examples against the model


def test_set_command_accepts_bare_words_and_json():
    assert SYSTEM_SET.decode(b"ON").value is True
    assert SYSTEM_SET.decode(b"off").value is False
    assert SYSTEM_SET.decode(b'{"value": true, "source": "presence"}').source == "presence"
    with pytest.raises(InvalidPayload):
        SYSTEM_SET.decode(b"maybe")
    assert isinstance(SYSTEM_SET.decode(b"true"), SetCommand)


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"pan": 1, "preset": "door"},
        {"pan_by": 1, "tilt": 2},
        {"home": False},
        {"preset": "../x"},
    ],
)
def test_ptz_command_needs_exactly_one_form(payload):
    with pytest.raises(InvalidPayload):
        PTZ_COMMAND.decode(json.dumps(payload).encode())


def test_ptz_command_forms():
    assert PTZ_COMMAND.decode(b'{"pan_by": -10}') == PtzCommand(pan_by=-10)
    assert PTZ_COMMAND.decode(b'{"tilt": 5}').tilt == 5


def test_generated_mqtt_docs_are_current(repo):
    stale = apidocs.stale(repo / "docs")
    assert not stale, f"{stale} out of date: run `uv run homesec docs --write`"


def test_asyncapi_document_shape():
    doc = apidocs.render_asyncapi()
    assert doc["asyncapi"].startswith("3.")
    assert set(doc["channels"]) == {c.name for c in CHANNELS}
    for op in doc["operations"].values():
        assert op["channel"]["$ref"].removeprefix("#/channels/") in doc["channels"]

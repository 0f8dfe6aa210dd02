"""In-process fuzzing of the contract itself (no broker, so many more examples): decoding any
bytes on any channel either gives a model or raises :class:`InvalidPayload`, never anything
else (the bus only catches that), and topic matching never loses a parameter."""

from __future__ import annotations

import re
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fuzz_payloads import fuzz_settings, mqtt_text, odd_levels, payloads
from hypothesis import given
from hypothesis import strategies as st

from homesec.contract import CHANNELS, Channel, InvalidPayload

PREFIX = "homesec"
_PARAM = re.compile(r"\{([a-z_]+)\}")


@pytest.mark.parametrize("channel", CHANNELS, ids=lambda c: c.name)
def test_decode_gives_a_model_or_invalid_payload(channel: Channel[Any]) -> None:
    props = st.dictionaries(
        st.sampled_from(["camera", "seq", "captured_at", "width", "height", "x"]),
        mqtt_text(20) | st.sampled_from(["front", "1", "nan", "inf", "1e999", "-1", "64"]),
        max_size=5,
    )

    @fuzz_settings(200)
    @given(payloads(channel) | st.binary(max_size=200).map(lambda b: b"\xff\xd8" + b), props)
    def fuzz(raw: bytes, user_props: dict[str, str]) -> None:
        try:
            model = channel.decode(raw, user_props)
        except InvalidPayload as exc:
            assert str(exc)  # a reason for the log
            return
        assert isinstance(model, channel.model)

    fuzz()


@pytest.mark.parametrize(
    "channel", [c for c in CHANNELS if _PARAM.search(c.template)], ids=lambda c: c.name
)
def test_every_topic_of_a_subscription_yields_its_parameters(channel: Channel[Any]) -> None:
    """Whatever level a ``+`` matched (empty included) comes back as a parameter, so the bus can
    refuse a non-identifier instead of handing a handler a message without it."""
    names = _PARAM.findall(channel.template)

    @fuzz_settings(100)
    @given(st.fixed_dictionaries({n: odd_levels | st.just("front") for n in names}))
    def fuzz(levels: dict[str, str]) -> None:
        topic = f"{PREFIX}/{channel.template.format(**levels)}"
        assert mqtt.topic_matches_sub(channel.pattern(PREFIX), topic)
        assert channel.match(PREFIX, topic) == levels

    fuzz()

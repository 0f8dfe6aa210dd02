"""Fuzzing the contract: any bytes on any channel either decode to the model or raise
InvalidPayload (which the bus counts and skips) — never another exception."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homesec.contract import CHANNELS, Channel, InvalidPayload

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=20,
)


def mutated_examples(channel: Channel) -> st.SearchStrategy[bytes]:
    """The documented example with fields replaced by arbitrary JSON values."""
    if not isinstance(channel.example, dict):
        return st.binary(max_size=64)
    keys = list(channel.example)
    return st.dictionaries(st.sampled_from(keys), json_values, max_size=len(keys)).map(
        lambda patch: json.dumps({**channel.example, **patch}, allow_nan=True).encode()
    )


def payloads(channel: Channel) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=512),
        json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
        mutated_examples(channel),
        st.just(b"\xff\xd8" + b"\x00" * 16),
    )


@pytest.mark.parametrize("channel", CHANNELS, ids=lambda c: c.name)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_decode_never_raises_unexpected(channel, data):
    raw = data.draw(payloads(channel))
    props = data.draw(st.dictionaries(st.text(max_size=12), st.text(max_size=20), max_size=6))
    try:
        model = channel.decode(raw, props)
    except InvalidPayload:
        return
    assert isinstance(model, channel.model)
    # What decodes must encode again (round trip keeps the contract closed).
    channel.encode(model)

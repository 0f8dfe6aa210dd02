"""Presence logic without a broker: MACs, JSON paths, debounce, auto-arm policy, settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from homesec.contract import PersonPresence, PresenceState
from homesec_presence.autoarm import Action, AutoArmPolicy
from homesec_presence.devices import Device, Watchlist, normalise_hostname, normalise_mac
from homesec_presence.jsonpath import JsonPathError, find, first, parse
from homesec_presence.settings import PresenceSettings
from homesec_presence.tracker import Change, PresenceTracker


@pytest.mark.parametrize(
    "raw",
    [
        "AA:BB:CC:DD:EE:FF",
        "aa-bb-cc-dd-ee-ff",
        "aabb.ccdd.eeff",
        "AABBCCDDEEFF",
        " aa:bb:cc:dd:ee:ff ",
    ],
)
def test_mac_forms_normalise(raw: str) -> None:
    assert normalise_mac(raw) == "aa:bb:cc:dd:ee:ff"


@pytest.mark.parametrize("raw", ["alices-phone", "aa:bb:cc:dd:ee", "gg:bb:cc:dd:ee:ff", ""])
def test_non_macs(raw: str) -> None:
    assert normalise_mac(raw) is None


def test_hostnames_and_matching() -> None:
    assert normalise_hostname("Alices-Phone.lan.") == "alices-phone"
    watch = Watchlist({"alice": ["AA-BB-CC-DD-EE-FF", "Alices-Phone"], "bob": ["bobs-pixel"]})
    assert watch.match([Device(mac="aa:bb:cc:dd:ee:ff")]) == {"alice": True, "bob": False}
    assert watch.match([Device(name="ALICES-PHONE.home")]) == {"alice": True, "bob": False}
    assert watch.match([Device(mac="11:22:33:44:55:66", name="bobs-pixel")]) == {
        "alice": False,
        "bob": True,
    }
    with pytest.raises(ValueError, match="neither a MAC"):
        Watchlist({"eve": ["not a host; rm -rf"]})


def test_json_path_walker() -> None:
    doc = {
        "data": {"devices": [{"mac": "a", "n": {"h": "x"}}, {"mac": "b"}]},
        "result": [0, {"clients": {"m1": {"s": 1}, "m2": {"s": 2}}}],
    }
    assert [v for _, v in find(doc, "data.devices[*].mac")] == ["a", "b"]
    assert first(doc, "$.data.devices[0].n.h") == "x"
    assert first(doc, "data.devices[-1].mac") == "b"
    assert find(doc, "result[1].clients.*") == [("m1", {"s": 1}), ("m2", {"s": 2})]
    assert find(doc, "data.missing[*]") == []
    assert first(doc, "data.devices[9]") is None
    assert first(doc, "$") == doc
    assert parse("a[*].b[2]") == ["a", "*", "b", 2]
    with pytest.raises(JsonPathError):
        parse("a[x]")


def test_arrival_counts_at_once_departure_after_grace() -> None:
    t = PresenceTracker(["alice", "bob"], grace_seconds=600)
    assert t.observe(0, {"alice": True, "bob": False}) == [Change("alice", True)]
    assert t.occupancy() is True
    assert t.observe(100, {"alice": False, "bob": True}) == [Change("bob", True)]
    assert t.observe(599, {"alice": False, "bob": False}) == []
    assert t.observe(600, {"alice": False, "bob": False}) == [Change("alice", False)]
    assert t.occupancy() is True
    assert t.observe(699, {"alice": False, "bob": False}) == []
    assert t.observe(700, {"alice": False, "bob": False}) == [Change("bob", False)]
    assert t.occupancy() is False
    assert t.observe(701, {"alice": False, "bob": True}) == [Change("bob", True)]
    assert [p.model_dump() for p in t.snapshot()] == [
        {"name": "alice", "home": False, "last_seen": 0},
        {"name": "bob", "home": True, "last_seen": 701},
    ]


def test_next_due_names_when_a_pending_departure_completes() -> None:
    """A push backend observes nothing new by itself: the service observes again then."""
    t = PresenceTracker(["alice", "bob"], grace_seconds=60)
    t.observe(100, {"alice": True, "bob": True})
    assert t.next_due() is None
    t.observe(110, {"alice": False, "bob": True})
    assert t.next_due() == 160  # absence counts from when she was last seen
    assert t.observe(160, {"alice": False, "bob": True}) == [Change("alice", False)]
    assert t.next_due() is None  # done
    t.observe(180, {"alice": None, "bob": False})  # unknown keeps her state; bob pending
    assert t.next_due() == 220


def test_outage_freezes_and_restarts_the_grace_period() -> None:
    t = PresenceTracker(["alice"], grace_seconds=600)
    t.observe(0, {"alice": True})
    t.observe(100, {"alice": False})
    for _ in range(10):
        t.outage()  # a router down for hours...
    assert t.people["alice"].home is True
    assert t.observe(10_000, {"alice": False}) == []  # ...does not count as unseen time
    assert t.observe(10_599, {"alice": False}) == []
    assert t.observe(10_600, {"alice": False}) == [Change("alice", False)]
    t.outage()
    assert t.observe(20_000, {"alice": True}) == [Change("alice", True)]  # arrival: at once


def test_unknown_people_and_start_up() -> None:
    t = PresenceTracker(["alice", "bob"], grace_seconds=60)
    assert t.occupancy() is None
    t.observe(1000, {"alice": None, "bob": False})
    assert t.occupancy() is None
    t.observe(1060, {"alice": None, "bob": False})
    assert t.people["bob"].home is False
    assert t.occupancy() is None  # alice still unknown: not "empty"
    t.observe(1061, {"alice": False, "bob": False})
    t.observe(1121, {"alice": False, "bob": False})
    assert t.occupancy() is False
    assert PresenceTracker([], 60).occupancy() is None


def test_restore_takes_people_seen_before() -> None:
    t = PresenceTracker(["alice", "bob", "carol"], grace_seconds=60)
    restored = t.restore(
        PresenceState(
            anyone_home=True,
            people=[
                PersonPresence(name="alice", home=True, last_seen=50),
                PersonPresence(name="bob", home=False, last_seen=None),
                PersonPresence(name="zed", home=True, last_seen=50),
            ],
        )
    )
    assert restored == ["alice"]
    assert t.people["alice"].home is True and t.people["bob"].home is None
    assert t.observe(5000, {"alice": False, "bob": False, "carol": False}) == []  # grace restarts


def test_auto_arm_policy() -> None:
    p = AutoArmPolicy()
    assert p.on_occupancy(True, auto_arm=True, backend_ok=True) is None  # unknown → home
    assert p.on_occupancy(True, auto_arm=True, backend_ok=True) is None
    assert p.on_occupancy(False, auto_arm=True, backend_ok=True) is Action.ARM
    assert p.on_occupancy(False, auto_arm=True, backend_ok=True) is None
    assert p.on_occupancy(True, auto_arm=True, backend_ok=True) is Action.DISARM
    assert p.on_occupancy(False, auto_arm=False, backend_ok=True) is None  # off: nothing
    assert p.on_occupancy(True, auto_arm=False, backend_ok=True) is None
    assert p.on_auto_arm_enabled(backend_ok=True) is Action.DISARM
    assert p.on_auto_arm_enabled(backend_ok=False) is None
    assert p.on_occupancy(False, auto_arm=True, backend_ok=False) is None
    fresh = AutoArmPolicy()
    assert fresh.on_auto_arm_enabled(backend_ok=True) is None
    assert fresh.on_occupancy(False, auto_arm=True, backend_ok=True) is Action.ARM


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "HOMESEC_PRESENCE_PEOPLE", '{"alice": ["AA-BB-CC-DD-EE-FF", "alices-phone"], "bob": []}'
    )
    monkeypatch.setenv("HOMESEC_PRESENCE_BACKEND", "router")
    monkeypatch.setenv("HOMESEC_PRESENCE_ROUTER__DEVICES_PATH", "data.devices[*]")
    monkeypatch.setenv("HOMESEC_PRESENCE_ROUTER__PASSWORD", "hunter2")
    s = PresenceSettings()
    assert s.metrics_port == 9104 and s.away_grace_seconds == 600
    assert s.watchlist().people["alice"].macs == {"aa:bb:cc:dd:ee:ff"}
    assert s.router.devices_path == "data.devices[*]"
    assert "hunter2" not in repr(s)
    monkeypatch.setenv("HOMESEC_PRESENCE_PEOPLE", '{"../etc": ["aa:bb:cc:dd:ee:ff"]}')
    with pytest.raises(ValidationError):
        PresenceSettings()
    monkeypatch.setenv("HOMESEC_PRESENCE_PEOPLE", "{}")
    monkeypatch.setenv("HOMESEC_PRESENCE_MQTT__TRACKERS", '{"alice": "ha/+/state"}')
    with pytest.raises(ValidationError, match="one concrete topic"):
        PresenceSettings()

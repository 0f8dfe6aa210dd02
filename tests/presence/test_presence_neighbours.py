"""The neighbour-table backend against fake table files and real (harmless) subprocesses."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from homesec_presence.backends.base import BackendError
from homesec_presence.backends.neighbours import (
    NeighbourBackend,
    parse_ip_neigh,
    parse_proc_arp,
    valid_target,
)
from homesec_presence.devices import Watchlist
from homesec_presence.settings import NeighbourSettings

ARP = """IP address       HW type     Flags       HW address            Mask     Device
192.168.1.10     0x1         0x2         AA:BB:CC:DD:EE:01     *        wlan0
192.168.1.11     0x1         0x0         00:00:00:00:00:00     *        wlan0
192.168.1.12     0x1         0x0         aa:bb:cc:dd:ee:03     *        wlan0
192.168.1.1      0x1         0x6         aa:bb:cc:dd:ee:04     *        wlan0
"""

IP_NEIGH = """192.168.1.10 dev wlan0 lladdr aa:bb:cc:dd:ee:01 REACHABLE
192.168.1.11 dev wlan0 lladdr aa:bb:cc:dd:ee:02 STALE
192.168.1.12 dev wlan0 lladdr aa:bb:cc:dd:ee:03 DELAY
192.168.1.13 dev wlan0 lladdr aa:bb:cc:dd:ee:05 FAILED
192.168.1.14 dev wlan0  INCOMPLETE
192.168.1.1 dev wlan0 lladdr aa:bb:cc:dd:ee:04 router PERMANENT
fe80::1 dev wlan0 lladdr aa:bb:cc:dd:ee:06 router STALE
"""

WATCH = Watchlist(
    {
        "alice": ["aa:bb:cc:dd:ee:01"],
        "bob": ["AA-BB-CC-DD-EE-02"],
        "carol": ["aa:bb:cc:dd:ee:03"],
        "dave": ["aa:bb:cc:dd:ee:05"],
    }
)


def test_parse_proc_arp() -> None:
    entries = parse_proc_arp(ARP)
    assert [(e.ip, e.mac, e.state, e.seen) for e in entries] == [
        ("192.168.1.10", "aa:bb:cc:dd:ee:01", "REACHABLE", True),
        ("192.168.1.11", None, "INCOMPLETE", False),
        ("192.168.1.12", "aa:bb:cc:dd:ee:03", "INCOMPLETE", False),
        ("192.168.1.1", "aa:bb:cc:dd:ee:04", "PERMANENT", False),
    ]


def test_parse_ip_neigh_states() -> None:
    seen = {e.mac: e.seen for e in parse_ip_neigh(IP_NEIGH)}
    assert seen == {
        "aa:bb:cc:dd:ee:01": True,  # REACHABLE
        "aa:bb:cc:dd:ee:02": True,  # STALE
        "aa:bb:cc:dd:ee:03": True,  # DELAY
        "aa:bb:cc:dd:ee:05": False,  # FAILED
        None: False,  # INCOMPLETE
        "aa:bb:cc:dd:ee:04": False,  # PERMANENT (static, not evidence)
        "aa:bb:cc:dd:ee:06": True,
    }


def test_arp_file_backend(tmp_path: Path) -> None:
    table = tmp_path / "arp"
    table.write_text(ARP)
    backend = NeighbourBackend(NeighbourSettings(arp_path=table))
    assert backend.observe(WATCH) == {"alice": True, "bob": False, "carol": False, "dave": False}
    table.unlink()
    with pytest.raises(BackendError, match="cannot read"):
        backend.observe(WATCH)


def test_ip_neigh_backend_runs_the_command(tmp_path: Path) -> None:
    out = tmp_path / "neigh.txt"
    out.write_text(IP_NEIGH)
    cfg = NeighbourSettings(source="ip_neigh", ip_neigh_command=["cat", str(out)])
    backend = NeighbourBackend(cfg)
    assert backend.observe(WATCH) == {"alice": True, "bob": True, "carol": True, "dave": False}
    failing = NeighbourBackend(
        NeighbourSettings(source="ip_neigh", ip_neigh_command=["cat", str(tmp_path / "nope")])
    )
    with pytest.raises(BackendError, match="cat exited 1"):
        failing.observe(WATCH)
    missing = NeighbourBackend(
        NeighbourSettings(source="ip_neigh", ip_neigh_command=["no-such-ip-binary"])
    )
    with pytest.raises(BackendError, match="command not found"):
        missing.observe(WATCH)


def test_valid_probe_targets() -> None:
    assert valid_target("192.168.1.10") and valid_target("fe80::1")
    assert valid_target("alices-phone.lan")
    for bad in ("-f", "--flood", "a b", "x;rm", "", "$(id)"):
        assert not valid_target(bad), bad


def test_probing_pings_watched_devices_and_hostnames(tmp_path: Path) -> None:
    """A fake ``ping`` (a real subprocess): it answers for one IP and one host name, and
    'refreshes' the table like a real ping would, by completing the pinged entry."""
    table = tmp_path / "arp"
    table.write_text(ARP)
    pinged = tmp_path / "pinged"
    pinged.mkdir()
    script = tmp_path / "fakeping.py"
    script.write_text(
        "import sys, pathlib\n"
        f"pinged = pathlib.Path({str(pinged)!r}); table = pathlib.Path({str(table)!r})\n"
        "target = sys.argv[-1]\n"
        "(pinged / target).touch()  # probes run in parallel: one file each\n"
        "if target == '192.168.1.12':\n"
        "    table.write_text(table.read_text().replace(\n"
        "        '192.168.1.12     0x1         0x0', '192.168.1.12     0x1         0x2'))\n"
        "    sys.exit(0)\n"
        "sys.exit(0 if target == 'erins-phone' else 1)\n"
    )
    cfg = NeighbourSettings(arp_path=table, probe=True, probe_command=[sys.executable, str(script)])
    watch = Watchlist(
        {"carol": ["aa:bb:cc:dd:ee:03"], "erin": ["erins-phone"], "frank": ["franks-phone"]}
    )
    backend = NeighbourBackend(cfg)
    assert backend.observe(watch) == {"carol": True, "erin": True, "frank": False}
    assert sorted(p.name for p in pinged.iterdir()) == [
        "192.168.1.12",
        "erins-phone",
        "franks-phone",
    ]


def test_probing_is_off_by_default(tmp_path: Path) -> None:
    table = tmp_path / "arp"
    table.write_text(ARP)
    backend = NeighbourBackend(NeighbourSettings(arp_path=table))
    backend.observe(Watchlist({"erin": ["erins-phone"], "carol": ["aa:bb:cc:dd:ee:03"]}))
    assert backend.probes_run == 0

"""The Linux neighbour table (``/proc/net/arp`` or ``ip neigh``), with optional probing.

A neighbour entry in state REACHABLE, STALE or DELAY counts as seen; FAILED, INCOMPLETE (and
anything else, e.g. PERMANENT static entries) does not. In ``/proc/net/arp`` a complete
(flag 0x2), non-permanent (no flag 0x4) entry counts as seen.

Probing (off by default) pings each watched device first — the IPs last seen for watched MACs
and the watched host names — so a sleeping phone answers and refreshes its entry. Commands run
with an argv list (never a shell) and targets are checked to be an IP or a host name.
"""

from __future__ import annotations

import ipaddress
import logging
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from homesec_presence.backends.base import BackendError, DeviceBackend
from homesec_presence.devices import HOSTNAME_RE, Device, Watchlist, normalise_mac
from homesec_presence.settings import NeighbourSettings

log = logging.getLogger("homesec_presence.neighbours")

SEEN_STATES = frozenset({"REACHABLE", "STALE", "DELAY"})
ATF_COM = 0x02
ATF_PERM = 0x04


@dataclass(frozen=True)
class Neighbour:
    ip: str
    mac: str | None
    state: str

    @property
    def seen(self) -> bool:
        return self.mac is not None and self.state in SEEN_STATES


def parse_proc_arp(text: str) -> list[Neighbour]:
    """Entries of ``/proc/net/arp`` (header line skipped); state REACHABLE for complete
    entries, PERMANENT for static ones, INCOMPLETE otherwise."""
    entries = []
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 4:
            continue
        try:
            flags = int(cols[2], 16)
        except ValueError:
            continue
        mac = normalise_mac(cols[3])
        if mac == "00:00:00:00:00:00":
            mac = None
        if flags & ATF_PERM:
            state = "PERMANENT"
        elif flags & ATF_COM and mac:
            state = "REACHABLE"
        else:
            state = "INCOMPLETE"
        entries.append(Neighbour(ip=cols[0], mac=mac, state=state))
    return entries


def parse_ip_neigh(text: str) -> list[Neighbour]:
    """Entries of ``ip neigh show``: ``IP dev IF [lladdr MAC] [router] STATE``."""
    entries = []
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 2:
            continue
        mac = None
        if "lladdr" in cols:
            i = cols.index("lladdr")
            if i + 1 < len(cols):
                mac = normalise_mac(cols[i + 1])
        state = cols[-1].upper()
        entries.append(Neighbour(ip=cols[0], mac=mac, state=state))
    return entries


def valid_target(target: str) -> bool:
    """An IP address or a host name: never something a command could read as an option."""
    try:
        ipaddress.ip_address(target)
        return True
    except ValueError:
        return bool(HOSTNAME_RE.fullmatch(target)) and not target.startswith("-")


class NeighbourBackend(DeviceBackend):
    name = "neighbours"

    def __init__(self, cfg: NeighbourSettings, watch: Watchlist | None = None) -> None:
        self.cfg = cfg
        self._watch = watch
        self._known_ips: dict[str, str] = {}  # watched MAC → last IP seen for it
        self.probes_run = 0

    def table(self) -> list[Neighbour]:
        if self.cfg.source == "arp_file":
            try:
                return parse_proc_arp(self.cfg.arp_path.read_text(encoding="utf-8"))
            except OSError as exc:
                raise BackendError(f"cannot read {self.cfg.arp_path}: {exc.strerror}") from None
        return parse_ip_neigh(
            self._run(self.cfg.ip_neigh_command, self.cfg.command_timeout_seconds)
        )

    def _run(self, argv: list[str], timeout: float) -> str:
        try:
            done = subprocess.run(
                argv, capture_output=True, timeout=timeout, check=False, text=True
            )
        except FileNotFoundError:
            raise BackendError(f"command not found: {argv[0]}") from None
        except subprocess.TimeoutExpired:
            raise BackendError(f"{argv[0]} timed out after {timeout:g} s") from None
        if done.returncode != 0:
            raise BackendError(f"{argv[0]} exited {done.returncode}: {done.stderr.strip()[:200]}")
        return done.stdout

    def _probe(self, target: str) -> bool:
        argv = [*self.cfg.probe_command, target]
        try:
            done = subprocess.run(
                argv, capture_output=True, timeout=self.cfg.probe_timeout_seconds, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0

    def probe(self, targets: list[str]) -> set[str]:
        """The targets that answered (run concurrently)."""
        targets = [t for t in dict.fromkeys(targets) if valid_target(t)]
        if not targets:
            return set()
        self.probes_run += len(targets)
        with ThreadPoolExecutor(max_workers=min(8, len(targets))) as pool:
            answers = list(pool.map(self._probe, targets))
        return {t for t, ok in zip(targets, answers, strict=True) if ok}

    def observe(self, watch: Watchlist) -> dict[str, bool | None]:
        self._watch = watch
        return super().observe(watch)

    def devices(self) -> list[Device]:
        entries = self.table()
        answered: set[str] = set()
        if self.cfg.probe and self._watch is not None:
            watched = self._watch.macs
            for e in entries:
                if e.mac in watched:
                    self._known_ips[e.mac] = e.ip
            targets = [self._known_ips[m] for m in sorted(watched) if m in self._known_ips]
            answered = self.probe(targets + sorted(self._watch.hostnames))
            if answered:
                entries = self.table()  # the pings refreshed the entries they reached
        devices = [Device(mac=e.mac) for e in entries if e.seen]
        devices += [Device(name=t) for t in answered if not _is_ip(t)]
        return devices


def _is_ip(target: str) -> bool:
    try:
        ipaddress.ip_address(target)
        return True
    except ValueError:
        return False

"""Devices and the people they belong to: MAC/hostname normalisation and matching."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

_HEX12 = re.compile(r"^[0-9a-f]{12}$")
HOSTNAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*\.?$")


def normalise_mac(value: str) -> str | None:
    """``AA-BB-CC-DD-EE-FF``, ``aabb.ccdd.eeff``, ``AABBCCDDEEFF`` → ``aa:bb:cc:dd:ee:ff``;
    ``None`` when ``value`` is not a MAC address."""
    digits = re.sub(r"[:\-.\s]", "", value.strip().lower())
    if not _HEX12.fullmatch(digits):
        return None
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def normalise_hostname(value: str) -> str:
    """Lower case, without a trailing dot or a local domain: ``Alices-Phone.lan.`` →
    ``alices-phone``."""
    return value.strip().rstrip(".").lower().split(".", 1)[0]


@dataclass(frozen=True)
class Device:
    """A device a backend saw on the network (either field may be unknown)."""

    mac: str | None = None
    name: str | None = None


@dataclass
class Person:
    name: str
    macs: set[str] = field(default_factory=set)
    hostnames: set[str] = field(default_factory=set)


class Watchlist:
    """Who to look for, and which of their devices identify them."""

    def __init__(self, people: Mapping[str, Iterable[str]]) -> None:
        self.people: dict[str, Person] = {}
        for name, devices in people.items():
            person = Person(name)
            for raw in devices:
                mac = normalise_mac(raw)
                if mac is not None:
                    person.macs.add(mac)
                elif HOSTNAME_RE.fullmatch(raw.strip()):
                    person.hostnames.add(normalise_hostname(raw))
                else:
                    raise ValueError(f"{name}: {raw!r} is neither a MAC address nor a hostname")
            self.people[name] = person

    @property
    def names(self) -> list[str]:
        return list(self.people)

    @property
    def macs(self) -> set[str]:
        return {mac for p in self.people.values() for mac in p.macs}

    @property
    def hostnames(self) -> set[str]:
        return {h for p in self.people.values() for h in p.hostnames}

    def match(self, devices: Iterable[Device]) -> dict[str, bool]:
        """Each person: seen (one of their devices is among ``devices``) or not."""
        macs: set[str] = set()
        names: set[str] = set()
        for device in devices:
            if device.mac:
                mac = normalise_mac(device.mac)
                if mac:
                    macs.add(mac)
            if device.name:
                names.add(normalise_hostname(device.name))
        return {
            name: bool(person.macs & macs or person.hostnames & names)
            for name, person in self.people.items()
        }

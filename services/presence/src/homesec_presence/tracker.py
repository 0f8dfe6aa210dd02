"""Debounce: who counts as home, from a stream of "seen now?" observations.

* Arrival counts at once: a person seen in a poll is home.
* Departure needs ``grace`` seconds of *observed* absence: the absence clock starts when the
  person was last seen, or when the backend (re)started answering, whichever is later.
* A backend outage observes nothing: states stay as they were (no one leaves, no one arrives)
  and after recovery the grace period starts again for everyone not seen. A long outage
  therefore never arms or disarms anything by itself.
* A person the backend has no information about (``None``) keeps their state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from homesec.contract import PersonPresence, PresenceState


@dataclass
class PersonTrack:
    name: str
    home: bool | None = None  # None: unknown yet
    last_seen: float | None = None
    absence_clock: float | None = None  # absence is measured from here
    away_seen: bool = False  # the last observation said "not there"


@dataclass(frozen=True)
class Change:
    person: str
    home: bool


class PresenceTracker:
    def __init__(self, people: Iterable[str], grace_seconds: float) -> None:
        self.grace = grace_seconds
        self.people: dict[str, PersonTrack] = {name: PersonTrack(name) for name in people}
        self._resuming = True

    def restore(self, state: PresenceState) -> list[str]:
        """Take over the last published state (service restart). Only people seen at least
        once are restored: a never-seen person's ``home=false`` was not established."""
        restored = []
        for person in state.people:
            track = self.people.get(person.name)
            if track is None or person.last_seen is None or track.home is not None:
                continue
            track.home = person.home
            track.last_seen = person.last_seen
            restored.append(person.name)
        self._resuming = True
        return restored

    def outage(self) -> None:
        """The backend failed: nothing was observed; absence clocks restart on recovery."""
        self._resuming = True

    def observe(self, now: float, seen: Mapping[str, bool | None]) -> list[Change]:
        """Apply one successful poll; returns who changed."""
        changes = []
        resuming, self._resuming = self._resuming, False
        for name, track in self.people.items():
            if resuming or track.absence_clock is None:
                track.absence_clock = now
            observed = seen.get(name)
            if observed is None:
                continue
            track.away_seen = not observed
            if observed:
                track.last_seen = now
                track.absence_clock = now
                if track.home is not True:
                    track.home = True
                    changes.append(Change(name, True))
            elif track.home is not False and now - track.absence_clock >= self.grace:
                track.home = False
                changes.append(Change(name, False))
        return changes

    def next_due(self) -> float | None:
        """When the earliest pending departure takes effect if nothing changes (a push backend
        observes nothing new by itself, so the service observes again then); None: none."""
        due = [
            t.absence_clock + self.grace
            for t in self.people.values()
            if t.away_seen and t.home is not False and t.absence_clock is not None
        ]
        return min(due, default=None)

    def occupancy(self) -> bool | None:
        """True: someone is home; False: everybody is known to be away; None: not known
        (nobody home for sure, but someone's state is unknown, or nobody is watched)."""
        if not self.people:
            return None
        states = [t.home for t in self.people.values()]
        if any(s is True for s in states):
            return True
        if all(s is False for s in states):
            return False
        return None

    def snapshot(self) -> list[PersonPresence]:
        return [
            PersonPresence(name=t.name, home=t.home is True, last_seen=t.last_seen)
            for t in self.people.values()
        ]

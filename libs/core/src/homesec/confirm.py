"""Commands sent until their owner answers them (fail secure: a command that reached nobody is
sent again, and whoever sent it is told).

QoS 1 takes a command as far as the broker, not to the state owner. On a fresh broker (the
first start, or a broker that lost its persistence file) a command published before the
owner's first subscription has no session to wait in: the broker acknowledges it and drops
it, and the house stays disarmed while the owner was told "Arming". A :class:`Confirmer`
sends each command, watches for the owner's answer (the alarm's ``alarm/result`` carrying the
command's ``request_id``, or the retained state showing the requested value), sends the same
command again with the one backoff while no answer came (the same ``request_id``: the owner's
handlers are idempotent), and reports when the answer is late, when it comes and when it never
does. It stops sending when someone else changed the same thing after it sent (it never
fights a newer command: a resent disarm must not undo a newer arm).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter

from homesec.backoff import backoff_delay
from homesec.bus import Bus, Received
from homesec.contract import (
    ALARM_RESULT,
    ARM_ACTIONS,
    AVAILABILITY,
    AlarmAction,
    AlarmResult,
    AlarmState,
    AlarmStatus,
    Availability,
    SystemValue,
)

log = logging.getLogger("homesec.confirm")

T = TypeVar("T")


class Outcome(StrEnum):
    """How a command ended for its sender."""

    CONFIRMED = "confirmed"  # the owner applied it (or the state already was what it asked)
    REFUSED = "refused"  # the owner answered and refused it (alarm/result, with the reason)
    SUPERSEDED = "superseded"  # a newer command for the same thing, from here or elsewhere
    UNCONFIRMED = "unconfirmed"  # no answer within give_up_seconds: no longer sent
    STOPPED = "stopped"  # the sender shut down first


@dataclass(frozen=True)
class Answer:
    outcome: Outcome
    detail: str | None = None  # the refusal's reason, or who changed it since


@dataclass(frozen=True)
class Ended:
    """What :class:`Confirmer` reports when a command ends."""

    outcome: Outcome
    seconds: float  # from the first send
    sends: int
    late: bool  # whether ``on_late`` was called before
    detail: str | None = None


Check = Callable[[], Answer | None]
"""None while the owner has not answered; an :class:`Answer` once it is over."""


class RecentRequests(Generic[T]):
    """The owner's side: the ``request_id`` of the commands it applied lately (the newest
    ``keep``) with its answer, so that a copy sent again is answered again, not applied twice:
    a copy that waited in the owner's session behind a newer command from someone else must
    not undo it."""

    def __init__(self, keep: int = 512) -> None:
        self._keep = keep
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, T | None] = OrderedDict()

    def first_time(self, request_id: str | None) -> bool:
        """Record ``request_id``; False when it was seen before (None: always True)."""
        if request_id is None:
            return True
        with self._lock:
            if request_id in self._seen:
                return False
            self._seen[request_id] = None
            while len(self._seen) > self._keep:
                self._seen.popitem(last=False)
            return True

    def answer(self, request_id: str | None, value: T) -> None:
        """Keep the answer given to ``request_id`` (recorded by :meth:`first_time`)."""
        with self._lock:
            if request_id is not None and request_id in self._seen:
                self._seen[request_id] = value

    def answered(self, request_id: str | None) -> T | None:
        with self._lock:
            return None if request_id is None else self._seen.get(request_id)


class AlarmResults:
    """The owner's latest answers on ``alarm/result``, by ``request_id`` (the newest ``keep``)."""

    def __init__(self, bus: Bus, keep: int = 256) -> None:
        self._results: RecentRequests[AlarmResult] = RecentRequests(keep)
        bus.subscribe(ALARM_RESULT, self._on_result)

    def get(self, request_id: str) -> AlarmResult | None:
        return self._results.answered(request_id)

    def _on_result(self, msg: Received[AlarmResult]) -> None:
        self._results.first_time(msg.payload.request_id)
        self._results.answer(msg.payload.request_id, msg.payload)


class OwnerOnline:
    """Whether the state owner is online (its retained ``availability``, ``offline`` also as its
    Last Will), and since when. A command is sent again only to an owner that has been online
    for a while without answering it: that one was lost. An offline owner's persistent session
    holds the first copy; copies queued behind it could land after a newer command from
    someone else (the owner also ignores a ``request_id`` it has applied, see
    :class:`RecentRequests`)."""

    def __init__(
        self,
        bus: Bus | None = None,
        service: str = "detector",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """With ``bus``: subscribed to ``service``'s availability. Without: fed by
        :meth:`seen` (a sender that already mirrors every availability topic: a second
        subscription to the same topic would have every message delivered twice)."""
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None
        if bus is not None:
            bus.subscribe(AVAILABILITY, lambda msg: self.seen(msg.payload), service=service)

    def online_for(self, seconds: float) -> bool:
        """Online, and for at least ``seconds``."""
        with self._lock:
            return self._since is not None and self._clock() - self._since >= seconds

    def seen(self, availability: Availability) -> None:
        """The owner's availability, as received."""
        online = availability.root == "online"
        with self._lock:
            if not online:
                self._since = None
            elif self._since is None:
                self._since = self._clock()


def _answered(result: AlarmResult | None) -> Answer | None:
    if result is None:
        return None
    if result.accepted:
        return Answer(Outcome.CONFIRMED)
    return Answer(Outcome.REFUSED, result.error or "refused")


def _newer_by_other(changed_at: float, changed_by: str, sent_at: float, source: str) -> bool:
    """A change made after ``sent_at`` by someone else (the owner's restore is not one)."""
    return changed_at > sent_at and changed_by not in (source, "default")


def setting_check(
    value: Callable[[], SystemValue | None],
    want: bool,
    source: str,
    sent_at: float,
    result: Callable[[], AlarmResult | None] = lambda: None,
) -> Check:
    """A ``system/<setting>/set`` command: answered once the retained state shows ``want``, or
    (``armed``, which goes through the alarm) once ``alarm/result`` answers its request_id.
    ``value`` gives the retained state, None while it was never received; ``sent_at`` is the
    wall-clock time of the first send."""

    def check() -> Answer | None:
        answered = _answered(result())
        if answered is not None:
            return answered
        current = value()
        if current is None:
            return None
        if current.value == want:
            return Answer(Outcome.CONFIRMED)
        if _newer_by_other(current.changed_at, current.changed_by, sent_at, source):
            return Answer(Outcome.SUPERSEDED, f"changed by {current.changed_by} since")
        return None

    return check


def alarm_wanted(action: AlarmAction, status: AlarmStatus) -> bool:
    """Whether ``status`` already is what ``action`` asks for (sending it changes nothing)."""
    if action in ARM_ACTIONS:
        return status.mode is ARM_ACTIONS[action] and status.state is not AlarmState.DISARMED
    if action is AlarmAction.DISARM:
        return status.state is AlarmState.DISARMED
    if action is AlarmAction.TRIGGER:
        return status.state is AlarmState.TRIGGERED
    return status.state not in (AlarmState.PENDING, AlarmState.TRIGGERED)  # ACK


def alarm_check(
    action: AlarmAction,
    status: Callable[[], AlarmStatus | None],
    result: Callable[[], AlarmResult | None],
    source: str,
    sent_at: float,
) -> Check:
    """An ``alarm/service/set`` command: answered by ``alarm/result`` with its request_id; over
    when the alarm changed since by someone else without being what it asks."""

    def check() -> Answer | None:
        answered = _answered(result())
        if answered is not None:
            return answered
        current = status()
        if current is None:
            return None
        if _newer_by_other(current.changed_at, current.changed_by, sent_at, source):
            if alarm_wanted(action, current):
                return Answer(Outcome.CONFIRMED)
            return Answer(
                Outcome.SUPERSEDED, f"{current.state.value} by {current.changed_by} since"
            )
        return None

    return check


@dataclass
class _Pending:
    key: str
    send: Callable[[], None]
    check: Check
    on_late: Callable[[float], None] | None
    on_done: Callable[[Ended], None] | None
    started: float
    next_send: float
    sends: int = 1
    late: bool = False


class Confirmer:
    """Sends commands until answered (see the module docstring); one thread for all of them.

    A command is sent again only while ``ready`` (the sender's broker connection is up) and,
    with ``owner``, once the owner has been online for ``resend_min_seconds`` without
    answering (:class:`OwnerOnline`); the first send waits for neither.

    A command is keyed by what it changes (``armed``, ``alarm``, ``notifications`` ...): a newer
    command for the same key ends the older one as superseded. Callbacks run on the
    confirmer's thread (keep them short, or hand them to a worker)."""

    def __init__(
        self,
        *,
        resend_min_seconds: float = 2.0,
        resend_max_seconds: float = 60.0,
        late_seconds: float = 10.0,
        give_up_seconds: float = 600.0,
        poll_seconds: float = 0.2,
        ready: Callable[[], bool] = lambda: True,
        owner: OwnerOnline | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < resend_min_seconds <= resend_max_seconds:
            raise ValueError("resend needs 0 < resend_min_seconds <= resend_max_seconds")
        self.resend_min_seconds = resend_min_seconds
        self.resend_max_seconds = resend_max_seconds
        self.late_seconds = late_seconds
        self.give_up_seconds = give_up_seconds
        self.poll_seconds = poll_seconds
        self._ready = ready
        self._owner = owner
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ended = Counter(
            "homesec_commands_ended",
            "Commands this service sent to a state owner, by key and how they ended "
            "(confirmed, refused, superseded, unconfirmed: never answered)",
            ["command", "outcome"],
            registry=registry,
        )
        self.resent = Counter(
            "homesec_commands_resent",
            "Commands sent again because their owner had not answered",
            ["command"],
            registry=registry,
        )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="confirm", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            left, self._pending = list(self._pending.values()), {}
        for pending in left:
            self._end(pending, Answer(Outcome.STOPPED))

    def pending(self) -> list[str]:
        """The keys of the commands still waiting for an answer."""
        with self._lock:
            return list(self._pending)

    def submit(
        self,
        key: str,
        send: Callable[[], None],
        check: Check,
        *,
        on_late: Callable[[float], None] | None = None,
        on_done: Callable[[Ended], None] | None = None,
    ) -> None:
        """Send now (in the caller's thread), then again until ``check`` answers."""
        send()
        now = self._clock()
        pending = _Pending(key, send, check, on_late, on_done, now, now + self.resend_min_seconds)
        with self._lock:
            previous = self._pending.pop(key, None)
            self._pending[key] = pending
        if previous is not None:
            self._end(previous, Answer(Outcome.SUPERSEDED, "a newer command from here"))
        self._wake.set()

    def step(self) -> None:
        """One pass over the pending commands (the thread runs it every ``poll_seconds``)."""
        with self._lock:
            pending = list(self._pending.values())
        for item in pending:
            answer = self._ask(item)
            now = self._clock()
            if answer is None and now - item.started >= self.give_up_seconds:
                answer = Answer(Outcome.UNCONFIRMED)
            if answer is not None:
                with self._lock:
                    if self._pending.get(item.key) is not item:
                        continue  # superseded meanwhile: already ended
                    del self._pending[item.key]
                self._end(item, answer)
                continue
            if not item.late and now - item.started >= self.late_seconds:
                item.late = True
                log.warning(
                    "command not answered yet",
                    extra={"command": item.key, "seconds": round(now - item.started, 1)},
                )
                self._call(item.on_late, now - item.started)
            if now >= item.next_send and self._can_resend():
                item.send()
                item.sends += 1
                self.resent.labels(item.key).inc()
                item.next_send = now + backoff_delay(
                    item.sends, self.resend_min_seconds, self.resend_max_seconds
                )

    def _can_resend(self) -> bool:
        if not self._ready():
            return False
        return self._owner is None or self._owner.online_for(self.resend_min_seconds)

    def _ask(self, item: _Pending) -> Answer | None:
        try:
            return item.check()
        except Exception:
            log.exception("command check failed", extra={"command": item.key})
            return None

    def _end(self, item: _Pending, answer: Answer) -> None:
        seconds = self._clock() - item.started
        self.ended.labels(item.key, answer.outcome.value).inc()
        level = logging.INFO if answer.outcome is Outcome.CONFIRMED else logging.WARNING
        log.log(
            level,
            "command " + answer.outcome.value,
            extra={
                "command": item.key,
                "seconds": round(seconds, 1),
                "sends": item.sends,
                "detail": answer.detail,
            },
        )
        self._call(
            item.on_done, Ended(answer.outcome, seconds, item.sends, item.late, answer.detail)
        )

    def _call(self, callback: Callable[..., None] | None, *args: object) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            log.exception("command callback failed")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.step()
            self._wake.wait(self.poll_seconds)
            self._wake.clear()


__all__ = [
    "AlarmResults",
    "Answer",
    "Check",
    "Confirmer",
    "Ended",
    "Outcome",
    "OwnerOnline",
    "RecentRequests",
    "alarm_check",
    "alarm_wanted",
    "setting_check",
]

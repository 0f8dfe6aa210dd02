"""A bus in a child process, for tests that must kill a service without a clean stop.

    python bus_child.py ROLE HOST PORT [ARG]

Roles (each prints one line per step, then waits to be killed):
  online                 connect as "camera"; print ONLINE
  fail-labels            subscribe to training labels as "uploader" with a handler that always
                         raises; print FAILED <event_id> for each try
  publish-labels N PATH  as "slack-gateway" with its outbox at PATH: publish N labels (the
                         broker may be down); print STORED N
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from homesec.bus import Bus, Received
from homesec.contract import TRAINING_LABELS, Label, TrainingLabel
from homesec.settings import BrokerSettings


def say(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str]) -> None:
    role, host, port = argv[0], argv[1], int(argv[2])
    settings = BrokerSettings(
        host=host,
        port=port,
        reconnect_min_seconds=1,
        reconnect_max_seconds=2,
        handler_retry_min_seconds=0.2,
        handler_retry_max_seconds=0.5,
        handler_attempts=100,
    )
    if role == "online":
        bus = Bus(settings, "camera")
        bus.start()
        bus.wait_connected(10)
        say("ONLINE")
    elif role == "fail-labels":
        bus = Bus(settings, "uploader")

        def fail(msg: Received[TrainingLabel]) -> None:
            say(f"FAILED {msg.payload.event_id}")
            raise OSError("ledger unwritable")

        bus.subscribe(TRAINING_LABELS, fail)
        bus.start()
        bus.wait_connected(10)
        say("ONLINE")
    elif role == "publish-labels":
        count, path = int(argv[3]), Path(argv[4])
        bus = Bus(settings, "slack-gateway", outbox_path=path)
        bus.start()
        for n in range(count):
            bus.publish(
                TRAINING_LABELS,
                TrainingLabel(
                    event_id=f"ev-{n}", camera="front", label=Label.OCCUPIED, labelled_by="x"
                ),
            )
        say(f"STORED {count}")
    else:
        raise SystemExit(f"unknown role {role}")
    threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv[1:])

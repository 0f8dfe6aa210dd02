"""When to ask for arm/disarm: on occupancy transitions, only while auto-arm is on.

* house becomes empty (someone home → everybody away, or unknown → everybody away after the
  grace period) → arm;
* someone arrives (everybody away → someone home) → disarm; unknown → someone home is not an
  arrival (e.g. first start with nothing to restore), so it asks for nothing;
* auto-arm switched on → the current occupancy is applied once (empty → arm, home → disarm);
* auto-arm off, or the backend failing → never a request.
"""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    ARM = "arm"
    DISARM = "disarm"


class AutoArmPolicy:
    def __init__(self) -> None:
        self.last: bool | None = None

    def on_occupancy(
        self, occupancy: bool | None, auto_arm: bool, backend_ok: bool
    ) -> Action | None:
        previous, self.last = self.last, occupancy
        if not auto_arm or not backend_ok or occupancy is None or occupancy == previous:
            return None
        if occupancy is False:
            return Action.ARM
        if previous is False:
            return Action.DISARM
        return None

    def on_auto_arm_enabled(self, backend_ok: bool) -> Action | None:
        if not backend_ok or self.last is None:
            return None
        return Action.DISARM if self.last else Action.ARM

"""The alarm code: which commands need it, a constant-time check and a lockout.

Pure logic fed with the time. The code is held as a :class:`~pydantic.SecretStr` and compared
with :func:`hmac.compare_digest` on UTF-8 bytes; no message or log ever contains it. After
``attempts`` wrong codes in a row every code-checked command is refused for
``lockout_seconds`` (the right code included), then the count starts again; a right code
resets it. The count lives in memory: a restart of the detector starts it again.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, model_validator

from homesec.contract import ARM_ACTIONS, AlarmAction
from homesec.settings import read_secret_file


class CodeSettings(BaseModel):
    """The optional alarm code for ``alarm/set`` and ``system/armed/set``."""

    code: SecretStr | None = Field(
        None, description="Alarm code; unset: no code (better: code_file, a Docker secret)"
    )
    code_file: Path | None = Field(None, description="File holding the code (used when unset)")
    arm_required: bool = Field(
        False, description="Arming needs the code too (disarm and acknowledge always do)"
    )
    attempts: int = Field(5, ge=1, le=100, description="Wrong codes in a row before the lockout")
    lockout_seconds: float = Field(
        300.0, ge=0, le=86400, description="How long code-checked commands are refused"
    )

    @model_validator(mode="after")
    def _read_code_file(self) -> CodeSettings:
        if self.code is None and self.code_file is not None:
            object.__setattr__(self, "code", read_secret_file(self.code_file, "code_file"))
        if self.code is not None and not self.code.get_secret_value():
            object.__setattr__(self, "code", None)
        return self

    @property
    def enabled(self) -> bool:
        return self.code is not None

    @property
    def numeric(self) -> bool:
        """True when the code is all digits (Home Assistant then shows a keypad)."""
        return self.code is not None and self.code.get_secret_value().isdigit()


@dataclass(frozen=True)
class Verdict:
    """The answer of :meth:`CodeGuard.check`."""

    ok: bool
    error: str | None = None
    attempts_left: int | None = None
    locked_until: float | None = None


class CodeGuard:
    """Checks codes for the code-checked command topics; counts wrong ones."""

    def __init__(self, settings: CodeSettings) -> None:
        self.settings = settings
        self._wrong = 0
        self._locked_until: float | None = None

    def required(self, action: AlarmAction) -> bool:
        if not self.settings.enabled or action is AlarmAction.TRIGGER:
            return False
        return action not in ARM_ACTIONS or self.settings.arm_required

    def check(self, action: AlarmAction, code: SecretStr | None, now: float) -> Verdict:
        if not self.required(action):
            return Verdict(True)
        if self._locked_until is not None:
            if now < self._locked_until:
                return Verdict(
                    False, "locked out after repeated wrong codes", 0, self._locked_until
                )
            self._locked_until = None
            self._wrong = 0
        if code is None:
            return Verdict(False, "code required")
        expected = self.settings.code
        assert expected is not None
        given = code.get_secret_value().encode()
        if hmac.compare_digest(given, expected.get_secret_value().encode()):
            self._wrong = 0
            return Verdict(True)
        self._wrong += 1
        left = self.settings.attempts - self._wrong
        if left <= 0:
            self._locked_until = now + self.settings.lockout_seconds
            return Verdict(
                False, "wrong code; locked out after repeated wrong codes", 0, self._locked_until
            )
        return Verdict(False, "wrong code", left)

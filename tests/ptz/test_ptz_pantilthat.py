"""The Pan-Tilt HAT adapter against a fake ``pantilthat`` module (the hardware is absent).

The fake has the library's documented module API and its range check (ValueError outside
-90..90), and records every call by its real name."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

from homesec.contract import PtzCommand
from homesec_ptz.backends import PanTiltHatBackend


class FakePanTiltHat(types.ModuleType):
    def __init__(self) -> None:
        super().__init__("pantilthat")
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self._pan: float | None = None
        self._tilt: float | None = None

    def _check(self, angle: float) -> None:
        if angle < -90 or angle > 90:
            raise ValueError("Angle should be between -90 and 90")

    def pan(self, angle: float) -> None:
        self.calls.append(("pan", (angle,)))
        self._check(angle)
        self._pan = angle

    def tilt(self, angle: float) -> None:
        self.calls.append(("tilt", (angle,)))
        self._check(angle)
        self._tilt = angle

    def get_pan(self) -> float | None:
        self.calls.append(("get_pan", ()))
        return self._pan

    def get_tilt(self) -> float | None:
        self.calls.append(("get_tilt", ()))
        return self._tilt

    def servo_enable(self, index: int, state: bool) -> None:
        assert index in (1, 2)
        self.calls.append(("servo_enable", (index, state)))

    def idle_timeout(self, value: float) -> None:
        self.calls.append(("idle_timeout", (value,)))


@pytest.fixture
def fake_hat(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePanTiltHat]:
    fake = FakePanTiltHat()
    monkeypatch.setitem(sys.modules, "pantilthat", fake)
    yield fake


def test_constructor_enables_servos_and_idle_timeout(fake_hat: FakePanTiltHat) -> None:
    PanTiltHatBackend()
    assert fake_hat.calls == [
        ("servo_enable", (1, True)),
        ("servo_enable", (2, True)),
        ("idle_timeout", (2,)),
    ]


def test_move_and_position_use_the_real_api(fake_hat: FakePanTiltHat) -> None:
    backend = PanTiltHatBackend()
    fake_hat.calls.clear()
    backend.move(30, 20)
    assert backend.position() == (30.0, 20.0)
    assert fake_hat.calls == [
        ("pan", (30,)),
        ("tilt", (20,)),
        ("get_pan", ()),
        ("get_tilt", ()),
    ]
    backend.close()
    assert fake_hat.calls[-2:] == [("servo_enable", (1, False)), ("servo_enable", (2, False))]


def test_out_of_range_reaches_the_library_only_after_clamping(
    fake_hat: FakePanTiltHat, tmp_path: Any
) -> None:
    backend = PanTiltHatBackend()
    with pytest.raises(ValueError):  # the adapter itself does not hide the library's check
        backend.move(95, 0)
    # ...which is why the controller clamps first:
    from homesec_ptz.planner import plan
    from homesec_ptz.settings import Position

    result = plan(
        PtzCommand(pan=95, tilt=-120), Position(pan=0, tilt=0), {}, Position(pan=0, tilt=0)
    )
    assert result.target is not None
    backend.move(result.target.pan, result.target.tilt)
    assert backend.position() == (90.0, -90.0)


def test_missing_library_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pantilthat", None)  # import raises ImportError
    with pytest.raises(RuntimeError, match="pantilthat"):
        PanTiltHatBackend()

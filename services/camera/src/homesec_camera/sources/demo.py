"""The demo source: a generated room into which a real person walks, with light changes.

Runs with no camera and no download, so the whole pipeline (motion, person confirmation, alert,
light-change guard) can be exercised anywhere. The person is a matted crop of a real photo
(``demo_assets/person_walking.png``, cut from FastestDet's sample ``data/2.jpg``, BSD-3, see
``LICENSE.fastestdet`` beside it); the room is synthesised from a seed.

The timeline repeats every ``period_seconds`` (default 50 s); all times below scale with it.
The gaps are long enough for a detector's event (with a 10 s quiet time) to end before the light
changes, so each phase can be judged on its own:

====================  =========================================================================
base seconds          what happens
====================  =========================================================================
0.0 - 8.0             empty room
8.0 - 10.5            the person walks in from the left edge to 42% of the width
10.5 - 15.5           the person stands there (swaying a few pixels)
15.5 - 18.0           the person walks out through the right edge
18.0 - 32.0           empty room
32.0                  light step down: whole frame to 60% brightness (lamp switched off)
32.0 - 40.0           empty, dim
40.0                  light step up: back to 100%
40.0 - 44.0           empty room
44.0 - 48.0           a cloud: brightness eases down to 80% and back (cosine)
48.0 - 50.0           empty room
====================  =========================================================================

Frames are a pure function of (seed, size, period, time, frame index): ``DemoScene.render``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

import cv2
import numpy as np

from homesec_camera.sources.base import FrameSource, SourceError

BASE_PERIOD = 50.0
"""Length of the timeline in base seconds; ``period_seconds`` scales every phase."""

PHASES: tuple[tuple[str, float, float], ...] = (
    ("empty", 0.0, 8.0),
    ("walk_in", 8.0, 10.5),
    ("stand", 10.5, 15.5),
    ("walk_out", 15.5, 18.0),
    ("empty", 18.0, 32.0),
    ("dim", 32.0, 40.0),
    ("empty", 40.0, 44.0),
    ("cloud", 44.0, 48.0),
    ("empty", 48.0, 50.0),
)
"""(phase, start, end) in base seconds. ``dim`` begins with a step down and ends with a step up."""

DIM_GAIN = 0.6
CLOUD_GAIN = 0.8
STAND_X = 0.42
"""Horizontal centre of the standing person, as a fraction of the frame width."""
PERSON_HEIGHT = 0.66
"""Person height as a fraction of the frame height."""
FEET_Y = 0.96
"""Where the feet touch the floor, as a fraction of the frame height."""
NOISE_BANK = 6
"""Distinct noise fields cycled through (generating fresh noise per frame costs more)."""
NOISE_SHIFT = 7
"""Pixels between two noise fields: each is a contiguous window of one buffer of i.i.d. noise,
starting this many pixels after the previous one (so a new field for every pixel). One
buffer of h x w + 35 pixels instead of six of h x w: 0.9 MB instead of 5.5 MB at 640x480."""


@dataclass(frozen=True)
class SceneState:
    """What the scene shows at one instant."""

    phase: str
    gain: float
    person_x: float | None
    """Horizontal centre of the person in pixels, or None when nobody is in the room."""
    person_dy: int = 0
    """Vertical bob of the walking person in pixels."""


def phase_at(t: float, period_seconds: float = BASE_PERIOD) -> tuple[str, float]:
    """The phase name at time ``t`` and the fraction (0..1) of that phase already elapsed."""
    base = (t % period_seconds) * BASE_PERIOD / period_seconds
    for name, start, end in PHASES:
        if start <= base < end:
            return name, (base - start) / (end - start)
    return PHASES[-1][0], 1.0


def _smooth(x: float) -> float:
    return x * x * (3 - 2 * x)


class DemoScene:
    """Renders the demo timeline at a given size."""

    def __init__(
        self,
        width: int = 640,
        height: int = 480,
        *,
        seed: int = 7,
        period_seconds: float = BASE_PERIOD,
        noise: float = 2.0,
    ) -> None:
        self.width = width
        self.height = height
        self.period_seconds = period_seconds
        rng = np.random.default_rng(seed)
        self.background = _room(width, height, rng)
        self._person, self._alpha = _load_person(round(height * PERSON_HEIGHT))
        fields = NOISE_BANK if noise > 0 else 0
        values = height * width * 3
        shift = NOISE_SHIFT * 3
        buffer = rng.normal(0.0, noise, values + shift * max(0, fields - 1))
        buffer = np.clip(buffer, -127, 127).astype(np.int8)
        self._noise = [
            buffer[k * shift : k * shift + values].reshape(height, width, 3) for k in range(fields)
        ]

    @property
    def person_size(self) -> tuple[int, int]:
        """(width, height) of the person in pixels."""
        return self._person.shape[1], self._person.shape[0]

    def noise_buffers(self) -> list[np.ndarray]:
        """The arrays the noise fields are views of (one, whatever ``NOISE_BANK``)."""
        return [n.base if n.base is not None else n for n in self._noise]

    def state_at(self, t: float) -> SceneState:
        """Where the person is and how bright the room is at time ``t`` (seconds)."""
        name, frac = phase_at(t, self.period_seconds)
        pw = self._person.shape[1]
        stand = STAND_X * self.width
        walking_bob = round(3 * abs(math.sin(2 * math.pi * 1.8 * t)))
        if name == "walk_in":
            x = -pw / 2 + (stand + pw / 2) * frac
            return SceneState(name, 1.0, x, walking_bob)
        if name == "stand":
            return SceneState(name, 1.0, stand + 4 * math.sin(2 * math.pi * 0.5 * t))
        if name == "walk_out":
            x = stand + (self.width + pw / 2 - stand) * frac
            return SceneState(name, 1.0, x, walking_bob)
        if name == "dim":
            return SceneState(name, DIM_GAIN, None)
        if name == "cloud":
            dip = 0.5 - 0.5 * math.cos(2 * math.pi * frac)
            return SceneState(name, 1.0 - (1.0 - CLOUD_GAIN) * _smooth(dip), None)
        return SceneState(name, 1.0, None)

    def person_box(self, t: float) -> tuple[int, int, int, int] | None:
        """(x, y, w, h) of the person clipped to the frame, or None when not visible."""
        state = self.state_at(t)
        if state.person_x is None:
            return None
        x0, y0, x1, y1 = self._placement(state)
        x0c, x1c = max(0, x0), min(self.width, x1)
        y0c, y1c = max(0, y0), min(self.height, y1)
        if x1c <= x0c or y1c <= y0c:
            return None
        return x0c, y0c, x1c - x0c, y1c - y0c

    def render(self, t: float, index: int = 0) -> np.ndarray:
        """The BGR frame at time ``t``; ``index`` picks the sensor-noise field."""
        state = self.state_at(t)
        frame = self.background.copy()
        if state.person_x is not None:
            self._paste_person(frame, state)
        if state.gain != 1.0:
            frame = cv2.convertScaleAbs(frame, alpha=state.gain)
        if self._noise:
            noise = self._noise[index % len(self._noise)]
            frame = cv2.add(frame, noise, dtype=cv2.CV_8U)
        return frame

    def _placement(self, state: SceneState) -> tuple[int, int, int, int]:
        assert state.person_x is not None
        ph, pw = self._person.shape[:2]
        x0 = round(state.person_x - pw / 2)
        y1 = round(FEET_Y * self.height) - state.person_dy
        return x0, y1 - ph, x0 + pw, y1

    def _paste_person(self, frame: np.ndarray, state: SceneState) -> None:
        x0, y0, x1, y1 = self._placement(state)
        fx0, fy0 = max(0, x0), max(0, y0)
        fx1, fy1 = min(self.width, x1), min(self.height, y1)
        if fx1 <= fx0 or fy1 <= fy0:
            return
        person = self._person[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
        alpha = self._alpha[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
        roi = frame[fy0:fy1, fx0:fx1].astype(np.float32)
        blended = roi + (person - roi) * alpha
        frame[fy0:fy1, fx0:fx1] = blended.astype(np.uint8)


class DemoSource(FrameSource):
    """The demo scene played in real time from the moment the source is opened."""

    kind = "demo"

    def __init__(
        self,
        width: int = 640,
        height: int = 480,
        *,
        seed: int = 7,
        period_seconds: float = BASE_PERIOD,
        noise: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._args = (width, height, seed, period_seconds, noise)
        self._clock = clock
        self.scene: DemoScene | None = None
        self._started = 0.0
        self._index = 0

    def open(self) -> None:
        if self.scene is None:
            width, height, seed, period, noise = self._args
            self.scene = DemoScene(width, height, seed=seed, period_seconds=period, noise=noise)
        self._started = self._clock()
        self._index = 0

    def elapsed(self) -> float:
        """Seconds of timeline played since ``open()``."""
        return self._clock() - self._started

    def read(self) -> np.ndarray:
        if self.scene is None:
            raise SourceError("demo source is not open")
        frame = self.scene.render(self.elapsed(), self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        """Nothing to release; the scene is kept so a reopen is instant."""

    def describe(self) -> str:
        return f"demo (seed {self._args[2]}, period {self._args[3]:g} s)"


# ---- assets and the generated room -----------------------------------------------------------


def _load_person(height: int) -> tuple[np.ndarray, np.ndarray]:
    """The person crop scaled to ``height``: BGR float32 and a feathered alpha (HxWx1)."""
    data = resources.files("homesec_camera").joinpath("demo_assets/person_walking.png")
    raw = np.frombuffer(data.read_bytes(), dtype=np.uint8)
    rgba = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    if rgba is None or rgba.ndim != 3 or rgba.shape[2] != 4:
        raise SourceError("demo asset person_walking.png is missing or not RGBA")
    scale = height / rgba.shape[0]
    width = max(1, round(rgba.shape[1] * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    rgba = cv2.resize(rgba, (width, height), interpolation=interp)
    rgba = cv2.flip(rgba, 1)  # the photo faces left; the demo person walks to the right
    alpha = cv2.GaussianBlur(rgba[:, :, 3], (3, 3), 0).astype(np.float32) / 255.0
    return rgba[:, :, :3].astype(np.float32), alpha[:, :, None]


def _texture(rng: np.random.Generator, h: int, w: int, cells: int, amp: float) -> np.ndarray:
    """Smooth low-frequency variation (HxWx1 float32) for walls and floors."""
    small = rng.normal(0.0, amp, (max(2, h // cells), max(2, w // cells))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)[:, :, None]


def _jitter(
    rng: np.random.Generator, colour: tuple[int, int, int], amount: int = 12
) -> tuple[int, int, int]:
    b, g, r = (int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)
    return b, g, r


def _room(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """A living room seen from a wall-mounted camera: wall, window with blinds, door, sofa,
    picture, lamp and a wooden floor. Colours and texture vary with the seed."""
    img = np.zeros((h, w, 3), np.float32)
    floor_y = int(0.70 * h)
    wall = np.array(_jitter(rng, (170, 186, 198)), np.float32)
    img[:floor_y] = wall
    img[:floor_y] += _texture(rng, floor_y, w, 24, 5.0)
    shade = np.linspace(0.88, 1.0, floor_y, dtype=np.float32)[:, None, None]
    img[:floor_y] *= shade
    floor = np.array(_jitter(rng, (62, 92, 128)), np.float32)
    img[floor_y:] = floor
    img[floor_y:] += _texture(rng, h - floor_y, w, 6, 9.0)
    plank = max(6, h // 24)
    for y in range(floor_y + plank, h, plank):
        img[y : y + 1] *= 0.8
    img = np.clip(img, 0, 255).astype(np.uint8)

    def px(fx: float, fy: float) -> tuple[int, int]:
        return int(fx * w), int(fy * h)

    cv2.rectangle(img, px(0, 0.685), px(1, 0.705), (225, 228, 230), -1)  # skirting board
    # window with blinds
    cv2.rectangle(img, px(0.06, 0.10), px(0.30, 0.52), (235, 238, 240), -1)
    x0, y0 = px(0.075, 0.12)
    x1, y1 = px(0.285, 0.50)
    cv2.rectangle(img, (x0, y0), (x1, y1), _jitter(rng, (200, 205, 200)), -1)
    step = max(3, h // 80)
    for y in range(y0, y1, step):
        cv2.line(img, (x0, y), (x1, y), (150, 160, 165), 1)
    # door
    cv2.rectangle(img, px(0.74, 0.16), px(0.90, 0.70), (235, 238, 240), -1)
    cv2.rectangle(img, px(0.755, 0.175), px(0.885, 0.70), _jitter(rng, (60, 90, 120)), -1)
    cv2.circle(img, px(0.77, 0.45), max(2, h // 100), (40, 170, 200), -1)
    # picture frame
    cv2.rectangle(img, px(0.40, 0.14), px(0.58, 0.33), (40, 45, 50), -1)
    pic = rng.integers(40, 220, (4, 6, 3)).astype(np.uint8)
    px0, py0 = px(0.41, 0.155)
    px1, py1 = px(0.57, 0.315)
    img[py0:py1, px0:px1] = cv2.resize(pic, (px1 - px0, py1 - py0), interpolation=cv2.INTER_CUBIC)
    # sofa against the wall
    sofa = _jitter(rng, (110, 60, 40))
    cv2.rectangle(img, px(0.34, 0.46), px(0.70, 0.62), sofa, -1)
    cv2.rectangle(img, px(0.32, 0.55), px(0.72, 0.70), tuple(int(c * 0.85) for c in sofa), -1)
    cv2.rectangle(img, px(0.32, 0.50), px(0.36, 0.70), tuple(int(c * 0.75) for c in sofa), -1)
    cv2.rectangle(img, px(0.68, 0.50), px(0.72, 0.70), tuple(int(c * 0.75) for c in sofa), -1)
    # standing lamp
    cv2.line(img, px(0.34, 0.22), px(0.34, 0.70), (50, 50, 55), max(1, w // 200))
    cv2.rectangle(img, px(0.315, 0.14), px(0.365, 0.22), (170, 220, 240), -1)
    return img

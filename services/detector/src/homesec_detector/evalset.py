"""The labelled evaluation set, generated deterministically from small real assets.

Every clip is built at run time from the photos and footage in the assets folder (the repo's
``tests/assets``; licences beside the files): real people and real cats cut from photos walk
into real street scenes from a frame edge, with light changes during the entry; real traffic
footage; empty scenes whose light changes. Person clips carry the person's box per frame, so
the report can tell when the person became visible to the model.

Grow it by adding entries to :func:`build_clips` (or point ``homesec eval --report`` at a folder
of your own labelled clips, see ``homesec_detector.report``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from homesec_detector.motion import BoxXYWH

Kind = Literal["person", "pet", "traffic", "empty"]
SIZE = (640, 480)
SMALL = (320, 240)
FPS = 10.0
JPEG_QUALITY = 85

SPRITES: dict[str, tuple[str, BoxXYWH]] = {
    # name: (photo, crop in photo pixels) -- boxes around what the photos show
    "man-green": ("coco_fastestdet_2.jpg", (355, 36, 130, 410)),
    "man-striped": ("coco_fastestdet_2.jpg", (243, 40, 112, 370)),
    "batter": ("coco_fastestdet_0.jpg", (300, 200, 165, 255)),
    "frisbee": ("coco_fastestdet_3.jpg", (35, 52, 160, 250)),
    "lunge": ("coco_fastestdet_3.jpg", (268, 140, 226, 170)),
    "cat": ("coco_fastestdet_4.jpg", (255, 80, 385, 344)),
    "cats": ("coco_fastestdet_4.jpg", (0, 60, 640, 364)),
}
CYCLIST_BOX: BoxXYWH = (215, 120, 85, 120)
"""Where the cyclist of traffic_320x240.avi rides (frames 60-200)."""


@dataclass
class Clip:
    """One labelled clip: JPEG frames at ``fps`` and what is in them."""

    name: str
    kind: Kind
    frames: list[bytes]
    fps: float = FPS
    size: tuple[int, int] = SIZE
    person_boxes: list[BoxXYWH | None] = field(default_factory=list)
    """Per frame: the person's visible box (person clips), else None."""
    twin: str | None = None
    """For a light change during the entry: the same clip in the light before the change."""
    lit_twin: str | None = None
    """... and in the light after it (what the change itself costs, darkness aside)."""
    object_boxes: list[BoxXYWH | None] = field(default_factory=list)
    """Per frame: the box of what walks in (a person or a pet), else None."""

    @property
    def person_frames(self) -> list[int]:
        return [i for i, box in enumerate(self.person_boxes) if box is not None]


def _encode(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes()


def _video(
    path: Path, step: float = 1.0, start: int = 0, stop: int | None = None
) -> list[np.ndarray]:
    """Frames of a video, every ``step``-th (fractional steps pick the nearest frame)."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    stop = len(frames) if stop is None else min(stop, len(frames))
    picks = []
    t = float(start)
    while int(round(t)) < stop:
        picks.append(frames[int(round(t))])
        t += step
    return picks


class Assets:
    """Loads (once) the photos and footage the clips are made of."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, np.ndarray] = {}

    def image(self, relative: str) -> np.ndarray:
        """An image of the assets folder (``images/x.jpg``, ``frames/...``), read once."""
        if relative not in self._cache:
            image = cv2.imread(str(self.root / relative), cv2.IMREAD_COLOR)
            if image is None:
                raise FileNotFoundError(self.root / relative)
            self._cache[relative] = image
        return self._cache[relative]

    def photo(self, name: str) -> np.ndarray:
        return self.image(f"images/{name}")

    def sprite(self, name: str) -> np.ndarray:
        photo, (x, y, w, h) = SPRITES[name]
        return self.photo(photo)[y : y + h, x : x + w]

    def backgrounds(self) -> dict[str, np.ndarray]:
        """Static street scenes at SIZE: first frames of the footage."""
        road = _video(self.root / "video" / "road_640x360.avi", stop=1)[0]
        traffic = _video(self.root / "video" / "traffic_320x240.avi", stop=1)[0]
        highway = self.image("frames/bgs_highway/001.jpg")
        scenes = {"road": road, "traffic": traffic, "highway": highway}
        return {k: cv2.resize(v, SIZE, interpolation=cv2.INTER_AREA) for k, v in scenes.items()}


class _Noise:
    """Sensor noise (sigma 2 grey levels): a few fixed patterns, cycled, so clips build fast."""

    def __init__(self, size: tuple[int, int], bank: int, patterns: int = 6) -> None:
        rng = np.random.default_rng((size[0], bank))
        shape = (size[1], size[0], 3)
        self.patterns = [rng.normal(0.0, 2.0, shape).astype(np.int16) for _ in range(patterns)]

    def __call__(self, base: np.ndarray, i: int) -> np.ndarray:
        noisy = base.astype(np.int16) + self.patterns[i % len(self.patterns)]
        out: np.ndarray = np.clip(noisy, 0, 255).astype(np.uint8)
        return out


_NOISE: dict[tuple[int, int, int], _Noise] = {}


def _noise(size: tuple[int, int], seed: int) -> _Noise:
    """The noise patterns of clips with ``seed`` (seeds 1000 apart draw other patterns)."""
    key = (size[0], size[1], seed // 1000)
    if key not in _NOISE:
        _NOISE[key] = _Noise(size, seed // 1000)
    return _NOISE[key]


def _feather(h: int, w: int) -> np.ndarray:
    """Alpha of a pasted photo patch: 1 inside, soft towards its edges (no hard rectangle)."""
    edge = max(2, min(h, w) // 12)
    alpha = np.zeros((h, w), np.float32)
    alpha[edge:-edge, edge:-edge] = 1.0
    k = 2 * edge + 1
    return cv2.GaussianBlur(alpha, (k, k), 0)[:, :, None]


def _paste(
    canvas: np.ndarray, sprite: np.ndarray, alpha: np.ndarray, x: int, y: int
) -> BoxXYWH | None:
    """Blend ``sprite`` onto ``canvas`` with its top-left at (x, y); the visible box."""
    H, W = canvas.shape[:2]
    h, w = sprite.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x1 <= x0 or y1 <= y0:
        return None
    s = sprite[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.float32)
    a = alpha[y0 - y : y1 - y, x0 - x : x1 - x]
    region = canvas[y0:y1, x0:x1].astype(np.float32)
    canvas[y0:y1, x0:x1] = (a * s + (1 - a) * region).astype(np.uint8)
    return (x0, y0, x1 - x0, y1 - y0)


Light = Callable[[int], tuple[float, float]]
"""Frame index (from the entry) → (gain, offset) applied to the whole frame."""


def step_light(at: int, gain: float, offset: float = 0.0) -> Light:
    return lambda i: (gain, offset) if i >= at else (1.0, 0.0)


def ramp_light(at: int, frames: int, gain: float) -> Light:
    def light(i: int) -> tuple[float, float]:
        t = min(max((i - at) / frames, 0.0), 1.0)
        return 1.0 + t * (gain - 1.0), 0.0

    return light


def walk_in(
    name: str,
    background: Callable[[int], np.ndarray],
    sprite: np.ndarray,
    height: float,
    *,
    edge: Literal["left", "right", "bottom"] = "left",
    ground: float = 0.95,
    speed: float = 0.08,
    lead: int = 15,
    tail: int = 15,
    max_frames: int = 60,
    light: Light | None = None,
    kind: Kind = "person",
    seed: int = 0,
    twin: str | None = None,
    lit_twin: str | None = None,
    size: tuple[int, int] = SIZE,
) -> Clip:
    """``sprite`` (scaled to ``height`` x frame height) walks in from ``edge`` at ``speed``
    heights per frame (0.08 at 10 fps: a walking adult), its feet at ``ground`` x frame
    height; ``lead`` empty frames before, ``tail`` after it left or ``max_frames`` passed."""
    W, H = size
    noise = _noise(size, seed)
    sh = max(8, int(round(height * H)))
    sw = max(4, int(round(sprite.shape[1] * sh / sprite.shape[0])))
    scaled = cv2.resize(
        sprite, (sw, sh), interpolation=cv2.INTER_AREA if sh < sprite.shape[0] else cv2.INTER_LINEAR
    )
    if edge == "right":
        scaled = scaled[:, ::-1]
    alpha = _feather(sh, sw)
    step = max(1.0, speed * sh)
    if edge == "bottom":
        walking = min(max_frames, math.ceil((H + sh) / (0.6 * step)))
    else:
        walking = min(max_frames, math.ceil((W + sw) / step))
    frames: list[bytes] = []
    boxes: list[BoxXYWH | None] = []
    for i in range(lead + walking + tail):
        t = i - lead
        canvas = noise(background(i), i + seed)
        box = None
        if 0 <= t < walking:
            bob = int(round(0.01 * sh * math.sin(t * 1.3)))
            if edge == "left":
                x, y = int(-sw + step * (t + 1)), int(ground * H) - sh + bob
            elif edge == "right":
                x, y = int(W - step * (t + 1)), int(ground * H) - sh + bob
            else:
                x, y = (W - sw) // 2 + int(0.3 * step * t), int(H - 0.6 * step * (t + 1))
            box = _paste(canvas, scaled, alpha, x, y)
        if light is not None and t >= 0:
            gain, offset = light(t)
            canvas = cv2.convertScaleAbs(canvas, alpha=gain, beta=offset)
        frames.append(_encode(canvas))
        boxes.append(box)
    people: list[BoxXYWH | None] = boxes if kind == "person" else [None] * len(boxes)
    return Clip(
        name,
        kind,
        frames,
        size=size,
        person_boxes=people,
        twin=twin,
        lit_twin=lit_twin,
        object_boxes=boxes,
    )


def still_scene(name: str, base: np.ndarray, frames: int, light: Light | None, seed: int) -> Clip:
    """An empty static scene whose light may change (after 20 frames)."""
    noise = _noise((base.shape[1], base.shape[0]), seed)
    out = []
    for i in range(frames):
        canvas = noise(base, i + seed)
        if light is not None:
            gain, offset = light(i)
            canvas = cv2.convertScaleAbs(canvas, alpha=gain, beta=offset)
        out.append(_encode(canvas))
    size = (base.shape[1], base.shape[0])
    return Clip(name, "empty", out, size=size, person_boxes=[None] * frames)


def curtains(name: str, base: np.ndarray, *areas: BoxXYWH, frames: int = 80) -> Clip:
    """A still scene in which ``areas`` sway (their content shifts back and forth) from frame
    20 on, like curtains or leaves in the wind."""
    noise = _noise((base.shape[1], base.shape[0]), 0)
    out = []
    for i in range(frames):
        canvas = base.copy()
        if i >= 20:
            shift = int(round(12 * math.sin(i * 0.9)))
            for x, y, w, h in areas:
                patch = base[y : y + h, x : x + w]
                canvas[y : y + h, x : x + w] = np.roll(patch, shift, axis=1)
        out.append(_encode(noise(canvas, i)))
    size = (base.shape[1], base.shape[0])
    return Clip(name, "empty", out, size=size, person_boxes=[None] * frames)


def footage(name: str, images: list[np.ndarray], kind: Kind, fps: float = FPS) -> Clip:
    """Real footage at its own size."""
    frames = [_encode(im) for im in images]
    size = (images[0].shape[1], images[0].shape[0])
    return Clip(name, kind, frames, fps=fps, size=size, person_boxes=[None] * len(frames))


def _static(image: np.ndarray) -> Callable[[int], np.ndarray]:
    return lambda i: image


def _looped(images: list[np.ndarray]) -> Callable[[int], np.ndarray]:
    return lambda i: images[i % len(images)]


def build_clips(assets_dir: Path, seed: int = 0) -> list[Clip]:
    """The evaluation set (about 55 clips of 5-18 s at 10 fps, 640x480 or 320x240); ``seed``
    changes the sensor noise (the outcomes should not depend on it)."""
    a = Assets(assets_dir)
    bg = a.backgrounds()
    road_live = [
        cv2.resize(im, SIZE, interpolation=cv2.INTER_AREA)
        for im in _video(a.root / "video" / "road_640x360.avi", step=3.0)
    ]
    clips: list[Clip] = []

    small = {k: cv2.resize(v, SMALL, interpolation=cv2.INTER_AREA) for k, v in bg.items()}

    def person(name: str, scene: str, sprite: str, height: float, **kw: object) -> Clip:
        if scene == "road-live":
            source = _looped(road_live)
        elif scene.endswith("-320"):
            source, kw["size"] = _static(small[scene[:-4]]), SMALL
        else:
            source = _static(bg[scene])
        kw.setdefault("seed", seed * 1000 + len(clips))
        clip = walk_in(f"person-{name}", source, a.sprite(sprite), height, **kw)  # type: ignore[arg-type]
        clips.append(clip)
        return clip

    # people of every size, entering from every edge
    person("man-green-road-45", "road", "man-green", 0.45)
    person("man-green-highway-25-right", "highway", "man-green", 0.25, edge="right", ground=0.8)
    person("man-striped-traffic-60", "traffic", "man-striped", 0.6, edge="right")
    person("man-striped-road-live-30", "road-live", "man-striped", 0.3, ground=0.85)
    person("batter-highway-40", "highway", "batter", 0.4, ground=0.9)
    person("batter-road-live-20", "road-live", "batter", 0.2, edge="right", ground=0.75)
    person("frisbee-traffic-35", "traffic", "frisbee", 0.35, ground=0.9)
    person("frisbee-road-70-bottom", "road", "frisbee", 0.7, edge="bottom")
    person("lunge-highway-30", "highway", "lunge", 0.3, ground=0.9)
    person("man-green-traffic-15", "traffic", "man-green", 0.15, edge="right", ground=0.7)
    person("man-striped-highway-12", "highway", "man-striped", 0.12, ground=0.65)
    person("batter-road-10", "road", "batter", 0.1, ground=0.6)
    person("frisbee-highway-8-right", "highway", "frisbee", 0.08, edge="right", ground=0.55)
    person("man-green-traffic-320-14", "traffic-320", "man-green", 0.14, ground=0.75)
    person("man-green-traffic-320-40", "traffic-320", "man-green", 0.4, edge="right")
    person("frisbee-road-320-25", "road-320", "frisbee", 0.25, ground=0.85)
    person("batter-highway-320-60", "highway-320", "batter", 0.6, edge="bottom")

    # light changes during the entry (as its first sliver shows, when half of it is in, a
    # ramp), each with two twins: the same entry in the light before and in the light after
    for scene, sprite, height in (("road", "man-green", 0.4), ("highway", "frisbee", 0.35)):
        stem = f"{sprite}-{scene}-{int(height * 100)}"
        twins = seed * 1000 + len(clips)  # twins differ in the light only, not in the noise
        person(f"{stem}-twin", scene, sprite, height, seed=twins)
        for label, gain, offset in (("dim", 0.55, 0.0), ("on", 1.5, 10.0)):
            lit = f"person-{stem}-{label}-twin"
            person(
                f"{stem}-{label}-twin",
                scene,
                sprite,
                height,
                light=step_light(0, gain, offset),
                seed=twins,
            )
            for at in (1, 4):
                person(
                    f"{stem}-{label}-at-{at}",
                    scene,
                    sprite,
                    height,
                    light=step_light(at, gain, offset),
                    twin=f"person-{stem}-twin",
                    lit_twin=lit,
                    seed=twins,
                )
        person(
            f"{stem}-dim-ramp",
            scene,
            sprite,
            height,
            light=ramp_light(0, 6, 0.5),
            twin=f"person-{stem}-twin",
            seed=twins,
        )

    # pets at several sizes (cats walking through, slower than people)
    for i, (sprite, height, scene) in enumerate(
        (
            ("cat", 0.08, "road"),
            ("cat", 0.15, "highway"),
            ("cat", 0.25, "traffic"),
            ("cat", 0.4, "road"),
            ("cats", 0.3, "highway"),
            ("cats", 0.5, "traffic"),
        )
    ):
        clip = walk_in(
            f"pet-{sprite}-{scene}-{int(height * 100)}",
            _static(bg[scene]),
            a.sprite(sprite),
            height,
            edge="left" if i % 2 == 0 else "right",
            speed=0.05,
            kind="pet",
            seed=seed * 1000 + 100 + i,
            ground=0.92,
        )
        clips.append(clip)

    # real footage: a cyclist rides up the hard shoulder (frames 60-200 at 25 fps)
    ride = _video(a.root / "video" / "traffic_320x240.avi", step=2.5, stop=300)
    rider = footage("person-cyclist-traffic-real", ride, "person")
    rider.person_boxes = [CYCLIST_BOX if 24 <= i < 80 else None for i in range(len(ride))]
    rider.object_boxes = rider.person_boxes
    clips.append(rider)

    # a poster of a person between two curtains that move: the poster itself never moves
    poster = bg["highway"].copy()
    _paste(poster, cv2.resize(a.sprite("man-striped"), (70, 230)), _feather(230, 70), 290, 200)
    clips.append(
        curtains("empty-poster-between-curtains", poster, (200, 190, 80, 250), (370, 190, 80, 250))
    )

    # real traffic footage (no person)
    road = _video(a.root / "video" / "road_640x360.avi", step=3.0)
    clips.append(footage("traffic-road", road, "traffic"))
    clips.append(
        footage(
            "traffic-highway-cars",
            _video(a.root / "video" / "traffic_320x240.avi", step=2.5, start=300),
            "traffic",
        )
    )
    highway = sorted((a.root / "frames" / "bgs_highway").glob("*.jpg"))
    frames = [a.image(f"frames/bgs_highway/{p.name}") for p in highway]
    clips.append(footage("traffic-bgs-highway", frames, "traffic"))

    # empty scenes, light changes of the kinds behind the original's false positives
    for j, scene in enumerate(("road", "highway", "traffic")):
        base = small[scene] if scene == "traffic" else bg[scene]
        clips.append(still_scene(f"empty-{scene}", base, 80, None, 200 + j))
        clips.append(still_scene(f"light-dim-{scene}", base, 80, step_light(20, 0.5), 210 + j))
        clips.append(still_scene(f"light-on-{scene}", base, 80, step_light(20, 1.6, 15.0), 220 + j))
        clips.append(
            still_scene(f"light-ramp-{scene}", base, 80, ramp_light(20, 15, 0.45), 230 + j)
        )
    return clips


KINDS: tuple[Kind, ...] = ("person", "pet", "traffic", "empty")


def clips_from_folder(folder: Path, fps: float | None = None) -> list[Clip]:
    """Your own clips: every video, GIF or folder of images in ``folder``, in name order.

    A clip's kind is the start of its name (``person-...``, ``pet-...``, ``traffic-...``,
    ``empty-...``), else ``person`` if its labels say a person is in it, else ``empty``. Labels:
    ``<clip>.csv`` beside it with ``frame,label`` rows (1/0, person/empty; see
    ``homesec eval --labels``); the frames labelled 1 are the person's frames, the whole frame
    stands for the person's box."""
    from homesec_detector.evaluate import IMAGE_EXTENSIONS, open_source, read_labels

    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder of clips")
    clips = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() == ".csv" or path.name.startswith("."):
            continue
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS - {".gif"}:
            continue  # a lone image is no clip
        source = open_source(path, fps)
        frames = list(source.frames)
        if not frames:
            continue
        size = (frames[0][1], frames[0][2])
        labels_path = (
            path.with_suffix(".csv") if path.is_file() else path.parent / f"{path.name}.csv"
        )
        labels = read_labels(labels_path) if labels_path.is_file() else {}
        boxes: list[BoxXYWH | None] = [
            (0, 0, size[0], size[1]) if labels.get(i) else None for i in range(len(frames))
        ]
        prefix = path.stem.split("-", 1)[0]
        kind: Kind = prefix if prefix in KINDS else ("person" if any(boxes) else "empty")
        clips.append(
            Clip(
                path.stem,
                kind,
                [data for data, _, _ in frames],
                fps=source.fps,
                size=size,
                person_boxes=boxes if kind == "person" else [None] * len(frames),
                object_boxes=boxes,
            )
        )
    return clips

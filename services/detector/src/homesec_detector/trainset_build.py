"""Write events into a training set in the uploader's layout (tests, the bench, demos).

:func:`write_event` lays out one labelled event as the uploader stores it; :func:`clip_set`
makes a small training set from the evaluation clips (:mod:`homesec_detector.evalset`: real
people and real footage, at 320x240), with some person clips labelled *unoccupied* on purpose:
the owner's "false alerts" that ``homesec tune`` should learn to drop.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2

from homesec.media import EVENT_META, FRAMES_DIR, PREROLL_DIR, frame_name
from homesec_detector import evalset
from homesec_detector.trainset import LABEL_DOC

DAY = "2026-11-25"
STARTED_AT = 1764106200.0
PREROLL = 10


def write_event(
    root: Path,
    *,
    camera: str,
    event_id: str,
    label: str,
    frames: list[bytes],
    preroll: int = PREROLL,
    source: str = "slack",
    fps: float | None = None,
) -> Path:
    """One event folder: the first ``preroll`` frames as pre-roll, the rest as the event's."""
    folder = root / label / camera / DAY / event_id
    for sub in (PREROLL_DIR, FRAMES_DIR):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(frames):
        sub, index = (PREROLL_DIR, i) if i < preroll else (FRAMES_DIR, i - preroll)
        (folder / sub / frame_name(index)).write_bytes(data)
    meta = {
        "type": "sample" if source == "missed" else "end",
        "event_id": event_id,
        "camera": camera,
        "started_at": STARTED_AT,
        "ended_at": STARTED_AT + 10,
        "detector": {"preroll_frames": min(preroll, len(frames))} | ({"fps": fps} if fps else {}),
    }
    (folder / EVENT_META).write_text(json.dumps(meta))
    doc = {
        "label": {
            "event_id": event_id,
            "camera": camera,
            "label": label,
            "labelled_by": "slack:U0OWNER",
            "labelled_at": STARTED_AT + 60,
            "source": source,
        },
        "date": DAY,
    }
    (folder / LABEL_DOC).write_text(json.dumps(doc))
    return folder


def clip_set(assets: Path) -> list[tuple[evalset.Clip, str]]:
    """(clip, label): three people who are there, a small far-away figure the owner labelled
    *unoccupied* (say, a neighbour on the pavement), and a light ramp in an empty scene."""
    a = evalset.Assets(assets)
    backgrounds = {
        name: cv2.resize(image, evalset.SMALL, interpolation=cv2.INTER_AREA)
        for name, image in a.backgrounds().items()
    }

    def person(name: str, scene: str, sprite: str, height: float, **kw: object) -> evalset.Clip:
        return evalset.walk_in(
            f"person-{name}",
            lambda i, bg=backgrounds[scene]: bg,
            a.sprite(sprite),
            height,
            size=evalset.SMALL,
            max_frames=40,
            **kw,  # type: ignore[arg-type]
        )

    light = evalset.still_scene(
        "light-ramp-traffic", backgrounds["traffic"], 60, evalset.ramp_light(20, 15, 0.45), 3
    )
    return [
        (
            person("man-green-traffic-40", "traffic", "man-green", 0.4, edge="right", seed=1),
            "occupied",
        ),
        (person("batter-highway-60", "highway", "batter", 0.6, edge="bottom", seed=2), "occupied"),
        (person("frisbee-road-25", "road", "frisbee", 0.25, ground=0.85, seed=3), "occupied"),
        (
            person("man-green-traffic-14", "traffic", "man-green", 0.14, ground=0.75, seed=4),
            "unoccupied",
        ),
        (light, "unoccupied"),
    ]


def write_clip_set(assets: Path, root: Path, camera: str = "front") -> list[str]:
    """Write :func:`clip_set` under ``root``; returns the event keys (label/camera/day/id)."""
    keys = []
    for clip, label in clip_set(assets):
        event_id = f"{camera}-{clip.name}"[:64]
        write_event(root, camera=camera, event_id=event_id, label=label, frames=clip.frames)
        keys.append(f"{label}/{camera}/{DAY}/{event_id}")
    return keys


OWNER_FALSE_ALERTS = ("person-man-green-traffic-320-14", "person-frisbee-highway-8-right")
"""Evaluation clips of far-away figures the owner of :func:`write_eval_set` calls *unoccupied*
(a neighbour on the pavement): the false alerts a tune may remove."""


def write_eval_set(assets: Path, root: Path, seeds: int, camera: str = "front") -> list[str]:
    """A training set of ``seeds`` x the evaluation set (:func:`evalset.build_clips`, each seed
    another draw of the sensor noise): person clips labelled occupied but for
    :data:`OWNER_FALSE_ALERTS`, every other clip unoccupied. Deterministic; returns the keys."""
    keys = []
    for seed in range(seeds):
        for clip in evalset.build_clips(assets, seed=seed):
            occupied = clip.kind == "person" and clip.name not in OWNER_FALSE_ALERTS
            label = "occupied" if occupied else "unoccupied"
            event_id = f"{camera}-s{seed}-{clip.name}"[:64]
            write_event(root, camera=camera, event_id=event_id, label=label, frames=clip.frames)
            keys.append(f"{label}/{camera}/{DAY}/{event_id}")
    return keys

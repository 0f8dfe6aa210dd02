"""Earlier confirmation: the person check runs on the first motion and on light changes, and a
confirmed person starts an alerting event without waiting for the occupancy window."""

from __future__ import annotations

from pathlib import Path

from homesec_detector.evalset import Assets, Light, _static, step_light, walk_in
from homesec_detector.evaluate import Evaluation
from homesec_detector.settings import DetectorSettings

ASSETS = Path(__file__).resolve().parents[1] / "assets"
LEAD = 15
"""Empty frames before the person enters (walk_in's default)."""


def entry(light: Light | None = None) -> list[bytes]:
    a = Assets(ASSETS)
    scene = _static(a.backgrounds()["road"])
    return walk_in("x", scene, a.sprite("man-green"), 0.4, light=light, seed=7).frames


def test_a_confirmed_person_starts_an_alerting_event_before_the_window_fills() -> None:
    ev = Evaluation(DetectorSettings(metrics_port=0))
    occupied = 0
    for i, data in enumerate(entry()):
        out = ev.feed(i, data, 640, 480, 10)
        occupied += out["motion"]
        if out["alert"]:
            break
    else:
        raise AssertionError("no alert")
    window = ev.settings.events
    assert occupied < window.min_occupied_fraction * window.window_frames  # window not full
    (event,) = ev.events.values()
    assert event["start_frame"] == event["alert_frame"] == i <= LEAD + 8
    assert event["reason"].startswith("armed, person confirmed")


def test_the_frame_whose_light_changed_is_checked_for_a_person() -> None:
    ev = Evaluation(DetectorSettings(metrics_port=0))
    changed = LEAD + 2  # the light dims two frames into the entry
    checks_before = 0
    for i, data in enumerate(entry(step_light(2, 0.55))[: changed + 1]):
        checks_before = ev.person_checks
        ev.feed(i, data, 640, 480, 10)
    assert ev.pipeline.motion.background_resets == 1  # the guard re-learnt the background ...
    assert ev.person_checks > checks_before  # ... and the changed frame was checked anyway
    last = ev.pipeline.evidence
    assert last.checks >= 2

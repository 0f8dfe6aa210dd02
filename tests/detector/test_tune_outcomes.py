"""Whole-event outcomes kept between ``homesec tune`` runs (``tune_outcomes``).

On the clip training set: outcomes read back decide exactly as a replay without any cache
(early stops included), in one process and over two workers; a second run replays nothing; the
key changes with every input an outcome depends on (the settings a replay reads, the frames, the
code and model) and with none it does not (the broker, the data dir, the label).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tune_support import FRAMES, SAME, tune_in

from homesec.settings import BrokerSettings
from homesec_detector import tune_identity
from homesec_detector.settings import DetectorSettings
from homesec_detector.trainset import TrainingEvent, load_events
from homesec_detector.tune_identity import replay_identity, settings_key
from homesec_detector.tune_outcomes import EventOutcomes
from homesec_detector.tune_replay import Bound, EventOutcome, Replayer, Stopped
from homesec_detector.tune_search import Knob, knob_values, replay_order, with_knob


def _outcomes(folder: Path, settings: DetectorSettings | None = None) -> EventOutcomes:
    return EventOutcomes(
        folder / "outcomes.sqlite",
        replay_identity(settings or DetectorSettings()),
        fps=10.0,
        max_frames=FRAMES,
        check_ms=20.0,
    )


def test_outcomes_read_back_decide_as_an_uncached_replay_stops_included(
    events: list[TrainingEvent], tmp_path: Path
) -> None:
    base = DetectorSettings()
    plain = Replayer(base, 10.0, max_frames=FRAMES, check_ms=20.0)
    baseline = plain.outcomes(events, base, cached=False)
    assert isinstance(baseline, list)
    must_alert = frozenset(o.key for o in baseline if o.alert and o.occupied)
    order = replay_order(baseline, {})
    bounds = [Bound(), Bound(must_alert, (0, -len(must_alert)), order), Bound(must_alert)]
    deaf = with_knob(base, Knob("evidence", "min_score", 0.99))  # loses every occupied event
    candidates = [base, deaf, *(with_knob(base, k) for k in knob_values(base)[::4])]
    expected: list[list[EventOutcome] | Stopped] = [
        plain.outcomes(events, s, cached=False, bound=b) for s in candidates for b in bounds
    ]
    assert any(isinstance(r, Stopped) for r in expected)

    results = []
    for run in range(2):  # the first fills the file, the second (a new run) reads it back
        store = _outcomes(tmp_path)
        replayer = Replayer(base, 10.0, max_frames=FRAMES, check_ms=20.0, outcome_store=store)
        got = [replayer.outcomes(events, s, bound=b) for s in candidates for b in bounds]
        assert got == expected, run
        results.append((replayer.replays, replayer.model_checks, store.hits))
        store.close()
    (replays, checks, hits), (replays_again, checks_again, hits_again) = results
    assert replays_again == replays and checks > 0 and hits == 0
    assert checks_again == 0 and hits_again > 0  # read back: no model run


def test_a_second_run_replays_nothing_in_one_process_or_over_workers(
    events: list[TrainingEvent], tmp_path: Path
) -> None:
    first = tune_in(events, tmp_path / "one", jobs=1)
    assert first["outcomes_from_disk"] == 0 and first["model_checks"] > 0
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    for folder, jobs in ((tmp_path / "one", 1), (tmp_path / "two", 2)):
        again = tune_in(events, folder, jobs)
        assert {k: again[k] for k in SAME} == {k: first[k] for k in SAME}, jobs
        assert again["outcomes_from_disk"] == again["replays"], jobs
        assert again["model_runs"] == 0 and again["speculative_replays"] == 0, jobs
    # a run over two workers leaves outcomes one process reads back
    fresh = tmp_path / "three"
    by_two = tune_in(events, fresh, jobs=2)
    assert {k: by_two[k] for k in SAME} == {k: first[k] for k in SAME}
    assert by_two["outcomes_from_disk"] == 0
    again = tune_in(events, fresh, jobs=1)
    assert again["outcomes_from_disk"] == again["replays"] and again["model_checks"] == 0


def test_the_key_follows_every_input_of_an_outcome_and_nothing_else(
    training_set: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "set"
    shutil.copytree(training_set, root)
    events, _ = load_events(root)
    event = events[0]
    paths = event.frame_paths(FRAMES)
    base = DetectorSettings()
    store = _outcomes(tmp_path)
    digest = store.event_digest(event, paths)
    key = store.key(event, settings_key(base), digest)

    # not read by a replay: the broker, the data dir, the nightly schedule
    other_host = base.model_copy(
        update={"broker": BrokerSettings(host="elsewhere", port=1884), "data_dir": tmp_path}
    )
    assert settings_key(other_host) == settings_key(base)
    # read by a replay: any searched setting
    for knob in knob_values(base)[:6]:
        assert store.key(event, settings_key(with_knob(base, knob)), digest) != key, knob
    # the replay's own parameters, the code and the model
    other = EventOutcomes(
        tmp_path / "x.sqlite", store.identity, fps=5.0, max_frames=FRAMES, check_ms=20.0
    )
    assert other.key(event, settings_key(base), digest) != key
    lower = base.model_copy(update={"person_report_threshold": 0.1})  # the model's own floor
    assert replay_identity(lower) != replay_identity(base)
    real = tune_identity.code_sources  # a module of the code changed (here: one more)
    monkeypatch.setattr(
        tune_identity, "code_sources", lambda entry: [*real(entry), ("new", b"x = 1")]
    )
    assert replay_identity(base) != store.identity
    monkeypatch.undo()

    outcome = EventOutcome(event.key, event.occupied, True, True, ((0.1, 0.2, 0.3, 0.4),))
    store.put(key, outcome)
    assert store.get(key, event) == outcome
    store.close()

    # a relabelled event (moved to the other label's folder) keeps its outcome, counted under
    # its new label; its files are not hashed again when unchanged
    label = "unoccupied" if event.occupied else "occupied"
    moved_key = event.key.replace(event.key.split("/")[0], label, 1)
    (root / moved_key).parent.mkdir(parents=True, exist_ok=True)
    os.rename(root / event.key, root / moved_key)
    (root / moved_key / "label.json").write_text(
        (root / moved_key / "label.json").read_text().replace(event.label.value, label)
    )
    moved = next(e for e in load_events(root)[0] if e.key == moved_key)
    store = _outcomes(tmp_path)
    moved_paths = moved.frame_paths(FRAMES)
    assert store.known_digest(moved_paths) is None  # new paths: hashed again, same bytes
    assert store.event_digest(moved, moved_paths) == digest
    back = store.get(store.key(moved, settings_key(base), digest), moved)
    assert back is not None and back.key == moved_key and back.occupied == moved.occupied
    assert (back.motion, back.alert, back.boxes) == (True, True, ((0.1, 0.2, 0.3, 0.4),))
    store.close()

    # a frame rewritten: its fingerprint changes, the bytes are hashed again, another key
    store = _outcomes(tmp_path)
    assert store.known_digest(moved_paths) == digest  # unchanged since: from the fingerprint
    data = moved_paths[-1].read_bytes()
    moved_paths[-1].write_bytes(data[:-2] + b"\x00" + data[-2:])
    assert store.known_digest(moved_paths) is None
    assert store.event_digest(moved, moved_paths) != digest
    store.close()


def test_the_code_identity_covers_what_a_replay_imports_and_not_the_service() -> None:
    """Every module the replay can run (followed through imports in both packages, functions
    included) is hashed; the service, the bus, the CLI and the search are not, so an upgrade
    that only touches them keeps the kept outcomes."""
    names = {name for name, _ in tune_identity.code_sources()}
    for module in (
        "homesec_detector.tune_replay",
        "homesec_detector.pipeline",
        "homesec_detector.motion",
        "homesec_detector.person",
        "homesec_detector.person_verify",
        "homesec_detector.evidence",
        "homesec_detector.settings",
        "homesec_detector.tune_frames",
        "homesec.settings",
        "homesec.contract",
        "homesec",  # a package's __init__
    ):
        assert module in names, module
    for module in (
        "homesec_detector.service",
        "homesec.bus",
        "homesec.cli",
        "homesec_detector.tune",
    ):
        assert module not in names, module
    # every module the replay really loaded is covered (a fresh interpreter: nothing else ran)
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, homesec_detector.tune_replay as r; r.Replayer; "
            "print(' '.join(m for m in sys.modules if m.split('.')[0] in "
            "('homesec', 'homesec_detector')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert set(loaded) <= names, set(loaded) - names


def test_the_answers_and_tracks_are_keyed_by_the_code_that_computes_them() -> None:
    """A kept model answer depends on the person check's code (decode, relight, both models,
    their decoders), a kept motion track on the motion code: each identity hashes that closure
    and moves when any of its modules changes, and not with the code the other one runs."""
    answers = {name for name, _ in tune_identity.code_sources(tune_identity.ANSWER_ENTRY)}
    assert {
        "homesec_detector.person",
        "homesec_detector.person_decoders",
        "homesec_detector.person_verify",
    } <= answers
    assert "homesec_detector.motion" not in answers
    assert "homesec_detector.pipeline" not in answers
    tracks = {name for name, _ in tune_identity.code_sources(tune_identity.MOTION_ENTRY)}
    assert "homesec_detector.motion" in tracks
    assert "homesec_detector.person" not in tracks

    settings = DetectorSettings()
    model, motion = tune_identity.model_identity(settings), tune_identity.motion_identity()
    real = tune_identity.code_sources

    def person_changed(entry: str) -> list[tuple[str, bytes]]:
        return [
            (name, source + b"\n# changed" if name == "homesec_detector.person" else source)
            for name, source in real(entry)
        ]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tune_identity, "code_sources", person_changed)
        assert tune_identity.model_identity(settings) != model
        assert tune_identity.motion_identity() == motion
    # each part of the model's own inputs moves it too
    assert (
        tune_identity.model_identity(
            settings.model_copy(
                update={"person": settings.person.model_copy(update={"input_size": 320})}
            )
        )
        != model
    )

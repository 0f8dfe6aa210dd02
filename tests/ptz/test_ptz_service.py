"""The ptz service on a real Mosquitto: commands in, simulated head moved, state out."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from homesec.bus import Bus
from homesec.contract import PTZ_COMMAND, PTZ_STATE, PtzCommand, PtzState
from homesec.settings import BrokerSettings
from homesec_ptz.backends import SimulatedBackend
from homesec_ptz.controller import PtzController
from homesec_ptz.settings import PtzSettings
from support import (
    Collector,
    ServiceProcess,
    ServiceThread,
    assert_module_exits_2_naming,
    wait_until,
)

RunningPtz = ServiceThread[PtzController]
StartPtz = Callable[..., RunningPtz]


@pytest.fixture
def start_ptz(
    make_bus: Callable[..., Bus], broker_settings: BrokerSettings, tmp_path: Path
) -> Iterator[StartPtz]:
    running: list[RunningPtz] = []

    def start(**overrides: Any) -> RunningPtz:
        values: dict[str, Any] = {
            "broker": broker_settings,
            "metrics_port": 0,
            "data_dir": tmp_path,
            "restore_wait_seconds": 0.5,
        }
        values.update(overrides)
        settings = PtzSettings(**values)
        bus = make_bus("ptz", start=False)
        handle = ServiceThread(PtzController(bus, settings, bus.metrics), bus)
        running.append(handle)
        return handle

    yield start
    for handle in running:
        handle.stop()


@pytest.fixture
def states(make_bus: Callable[..., Bus]) -> tuple[Bus, Collector[PtzState]]:
    client = make_bus("client", start=False)
    collector: Collector[PtzState] = Collector()
    client.subscribe(PTZ_STATE, collector, camera="front")
    client.start()
    assert client.wait_connected(10)
    return client, collector


def latest(collector: Collector[PtzState], request_id: str) -> PtzState | None:
    for state in reversed(collector.payloads):
        if state.last_request_id == request_id and not state.moving:
            return state
    return None


def send(client: Bus, request_id: str, **form: Any) -> None:
    client.publish(PTZ_COMMAND, PtzCommand(request_id=request_id, **form), camera="front")


def test_rotate_30_20_moves_the_simulated_head(
    start_ptz: StartPtz, states: tuple[Bus, Collector[PtzState]]
) -> None:
    client, collector = states
    ptz = start_ptz()
    first = collector.wait_for(1)[0]
    assert (first.pan, first.tilt) == (40.0, 10.0)  # home, nothing to restore
    assert first.backend == "simulated"

    send(client, "r1", pan=30, tilt=20)
    state = wait_until(lambda: latest(collector, "r1"), 15)
    assert (state.pan, state.tilt, state.target_pan, state.target_tilt) == (30, 20, 30, 20)
    assert state.error is None
    assert ptz.service.backend.position() == (30.0, 20.0)
    assert ptz.metric("homesec_ptz_commands_total", camera="front", outcome="applied") == 1
    assert ptz.metric("homesec_ptz_pan_degrees", camera="front") == 30
    assert ptz.metric("homesec_ptz_tilt_degrees", camera="front") == 20


def test_clamping_relative_and_home(
    start_ptz: StartPtz, states: tuple[Bus, Collector[PtzState]]
) -> None:
    client, collector = states
    ptz = start_ptz()
    collector.wait_for(1)
    send(client, "c1", pan=150, tilt=-100)
    state = wait_until(lambda: latest(collector, "c1"), 15)
    assert (state.pan, state.tilt) == (90, -90)
    assert state.error is not None and "clamped" in state.error
    assert ptz.metric("homesec_ptz_commands_total", camera="front", outcome="clamped") == 1

    send(client, "c2", pan_by=-25)
    state = wait_until(lambda: latest(collector, "c2"), 15)
    assert (state.pan, state.tilt) == (65, -90) and state.error is None
    send(client, "c3", tilt_by=5)
    state = wait_until(lambda: latest(collector, "c3"), 15)
    assert (state.pan, state.tilt) == (65, -85)

    send(client, "c4", home=True)
    state = wait_until(lambda: latest(collector, "c4"), 15)
    assert (state.pan, state.tilt) == (40, 10)


def test_bad_commands_are_counted_and_the_service_lives_on(
    start_ptz: StartPtz, states: tuple[Bus, Collector[PtzState]]
) -> None:
    client, collector = states
    ptz = start_ptz()
    collector.wait_for(1)
    topic = client.topic(PTZ_COMMAND, camera="front")
    for raw in (b"{not json", b'{"pan": 1, "pan_by": 2}', b'{"pan": "left"}', b'{"zoom": 3}'):
        client.publish_raw(topic, raw)
    wait_until(
        lambda: ptz.metric("homesec_mqtt_invalid_messages_total", topic_class="ptz_command") == 4,
        15,
    )
    send(client, "ok", pan=-10, tilt=0)
    state = wait_until(lambda: latest(collector, "ok"), 15)
    assert (state.pan, state.tilt) == (-10, 0)

    send(client, "nope", preset="garage")
    state = wait_until(lambda: latest(collector, "nope"), 15)
    assert state.error is not None and "garage" in state.error
    assert (state.pan, state.tilt) == (-10, 0)  # unknown preset: the head stays put
    assert ptz.metric("homesec_ptz_commands_total", camera="front", outcome="rejected") == 1


def test_presets_saved_recalled_and_kept_across_restart(
    start_ptz: StartPtz, states: tuple[Bus, Collector[PtzState]], tmp_path: Path
) -> None:
    client, collector = states
    ptz = start_ptz(presets={"yard": [-45, 0]})
    collector.wait_for(1)
    send(client, "m1", pan=-20, tilt=15)
    wait_until(lambda: latest(collector, "m1"), 15)
    send(client, "s1", save_preset="door")
    state = wait_until(lambda: latest(collector, "s1"), 15)
    assert state.presets == ["door", "yard"]
    send(client, "y1", preset="yard")
    state = wait_until(lambda: latest(collector, "y1"), 15)
    assert (state.pan, state.tilt) == (-45, 0)
    assert (tmp_path / "ptz" / "front" / "presets.json").is_file()
    ptz.stop()

    ptz2 = start_ptz(presets={"yard": [-45, 0]})
    # restored from the retained state: where the head was, with the last request id
    wait_until(lambda: ptz2.service.backend.position() == (-45.0, 0.0), 15)
    send(client, "d2", preset="door")
    state = wait_until(lambda: latest(collector, "d2"), 15)
    assert (state.pan, state.tilt) == (-20, 15)
    assert state.presets == ["door", "yard"]


def test_restart_without_retained_state_restores_from_file(
    start_ptz: StartPtz, states: tuple[Bus, Collector[PtzState]]
) -> None:
    client, collector = states
    ptz = start_ptz()
    collector.wait_for(1)
    send(client, "m1", pan=12, tilt=-7)
    wait_until(lambda: latest(collector, "m1"), 15)
    ptz.stop()
    client.clear_retained(PTZ_STATE, camera="front")
    collector.items.clear()
    ptz2 = start_ptz()
    state = collector.wait_for(1)[0]
    assert (state.pan, state.tilt) == (12, -7)
    assert ptz2.service.backend.position() == (12.0, -7.0)


def test_smooth_move_publishes_progress(
    start_ptz: StartPtz, states: tuple[Bus, Collector[PtzState]]
) -> None:
    client, collector = states
    start_ptz(step_degrees_per_second=40, state_interval_seconds=0.05)
    collector.wait_for(1)
    send(client, "s1", pan=-40, tilt=10)  # 80 degrees of pan at 40 deg/s
    state = wait_until(lambda: latest(collector, "s1"), 20)
    assert (state.pan, state.tilt) == (-40, 10)
    during = [s for s in collector.payloads if s.last_request_id == "s1" and s.moving]
    assert during, "no state published while moving"
    assert all(-40 < s.pan < 40 for s in during[1:])
    assert all(s.target_pan == -40 for s in during)


def test_simulated_slew_is_reported_as_moving(
    start_ptz: StartPtz, states: tuple[Bus, Collector[PtzState]]
) -> None:
    client, collector = states
    ptz = start_ptz(simulated_slew_degrees_per_second=60, state_interval_seconds=0.05)
    assert isinstance(ptz.service.backend, SimulatedBackend)
    collector.wait_for(1)
    send(client, "w1", pan=-20, tilt=10)
    state = wait_until(lambda: latest(collector, "w1"), 20)
    assert state.pan == -20
    assert any(s.moving for s in collector.payloads if s.last_request_id == "w1")


def test_python_m_homesec_ptz_runs(
    broker_settings: BrokerSettings,
    states: tuple[Bus, Collector[PtzState]],
    tmp_path: Path,
) -> None:
    client, collector = states
    with ServiceProcess(
        "ptz", broker_settings, tmp_path, HOMESEC_PTZ_RESTORE_WAIT_SECONDS="0.2"
    ) as ptz:
        collector.wait_for(1, timeout=20)
        send(client, "sub1", pan=30, tilt=20)
        state = wait_until(lambda: latest(collector, "sub1"), 20)
        assert (state.pan, state.tilt) == (30, 20)
        ptz.stop()


def test_bad_setting_exits_2(tmp_path: Path) -> None:
    assert_module_exits_2_naming(
        "homesec_ptz", tmp_path, HOMESEC_PTZ_STEP_DEGREES_PER_SECOND="fast"
    )


class BrokenI2C(SimulatedBackend):
    """The HAT's I2C bus failing (the only way to produce that here): moves raise OSError."""

    broken = True

    def move(self, pan: float, tilt: float) -> None:
        if self.broken:
            raise OSError(121, "Remote I/O error")
        super().move(pan, tilt)


def test_backend_failure_is_reported_and_not_fatal(
    make_bus: Callable[..., Bus],
    broker_settings: BrokerSettings,
    states: tuple[Bus, Collector[PtzState]],
    tmp_path: Path,
) -> None:
    client, collector = states
    settings = PtzSettings(
        broker=broker_settings, metrics_port=0, data_dir=tmp_path, restore_wait_seconds=0.2
    )
    bus = make_bus("ptz", start=False)
    backend = BrokenI2C(0, 0)
    ptz = ServiceThread(PtzController(bus, settings, bus.metrics, backend=backend), bus)
    try:
        first = collector.wait_for(1)[0]
        assert first.error is not None and "Remote I/O error" in first.error
        assert bus.status.state == "degraded"
        backend.broken = False
        send(client, "after", pan=5, tilt=5)
        state = wait_until(lambda: latest(collector, "after"), 15)
        assert (state.pan, state.tilt) == (5, 5) and state.error is None
        assert bus.status.state == "ok"
    finally:
        ptz.stop()

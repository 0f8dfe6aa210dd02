"""Command and interaction handlers, shared by the HTTP endpoint and Socket Mode.

Each handler returns the immediate answer (Slack wants one within 3 s) after doing only
non-blocking work: publishing on the bus (paho queues QoS 1 while the broker is away) and
reading mirrors. Slow work — a fresh snapshot, waiting for the camera head — runs on a worker
pool and answers through the command's ``response_url``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from slack_sdk import WebClient

from homesec.bus import Bus
from homesec.confirm import (
    AlarmResults,
    Check,
    Confirmer,
    Ended,
    Outcome,
    alarm_check,
    setting_check,
)
from homesec.contract import (
    ALARM_SERVICE_SET,
    MISSED_ALERT,
    PTZ_COMMAND,
    SERVICES,
    SNAPSHOT_REQUEST,
    SYSTEM_SET,
    AlarmAction,
    AlarmCommand,
    AlarmState,
    AlarmStatus,
    Label,
    MissedAlert,
    PtzCommand,
    SetCommand,
    SnapshotRequest,
    SystemSetting,
    TrainingLabel,
)
from homesec.pins import PinKind, Pins
from homesec.state import SystemStateView
from homesec_slack_gateway.access import Access
from homesec_slack_gateway.alerts import format_time
from homesec_slack_gateway.buttons import (
    LABEL_BY_ACTION,
    BadButtonValue,
    answered_blocks,
    decode_value,
)
from homesec_slack_gateway.commands import USAGE, Action, Parsed, UsageError, parse
from homesec_slack_gateway.followups import FollowUps
from homesec_slack_gateway.interactions import BlockActions, SlashCommand
from homesec_slack_gateway.labels import LabelOutbox
from homesec_slack_gateway.metrics import GatewayMetrics
from homesec_slack_gateway.mirror import Mirror
from homesec_slack_gateway.settings import SlackGatewaySettings
from homesec_slack_gateway.slack_api import describe_error, webhook
from homesec_slack_gateway.store import Store

log = logging.getLogger("homesec.slack_gateway.handlers")

SWITCHES: dict[Action, tuple[SystemSetting, bool, str]] = {
    Action.ARM: (SystemSetting.ARMED, True, ":lock: Arming"),
    Action.DISARM: (SystemSetting.ARMED, False, ":unlock: Disarming"),
    Action.UNMUTE: (SystemSetting.NOTIFICATIONS, True, ":bell: Notifications on"),
    Action.MUTE: (SystemSetting.NOTIFICATIONS, False, ":no_bell: Notifications off"),
    Action.AUTO_ON: (SystemSetting.AUTO_ARM, True, ":house: Presence auto-arming on"),
    Action.AUTO_OFF: (SystemSetting.AUTO_ARM, False, ":house: Presence auto-arming off"),
    Action.TRAIN_ON: (SystemSetting.TRAINING, True, ":mortar_board: Training buttons on"),
    Action.TRAIN_OFF: (SystemSetting.TRAINING, False, ":mortar_board: Training buttons off"),
}

ALARM_COMMANDS: dict[Action, tuple[AlarmAction, str]] = {
    Action.ARM_AWAY: (AlarmAction.ARM_AWAY, ":lock: Arming *away*"),
    Action.ARM_HOME: (AlarmAction.ARM_HOME, ":lock: Arming *home*"),
    Action.ARM_NIGHT: (AlarmAction.ARM_NIGHT, ":crescent_moon: Arming *night*"),
    Action.ACK: (AlarmAction.ACK, ":ok_hand: Acknowledging the alarm"),
}
"""Alarm commands beyond the legacy arm/disarm switch, sent on ``alarm/service/set``."""

ALARM_WORDS: dict[AlarmState, str] = {
    AlarmState.DISARMED: ":unlock: disarmed",
    AlarmState.ARMING: ":hourglass_flowing_sand: arming",
    AlarmState.ARMED_AWAY: ":lock: armed away",
    AlarmState.ARMED_HOME: ":lock: armed home",
    AlarmState.ARMED_NIGHT: ":crescent_moon: armed night",
    AlarmState.PENDING: ":hourglass: PENDING",
    AlarmState.TRIGGERED: ":rotating_light: TRIGGERED",
}

THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")


class InteractionError(ValueError):
    """An interaction payload the gateway refuses (HTTP 400 with this reason)."""


def ephemeral(text: str) -> dict[str, Any]:
    return {"response_type": "ephemeral", "text": text}


def in_channel(text: str) -> dict[str, Any]:
    return {"response_type": "in_channel", "text": text}


def _on_off(value: bool) -> str:
    return "ON" if value else "OFF"


class Gateway:
    """The gateway's behaviour, independent of how Slack reaches it."""

    def __init__(
        self,
        bus: Bus,
        settings: SlackGatewaySettings,
        metrics: GatewayMetrics,
        store: Store,
        mirror: Mirror,
        state: SystemStateView,
        labels: LabelOutbox,
        bot: WebClient | None,
        report: Callable[[], str] | None = None,
    ) -> None:
        self.bus = bus
        self.settings = settings
        self.metrics = metrics
        self.store = store
        self.mirror = mirror
        self.state = state
        self.labels = labels
        self.pins = Pins(settings.pins_dir, on_error=metrics.pin_errors.inc)
        self.bot = bot
        self.report = report
        self.camera = settings.default_camera
        self.access = Access(settings.allowed_users, settings.admin_users)
        self.access.log_policy()
        self.workers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="slack-work")
        self.followups = FollowUps(self._post_response, bot)
        self.results = AlarmResults(bus)
        self.confirmer = Confirmer(
            late_seconds=settings.command_late_seconds,
            give_up_seconds=settings.command_give_up_seconds,
            ready=lambda: bus.connected,
            owner=mirror.detector,
            registry=metrics.registry,
        )

    def start(self) -> None:
        self.confirmer.start()

    def close(self) -> None:
        self.confirmer.stop()
        self.workers.shutdown(wait=False, cancel_futures=True)

    # ---- slash commands ----------------------------------------------------------------------

    def handle_command(self, form: Mapping[str, Any]) -> dict[str, Any]:
        """Answer a slash command (form fields as Slack sends them) within Slack's 3 s."""
        try:
            cmd = SlashCommand.model_validate(dict(form))
        except ValidationError:
            self.metrics.commands.labels("invalid", "error").inc()
            return ephemeral("This request is not a slash command I understand.\n" + USAGE)
        try:
            parsed = parse(cmd.command, cmd.text)
        except UsageError as exc:
            self.metrics.commands.labels("unknown", "usage").inc()
            return ephemeral(f"{exc}\n\n{USAGE}")
        name = parsed.action.value
        refusal = self.access.command_refusal(cmd.user_id, parsed.action)
        if refusal is not None:
            self.metrics.commands.labels(name, "denied").inc()
            log.warning("command denied", extra={"user": cmd.user_id, "command": name})
            return ephemeral(refusal)
        try:
            reply = self._dispatch(parsed, cmd)
        except Exception:
            self.metrics.commands.labels(name, "error").inc()
            log.exception("command failed", extra={"command": name})
            return ephemeral(f"`{name}` failed inside the gateway; see its logs.")
        self.metrics.commands.labels(name, "ok").inc()
        log.info("command", extra={"user": cmd.user_id, "command": name, "outcome": "ok"})
        return reply

    def _dispatch(self, parsed: Parsed, cmd: SlashCommand) -> dict[str, Any]:
        action = parsed.action
        source = f"slack:{cmd.user_id}"
        if action in SWITCHES:
            setting, value, title = SWITCHES[action]
            return in_channel(
                f"{title} (requested by <@{cmd.user_id}>)" + self._set(setting, value, cmd)
            )
        if action in ALARM_COMMANDS:
            alarm_action, title = ALARM_COMMANDS[action]
            return in_channel(
                f"{title} (requested by <@{cmd.user_id}>)" + self._alarm(alarm_action, cmd)
            )
        if action is Action.HELP:
            return ephemeral(USAGE)
        if action is Action.STATUS:
            return ephemeral(self.status_text())
        if action is Action.POSITION:
            return ephemeral(self._position_text())
        if action is Action.SNAPSHOT:
            self._background(self._snapshot_job, cmd)
            return ephemeral(f":camera: Fetching a snapshot from *{self.camera}*…")
        if action is Action.ROTATE:
            assert parsed.pan is not None and parsed.tilt is not None
            request_id = self._rotate(parsed.pan, parsed.tilt, source)
            self._background(self._rotate_job, cmd, request_id)
            return ephemeral(
                f":arrows_counterclockwise: Rotating *{self.camera}* to pan {parsed.pan}°, "
                f"tilt {parsed.tilt}°…"
            )
        if action is Action.MISSED:
            return in_channel(self._missed(parsed, cmd))
        if action is Action.REPORT:
            return ephemeral(self.report() if self.report else "No training report here.")
        if action is Action.INITIALIZE:
            suffix = "".join(
                self._set(s, True, cmd)
                for s in (SystemSetting.ARMED, SystemSetting.NOTIFICATIONS, SystemSetting.AUTO_ARM)
            )
            pan, tilt = round(self.settings.initialize_pan), round(self.settings.initialize_tilt)
            request_id = self._rotate(pan, tilt, source)
            self._background(self._rotate_job, cmd, request_id)
            return in_channel(
                f":gear: Initializing (by <@{cmd.user_id}>): armed, notifications and auto-arm "
                f"ON, camera to pan {pan}° tilt {tilt}°. Who is home is reported by the "
                f"presence service." + suffix
            )
        raise AssertionError(f"unhandled action {action}")

    def _set(self, setting: SystemSetting, value: bool, cmd: SlashCommand) -> str:
        source = f"slack:{cmd.user_id}"
        before = self.state.get(setting)
        command = SetCommand(value=value, source=source, request_id=uuid.uuid4().hex[:12])
        request_id = command.request_id or ""
        wanted = setting_check(
            lambda: self.state.retained(setting),
            value,
            source,
            time.time(),
            lambda: self.results.get(request_id) if setting is SystemSetting.ARMED else None,
        )
        self._send_confirmed(
            setting.value,
            f"*{setting.value} {_on_off(value)}*",
            lambda: self.bus.publish(SYSTEM_SET, command, setting=setting.value),
            wanted,
            cmd,
        )
        note = f"\n• {setting.value}: {_on_off(before)} → {_on_off(value)}"
        if not self.bus.connected:
            note += " (broker unreachable: queued, applied when it is back)"
        return note

    def _alarm(self, action: AlarmAction, cmd: SlashCommand) -> str:
        source = f"slack:{cmd.user_id}"
        command = AlarmCommand(action=action, source=source, request_id=uuid.uuid4().hex[:12])
        request_id = command.request_id or ""
        status = self.state.alarm()
        answered = alarm_check(
            action, self.state.alarm, lambda: self.results.get(request_id), source, time.time()
        )
        self._send_confirmed(
            "alarm",
            f"*{action.value}*",
            lambda: self.bus.publish(ALARM_SERVICE_SET, command),
            answered,
            cmd,
        )
        note = f"\n• alarm: {alarm_line(status)}" if status is not None else ""
        if not self.bus.connected:
            note += " (broker unreachable: queued, applied when it is back)"
        return note

    def _send_confirmed(
        self,
        key: str,
        what: str,
        send: Callable[[], None],
        check: Check,
        cmd: SlashCommand,
    ) -> None:
        """Send until the detector answers; tell the owner (in the channel, through the
        command's response_url) when the answer is late, when it comes late, when the
        detector refused and when it never came."""

        def late(seconds: float) -> None:
            self._tell(
                cmd,
                f":warning: {what} is not confirmed yet: the detector has not answered in "
                f"{seconds:.0f} s (still starting, or offline?). homesec sends it again once "
                f"the detector is online and says here when it is applied (for up to "
                f"{self.confirmer.give_up_seconds / 60:g} min).",
            )

        def done(ended: Ended) -> None:
            if ended.outcome is Outcome.REFUSED:
                self._tell(cmd, f":no_entry: {what} refused by the detector: {ended.detail}")
            elif not ended.late:
                return
            elif ended.outcome is Outcome.CONFIRMED:
                self._tell(cmd, f":white_check_mark: {what} confirmed after {ended.seconds:.0f} s.")
            elif ended.outcome is Outcome.SUPERSEDED:
                self._tell(cmd, f":information_source: {what} no longer sent: {ended.detail}.")
            elif ended.outcome is Outcome.UNCONFIRMED:
                self._tell(
                    cmd,
                    f":x: {what} was never confirmed ({ended.sends} sends in "
                    f"{ended.seconds / 60:.0f} min): homesec stopped sending it. "
                    "See `/homesec status`.",
                )

        self.confirmer.submit(key, send, check, on_late=late, on_done=done)

    def _tell(self, cmd: SlashCommand, text: str) -> None:
        self.followups.tell(cmd.response_url, text, cmd.channel_id)

    def _missed(self, parsed: Parsed, cmd: SlashCommand) -> str:
        """Ask the detector to keep the camera's last minutes as an occupied sample."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        event_id = f"{self.camera[:37]}-miss-{stamp}-{uuid.uuid4().hex[:4]}"
        seconds = None if parsed.minutes is None else parsed.minutes * 60
        request = MissedAlert(
            event_id=event_id,
            seconds=seconds,
            requested_by=f"slack:{cmd.user_id}",
            request_id=uuid.uuid4().hex[:12],
        )
        self.bus.publish(MISSED_ALERT, request, camera=self.camera)
        span = "everything it still holds" if seconds is None else f"the last {seconds:g} s"
        note = (
            ""
            if self.bus.connected
            else " (broker unreachable: queued, the buffer moves on meanwhile)"
        )
        return (
            f":mag: Missed alert on *{self.camera}* (reported by <@{cmd.user_id}>): the detector "
            f"keeps {span} as `{event_id}`, labelled *occupied*; it is uploaded with the "
            f"training set and `homesec tune` counts it as a missed alert.{note}"
        )

    def _rotate(self, pan: int, tilt: int, source: str) -> str:
        request_id = uuid.uuid4().hex[:12]
        command = PtzCommand(pan=pan, tilt=tilt, source=source, request_id=request_id)
        self.bus.publish(PTZ_COMMAND, command, camera=self.camera)
        return request_id

    def _background(self, job: Callable[..., None], *args: Any) -> None:
        self.workers.submit(self._guard, job, *args)

    def _guard(self, job: Callable[..., None], cmd: SlashCommand, *args: Any) -> None:
        try:
            job(cmd, *args)
        except Exception as exc:
            log.exception("background job failed", extra={"job": job.__name__})
            self.respond(cmd, ephemeral(f"That failed: {describe_error(exc)}"))

    def respond(self, cmd: SlashCommand, body: dict[str, Any]) -> None:
        """Post a delayed answer to a command (through its ``response_url`` while Slack
        takes it, else in its channel)."""
        self.followups.send(cmd.response_url, body, cmd.channel_id, cmd.user_id)

    def _post_response(self, response_url: str, body: dict[str, Any]) -> bool:
        """Post on a ``response_url``; True when Slack took it."""
        started = time.perf_counter()
        try:
            result = webhook(response_url, self.settings).send_dict(body)
            if result.status_code != 200:
                log.warning("response_url refused", extra={"status": result.status_code})
            return bool(result.status_code == 200)
        except Exception as exc:
            log.warning("response_url failed", extra={"error": describe_error(exc)})
            return False
        finally:
            self.metrics.api_seconds.labels("response_url").observe(time.perf_counter() - started)

    # ---- background jobs ---------------------------------------------------------------------

    def _snapshot_job(self, cmd: SlashCommand) -> None:
        asked_at = time.time()
        self.bus.publish(
            SNAPSHOT_REQUEST,
            SnapshotRequest(request_id=uuid.uuid4().hex[:12], requested_by=f"slack:{cmd.user_id}"),
            camera=self.camera,
        )
        frame = self.mirror.wait_snapshot(
            self.camera, asked_at, self.settings.snapshot_wait_seconds
        )
        if frame is None:
            self.respond(
                cmd,
                ephemeral(f"No snapshot from *{self.camera}* yet: is the camera service running?"),
            )
            return
        if self.bot is None:
            self.respond(
                cmd,
                ephemeral("Cannot post images: the gateway has no SLACK_BOT_TOKEN."),
            )
            return
        stale = "" if frame.captured_at >= asked_at - 1 else " (no fresh frame; latest one)"
        self.bot.files_upload_v2(
            channel=cmd.channel_id,
            content=frame.jpeg,
            filename=f"{self.camera}-{frame.seq}.jpg",
            title=f"{self.camera} {format_time(frame.captured_at)}",
            initial_comment=(
                f":camera: *{self.camera}* at {format_time(frame.captured_at)}{stale}, "
                f"for <@{cmd.user_id}>"
            ),
        )
        self.respond(cmd, ephemeral(f"Snapshot of *{self.camera}* posted."))

    def _rotate_job(self, cmd: SlashCommand, request_id: str) -> None:
        state = self.mirror.wait_ptz(self.camera, request_id, self.settings.ptz_wait_seconds)
        if state is None:
            online = self.mirror.copy()[0].get("ptz", "unknown")
            text = (
                f":warning: No answer from the ptz service within "
                f"{self.settings.ptz_wait_seconds:g} s (ptz is {online}); the command stays queued."
            )
        elif state.error:
            text = f":warning: ptz: {state.error}. Now at pan {state.pan:g}°, tilt {state.tilt:g}°."
        else:
            text = f":dart: *{self.camera}* now at pan {state.pan:g}°, tilt {state.tilt:g}°."
        self.respond(cmd, in_channel(text))

    # ---- reports -----------------------------------------------------------------------------

    def _position_text(self) -> str:
        state = self.mirror.ptz_state(self.camera)
        if state is None:
            return f"No position known for *{self.camera}*: is the ptz service running?"
        moving = " (moving)" if state.moving else ""
        return f":dart: *{self.camera}* at pan {state.pan:g}°, tilt {state.tilt:g}°{moving}."

    def status_text(self) -> str:
        """Switches, who is home, services, last event, camera fps, position, uploader."""
        values = self.state.snapshot()
        lines = ["*homesec status*"]
        alarm = self.state.alarm()
        if alarm is None:
            lines.append("• Alarm: unknown (detector not heard yet)")
        else:
            lines.append(
                f"• Alarm: *{alarm_line(alarm)}*, by {alarm.changed_by} at "
                f"{format_time(alarm.changed_at)}"
            )
        for setting, title in (
            (SystemSetting.ARMED, "Armed"),
            (SystemSetting.NOTIFICATIONS, "Notifications"),
            (SystemSetting.AUTO_ARM, "Auto-arm (presence)"),
            (SystemSetting.TRAINING, "Training buttons"),
        ):
            unknown = "" if self.state.known(setting) else " (default; detector not heard yet)"
            lines.append(f"• {title}: *{_on_off(values[setting].value)}*{unknown}")
        waiting = self.confirmer.pending()
        if waiting:
            lines.append(
                "• :hourglass: Sent, not yet confirmed by the detector: " + ", ".join(waiting)
            )
        availability, statuses, presence, uploader = self.mirror.copy()
        if presence is None:
            lines.append("• Home: unknown (presence service not heard yet)")
        else:
            home = [p.name for p in presence.people if p.home]
            who = ", ".join(home) if home else "nobody"
            backend = "" if presence.backend_ok else f" (backend error: {presence.backend_error})"
            lines.append(f"• Home: *{who}*{backend}")
        services = []
        for name in SERVICES:
            status = statuses.get(name)
            text = f"{name} {availability.get(name, 'unknown')}"
            if status is not None and status.state.value != "ok":
                text += f" ({status.state.value}: {status.detail[:80]})"
            services.append(text)
        lines.append("• Services: " + ", ".join(services))
        last = self.store.get_meta("last_event_at")
        if last is None:
            lines.append("• Last event: none seen")
        else:
            camera = self.store.get_meta("last_event_camera") or "?"
            lines.append(f"• Last event: {format_time(float(last))} on {camera}")
        camera_status = statuses.get("camera")
        if camera_status is not None and "fps" in camera_status.info:
            info = camera_status.info
            target = f" of {info['target_fps']}" if info.get("target_fps") is not None else ""
            lines.append(f"• Camera {info.get('camera', '')} fps: {info['fps']}{target}")
        else:
            lines.append("• Camera fps: unknown")
        ptz = self.mirror.ptz_state(self.camera)
        if ptz is not None:
            lines.append(f"• Position: pan {ptz.pan:g}°, tilt {ptz.tilt:g}°")
        if uploader is not None:
            lines.append(f"• Uploader: {uploader.pending} pending → {uploader.destination}")
        temperature = _cpu_temperature()
        if temperature is not None:
            lines.append(f"• CPU temperature: {temperature:.1f} °C")
        backlog = self.store.alert_backlog()
        if backlog:
            lines.append(f"• Alerts waiting for Slack: {backlog}")
        parked, newest = self.store.parked_alerts(limit=1)
        if parked:
            last = newest[0]
            outcome = (
                "posted as text"
                if last.fallback_error is None
                else f"NOT posted, not even as text ({last.fallback_error[:80]})"
            )
            lines.append(
                f"• Alerts Slack refused (last 14 days): {parked}; newest: event {last.event_id} "
                f"on {last.camera} at {format_time(last.created_at)} ({last.reason[:80]}), "
                f"{outcome}"
            )
        return "\n".join(lines)

    # ---- interactivity -----------------------------------------------------------------------

    def handle_interaction(self, payload: Mapping[str, Any]) -> dict[str, Any] | None:
        """A button click: store and publish the label, then show the answer in Slack."""
        try:
            actions = BlockActions.model_validate(dict(payload))
        except ValidationError as exc:
            raise InteractionError(
                f"payload is not a block_actions interaction: {exc.errors()[0]['msg']}"
            ) from None
        if actions.type != "block_actions":
            raise InteractionError(f"unsupported interaction type {actions.type[:40]!r}")
        action = actions.actions[0]
        expected = LABEL_BY_ACTION.get(action.action_id)
        if expected is None:
            raise InteractionError(f"unknown action_id {action.action_id[:60]!r}")
        try:
            event_id, camera, label = decode_value(action.value)
        except BadButtonValue as exc:
            raise InteractionError(str(exc)) from None
        if label is not expected:
            raise InteractionError("button value does not match its action")
        user = actions.user.id
        refusal = self.access.button_refusal(user)
        if refusal is not None:
            self.metrics.commands.labels("label", "denied").inc()
            log.warning("button denied", extra={"user": user, "event_id": event_id})
            # also through the response_url: the reply Slack shows the user who clicked
            answer = {**ephemeral(refusal), "replace_original": False}
            self.workers.submit(self.followups.send, actions.response_url, answer)
            return answer
        self.pins.pin(PinKind.LABEL, camera, event_id)  # kept until the uploader has it
        self.labels.add(
            TrainingLabel(
                event_id=event_id,
                camera=camera,
                label=label,
                labelled_by=f"slack:{user}",
                source="slack",
            )
        )
        self.metrics.commands.labels("label", "ok").inc()
        log.info("label", extra={"event_id": event_id, "label": label.value, "user": user})
        channel = actions.container.channel_id or (actions.channel.id if actions.channel else None)
        self.workers.submit(
            self._show_answer,
            channel,
            actions.container.message_ts,
            actions.response_url,
            (event_id, camera, label, user),
        )
        return None

    def _show_answer(
        self,
        channel: str | None,
        ts: str | None,
        response_url: str | None,
        answer: tuple[str, str, Label, str],
    ) -> None:
        blocks = answered_blocks(*answer)
        text = f"Event {answer[0]} labelled {answer[2].value} by <@{answer[3]}>"
        if self.bot is not None and channel and ts:
            try:
                self.bot.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
                return
            except Exception as exc:
                log.warning("chat.update failed", extra={"error": describe_error(exc)})
        self.followups.send(
            response_url, {"replace_original": True, "text": text, "blocks": blocks}
        )


def alarm_line(status: AlarmStatus, now: float | None = None) -> str:
    """The alarm in a few words: state, mode, what caused it and what is left of a delay."""
    text = ALARM_WORDS[status.state]
    if status.mode is not None and status.state in (
        AlarmState.ARMING,
        AlarmState.PENDING,
        AlarmState.TRIGGERED,
    ):
        text += f" ({status.mode.value})"
    if status.camera is not None and status.state in (AlarmState.PENDING, AlarmState.TRIGGERED):
        text += f" on {status.camera}"
    if status.until is not None:
        left = max(0, round(status.until - (time.time() if now is None else now)))
        verb = {AlarmState.ARMING: "armed", AlarmState.PENDING: "triggers"}.get(
            status.state, "ends"
        )
        text += f", {verb} in {left} s"
    return text


def _cpu_temperature() -> float | None:
    try:
        return int(THERMAL_ZONE.read_text().strip()) / 1000.0
    except (OSError, ValueError):
        return None

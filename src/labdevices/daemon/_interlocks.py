"""Interlocks: a condition on a signal (or a device going offline), held for a time, trips an alarm
and an action — pause the printer's job, e-stop it, or hold a setpoint.

Conditions are checked on every sample (and state change) as it arrives; the hold
time runs on a timer, so a condition that holds with no new sample still trips.
An interlock trips once per episode; its alarm is cleared when the condition goes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from pydantic import JsonValue

from ..bus import BusClient
from ..devices import Sample
from ..errors import LabDeviceError
from ..store import AlarmRecord, Store
from ._config import InterlockConfig
from ._jobs import JobManager
from ._supervisor import DeviceSlot

__all__ = ["InterlockEngine", "alarm_json"]

log = logging.getLogger("labdevices.daemon")

Spawn = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]
Audit = Callable[..., Awaitable[Any]]


def alarm_json(alarm: AlarmRecord, event: str | None = None) -> dict[str, JsonValue]:
    out: dict[str, JsonValue] = {
        "alarm_id": alarm.id,
        "device": alarm.device,
        "name": alarm.name,
        "severity": alarm.severity,
        "raised_at": alarm.raised_at,
        "cleared_at": alarm.cleared_at,
        "acknowledged_at": alarm.acknowledged_at,
        "acknowledged_by": alarm.acknowledged_by,
        "reason": alarm.reason,
        "active": alarm.cleared_at is None,
    }
    if event is not None:
        out["event"] = event
        out["t"] = time.time()
    return out


def holds(lock: InterlockConfig, value: float | bool | str | None) -> bool:
    """Whether ``value`` meets the interlock's condition (a missing value never does)."""
    if value is None:
        return False
    if lock.condition == "equals":
        return value == lock.value
    if isinstance(value, (str, bool)):
        return False
    if lock.condition == "above":
        assert isinstance(lock.value, int | float)
        return value > lock.value
    if lock.condition == "below":
        assert isinstance(lock.value, int | float)
        return value < lock.value
    if lock.condition == "outside":
        assert lock.low is not None and lock.high is not None
        return not lock.low <= value <= lock.high
    return False


class _Episode:
    """One interlock's state: since when its condition holds, its timer, its raised alarm."""

    def __init__(self, lock: InterlockConfig) -> None:
        self.lock = lock
        self.holding = False
        self.value: float | bool | str | None = None
        self.timer: asyncio.Task[None] | None = None
        self.alarm: AlarmRecord | None = None
        self.tripped = False


class InterlockEngine:
    """Evaluates the configured interlocks and acts when one trips."""

    def __init__(
        self,
        interlocks: list[InterlockConfig],
        slots: dict[str, DeviceSlot],
        jobs: JobManager,
        store: Store,
        bus: BusClient,
        spawn: Spawn,
        write_setpoint: Callable[[str, str, float, str, str], Awaitable[None]],
    ) -> None:
        self._episodes = [_Episode(lock) for lock in interlocks]
        self._by_signal: dict[tuple[str, str], list[_Episode]] = {}
        self._by_device: dict[str, list[_Episode]] = {}
        for ep in self._episodes:
            if ep.lock.condition == "offline":
                self._by_device.setdefault(ep.lock.device, []).append(ep)
            else:
                assert ep.lock.signal is not None
                self._by_signal.setdefault((ep.lock.device, ep.lock.signal), []).append(ep)
        self._slots = slots
        self._jobs = jobs
        self._store = store
        self._bus = bus
        self._spawn = spawn
        self._write_setpoint = write_setpoint
        self.trips = 0

    def on_sample(self, sample: Sample) -> None:
        for ep in self._by_signal.get((sample.device, sample.signal), ()):
            self._update(ep, holds(ep.lock, sample.value), sample.value)

    def on_state(self, slot: DeviceSlot) -> None:
        for ep in self._by_device.get(slot.name, ()):
            # Retrying counts as offline too: only a connected device clears the condition.
            self._update(ep, slot.state not in ("idle", "busy", "paused"), slot.state)

    def _update(self, ep: _Episode, now_holds: bool, value: float | bool | str | None) -> None:
        ep.value = value
        if now_holds and not ep.holding:
            ep.holding = True
            ep.timer = self._spawn(self._hold(ep), f"interlock {ep.lock.name}")
        elif not now_holds and ep.holding:
            ep.holding = False
            if ep.timer is not None:
                ep.timer.cancel()
                ep.timer = None
            if ep.tripped:
                ep.tripped = False
                self._spawn(self._clear(ep), f"interlock {ep.lock.name} clear")

    async def _hold(self, ep: _Episode) -> None:
        if ep.lock.hold_s > 0:
            await asyncio.sleep(ep.lock.hold_s)  # the hold time is the point: a timer, not a wait
        ep.timer = None
        if ep.holding and not ep.tripped:
            ep.tripped = True
            await self._trip(ep)

    async def _trip(self, ep: _Episode) -> None:
        lock = ep.lock
        self.trips += 1
        what = lock.signal or "state"
        reason = (
            f"interlock {lock.name!r}: {lock.device}.{what} {_describe(lock)} "
            f"for {lock.hold_s:g} s (value {ep.value!r}); action {lock.action}"
        )
        log.warning("%s", reason)
        ep.alarm = await self._store.raise_alarm(
            lock.device, lock.name, lock.severity, reason=reason, actor="daemon"
        )
        self._bus.post(self._bus.topics.alarm(lock.device), alarm_json(ep.alarm, "raised"))
        try:
            await self._act(lock)
        except LabDeviceError as exc:
            log.error("interlock %r: action %s failed: %s", lock.name, lock.action, exc)

    async def _act(self, lock: InterlockConfig) -> None:
        actor = f"interlock:{lock.name}"
        target = lock.acts_on
        if lock.action == "pause_job":
            await self._jobs.pause(target, actor=actor, reason=f"interlock {lock.name} tripped")
        elif lock.action == "estop":
            from ..devices.gcode import GcodePrinter

            device = self._slots[target].require()
            assert isinstance(device, GcodePrinter)
            await self._store.audit(
                actor, "device.estop", f"device/{target}", reason=f"interlock {lock.name} tripped"
            )
            await device.emergency_stop()
        elif lock.action == "hold_setpoint":
            assert lock.setpoint is not None and lock.setpoint_value is not None
            await self._write_setpoint(
                target, lock.setpoint, lock.setpoint_value, actor, f"interlock {lock.name} tripped"
            )

    async def _clear(self, ep: _Episode) -> None:
        alarm = ep.alarm
        if alarm is None:
            return
        ep.alarm = None
        try:
            cleared = await self._store.clear_alarm(
                alarm.id, actor="daemon", reason=f"condition of interlock {ep.lock.name} gone"
            )
        except LabDeviceError as exc:
            log.warning("interlock %r: alarm not cleared: %s", ep.lock.name, exc)
            return
        self._bus.post(self._bus.topics.alarm(ep.lock.device), alarm_json(cleared, "cleared"))


def _describe(lock: InterlockConfig) -> str:
    if lock.condition == "outside":
        return f"outside {lock.low}–{lock.high}"
    if lock.condition == "offline":
        return "offline"
    return f"{lock.condition} {lock.value!r}"

"""The command router: requests on ``{device}/cmd/{name}`` and ``daemon/cmd/{name}``, validated,
executed and audited.

Device commands: ``read``, ``write``, ``describe``, and for printers ``pause``,
``resume``, ``cancel``, ``estop``; ``clear_fault`` for any device in fault. Daemon commands: ``devices``, ``alarms``,
``ack_alarm``, ``jobs``, ``job``, ``sign``, ``status``. A refused command is audited too (passwords
left out), and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import JsonValue

from ..bus import BusClient, MalformedRequest, Request, UnknownCommand
from ..devices import DeviceState, Sample
from ..devices.gcode import GcodePrinter
from ..errors import (
    BadRequest,
    DeviceTimeoutError,
    LabDeviceError,
    LimitViolation,
    Unauthenticated,
)
from ..store import JobRecord, Store, StoreError
from ._audited import as_audited
from ._errors import NotInFault, UnknownAlarm, UnknownDevice, UnknownJob, UnknownSignal
from ._interlocks import alarm_json
from ._jobs import JobManager, job_json, signature_json
from ._site import SiteMembership
from ._supervisor import DeviceSlot

__all__ = ["CommandRouter", "daemon_command_topic"]

log = logging.getLogger("labdevices.daemon")

Command = Callable[[DeviceSlot, Request], Awaitable[JsonValue]]
DaemonCommand = Callable[[Request], Awaitable[JsonValue]]

_READ_TIMEOUT_S = 5.0
#: how long a device may take to be idle again after ``clear_fault`` restarts it
_CLEAR_FAULT_TIMEOUT_S = 30.0
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1  # what SQLite stores; beyond it OverflowError


def daemon_command_topic(bus_root: str, name: str) -> str:
    """``labdevices/{site}/daemon/cmd/{name}``: commands addressed to the daemon, not a device."""
    return f"{bus_root}/daemon/cmd/{name}"


def sample_json(sample: Sample) -> dict[str, JsonValue]:
    return {
        "device": sample.device,
        "signal": sample.signal,
        "value": sample.value,
        "unit": sample.unit,
        "t": sample.t,
        "quality": sample.quality,
    }


def _number(args: dict[str, JsonValue], key: str, device: str) -> float:
    value = args.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad_arg(key, "a finite number", value, device)
    return float(value)


def _text(
    args: dict[str, JsonValue], key: str, device: str | None, *, required: bool = True
) -> str | None:
    value = args.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise _bad_arg(key, "a non-empty string", value, device)
    return value


def _int(
    args: dict[str, JsonValue], key: str, device: str | None, *, required: bool = True
) -> int | None:
    value = args.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad_arg(key, "an integer", value, device)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise BadRequest(f"args.{key} is out of range ({value})", device=device)
    return value


def _bad_arg(key: str, what: str, value: object, device: str | None) -> LabDeviceError:
    shown = "missing" if value is None else f"got {value!r}"
    exc = MalformedRequest(f"args.{key} must be {what} ({shown})")
    exc.device = device
    return exc


class CommandRouter:
    """Dispatches requests to devices, the job manager and the store; audits every one."""

    def __init__(
        self,
        slots: dict[str, DeviceSlot],
        jobs: JobManager,
        store: Store,
        bus: BusClient,
        latest: dict[tuple[str, str], Sample],
        *,
        site: SiteMembership | None = None,
    ) -> None:
        self.slots = slots
        #: this daemon's place on a site of several (which daemon has which device)
        self.site = site
        self.latest = latest
        self.jobs = jobs
        self.store = store
        self.bus = bus
        #: the value each setpoint was last written to by this daemon, and a lock per setpoint
        self._setpoints: dict[tuple[str, str], float] = {}
        self._setpoint_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.device_commands: dict[str, Command] = {
            "read": self._read,
            "write": self._write,
            "describe": self._describe,
            "pause": self._pause,
            "resume": self._resume,
            "cancel": self._cancel,
            "estop": self._estop,
            "clear_fault": self._clear_fault,
        }
        self.daemon_commands: dict[str, DaemonCommand] = {
            "devices": self._devices,
            "alarms": self._alarms,
            "ack_alarm": self._ack_alarm,
            "jobs": self._jobs,
            "job": self._job,
            "sign": self._sign,
            "status": self._status,
        }

    # -- entry points (bus handlers) -----------------------------------------------------------

    async def handle_device(self, request: Request, topic: str) -> JsonValue:
        device, name = _split(topic, -3, -1)
        if device == "daemon":  # ``+/cmd/+`` covers ``daemon/cmd/+`` too
            return await self.handle_daemon(request, topic)
        try:
            slot = self.slots.get(device)
            if slot is None and self.site is not None:
                raise await self.site.not_here(device)
            if slot is None:
                known = ", ".join(sorted(self.slots)) or "none"
                raise UnknownDevice(f"unknown device {device!r} (devices: {known})", device=device)
            command = self.device_commands.get(name)
            if command is None:
                known = ", ".join(sorted(self.device_commands))
                raise UnknownCommand(f"unknown command {name!r} (known: {known})", device=device)
            return await command(slot, request)
        except LabDeviceError as exc:
            if exc.device is None:
                exc.device = device
            await self._audit_refusal(request, f"device/{device}", name, exc)
            raise

    async def handle_daemon(self, request: Request, topic: str) -> JsonValue:
        _, name = _split(topic, -3, -1)
        try:
            command = self.daemon_commands.get(name)
            if command is None:
                known = ", ".join(sorted(self.daemon_commands))
                raise UnknownCommand(f"unknown daemon command {name!r} (known: {known})")
            return await command(request)
        except LabDeviceError as exc:
            await self._audit_refusal(request, "daemon", name, exc)
            raise

    def knows(self, scope: str, name: str) -> bool:
        """Whether a handler serves ``name`` (for the request guard's fail-closed check)."""
        if scope == "device":
            return name in self.device_commands
        if scope == "daemon":
            return name in self.daemon_commands
        return scope == "jobs" and name == "submit"

    async def _audit_refusal(
        self, request: Request, obj: str, name: str, exc: LabDeviceError
    ) -> None:
        try:
            await self.store.audit(
                request.actor,
                "command.refused",
                obj,
                new={
                    "command": name,
                    "args": as_audited(redact(request.args)),
                    "request_id": request.id,
                },
                reason=f"[{exc.code}] {exc.message}",
            )
        except LabDeviceError as store_exc:
            log.error("refused command not audited: %s", store_exc)

    async def _audit(self, request: Request, action: str, obj: str, **fields: Any) -> None:
        await self.store.audit(request.actor, action, obj, **fields)

    # -- device commands -----------------------------------------------------------------------

    def _signal(self, slot: DeviceSlot, request: Request) -> str:
        name = _text(request.args, "signal", slot.name)
        assert name is not None
        if name not in slot.profile.signals:
            known = ", ".join(sorted(slot.profile.signals)) or "none"
            raise UnknownSignal(f"unknown signal {name!r} (signals: {known})", device=slot.name)
        return name

    async def _read(self, slot: DeviceSlot, request: Request) -> JsonValue:
        signal = self._signal(slot, request)
        device = slot.require()
        sample = await _timed(device.read(signal), slot.name, f"read of {signal}")
        await self._audit(request, "command.read", f"device/{slot.name}", new={"signal": signal})
        return sample_json(sample)

    async def _write(self, slot: DeviceSlot, request: Request) -> JsonValue:
        signal = self._signal(slot, request)
        value = _number(request.args, "value", slot.name)
        reason = _text(request.args, "reason", slot.name, required=False)
        await self.write_setpoint(slot.name, signal, value, request.actor, reason)
        return {"device": slot.name, "signal": signal, "value": value}

    async def write_setpoint(
        self, device: str, signal: str, value: float, actor: str, reason: str | None
    ) -> None:
        """Check against the profile's limits, audit (old and new value), then write.

        ``old`` is the value this write replaces: the setpoint as the daemon last wrote it,
        or, before its first write, as read back from the device. Writes to one setpoint
        are serialised, so a burst records an unbroken chain of old → new values.
        """
        slot = self.slots[device]
        sig = slot.profile.signals.get(signal)
        if sig is None:
            raise UnknownSignal(f"unknown signal {signal!r}", device=device)
        obj = f"device/{device}/{signal}"
        if not math.isfinite(value):
            await self.store.audit(
                actor, "setpoint.refused", obj, new=str(value), reason="not a finite number"
            )
            raise LimitViolation(
                f"{signal}: {value} is not a finite number", device=device, signal=signal
            )
        sig.check(device, signal, value)  # LimitViolation: nothing written, nothing audited as done
        dev = slot.require()
        key = (device, signal)
        lock = self._setpoint_locks.setdefault(key, asyncio.Lock())
        async with lock:
            old = self._setpoints[key] if key in self._setpoints else await self._read_back(key)
            await self.store.audit(actor, "setpoint.write", obj, old=old, new=value, reason=reason)
            await dev.write(signal, value)
            self._setpoints[key] = value

    async def _read_back(self, key: tuple[str, str]) -> JsonValue:
        """The setpoint's value on the device before the daemon's first write (None if the
        device cannot report it, e.g. a write-only G-code setpoint)."""
        device, signal = key
        try:
            sample = await _timed(self.slots[device].require().read(signal), device, signal)
        except LabDeviceError:
            return None
        value = sample.value
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        return value

    async def _describe(self, slot: DeviceSlot, request: Request) -> JsonValue:
        return self._describe_slot(slot)

    def _printer(self, slot: DeviceSlot) -> None:
        if not slot.is_printer:
            raise UnknownCommand(
                f"{slot.name} is a {slot.profile.driver} device, not a printer", device=slot.name
            )

    async def _job_action(self, slot: DeviceSlot, request: Request, action: str) -> JsonValue:
        self._printer(slot)
        job_id = _int(request.args, "job_id", slot.name, required=False)
        reason = _text(request.args, "reason", slot.name, required=False)
        await self._audit(
            request,
            f"command.{action}",
            f"device/{slot.name}",
            new={"job_id": job_id} if job_id is not None else None,
            reason=reason,
        )
        method = {"pause": self.jobs.pause, "resume": self.jobs.resume, "cancel": self.jobs.cancel}[
            action
        ]
        job = await method(slot.name, actor=request.actor, reason=reason, job_id=job_id)
        return job_json(job.record)

    async def _pause(self, slot: DeviceSlot, request: Request) -> JsonValue:
        return await self._job_action(slot, request, "pause")

    async def _resume(self, slot: DeviceSlot, request: Request) -> JsonValue:
        return await self._job_action(slot, request, "resume")

    async def _cancel(self, slot: DeviceSlot, request: Request) -> JsonValue:
        return await self._job_action(slot, request, "cancel")

    async def _estop(self, slot: DeviceSlot, request: Request) -> JsonValue:
        self._printer(slot)
        reason = _text(request.args, "reason", slot.name, required=False)
        device = slot.require()
        assert isinstance(device, GcodePrinter)
        await self._audit(request, "device.estop", f"device/{slot.name}", reason=reason)
        await device.emergency_stop()
        return {"device": slot.name, "state": device.state.value}

    async def _clear_fault(self, slot: DeviceSlot, request: Request) -> JsonValue:
        """Bring a device out of ``fault``: audited with who and why, then the device is
        closed and opened again (a printer is asked to restart its firmware first, ``M999``,
        and hand-shakes anew); the reply comes when it is idle again."""
        reason = _text(request.args, "reason", slot.name)
        device = slot.device
        if device is None or device.state != DeviceState.FAULT:
            raise NotInFault(
                f"{slot.name} is {slot.state}, not in fault: nothing to clear", device=slot.name
            )
        await self._audit(
            request,
            "device.clear_fault",
            f"device/{slot.name}",
            old={"state": slot.state, "fault": device.fault_reason},
            reason=reason,
        )
        if isinstance(device, GcodePrinter):
            device.request_firmware_restart()
        slot.request_restart()
        try:
            async with asyncio.timeout(_CLEAR_FAULT_TIMEOUT_S):
                await slot.wait_ready()
        except TimeoutError:
            why = f": {slot.error}" if slot.error else ""
            raise DeviceTimeoutError(
                f"not idle {_CLEAR_FAULT_TIMEOUT_S:g} s after the restart (now {slot.state}{why}); "
                "a printer halted for good needs its reset button or power",
                device=slot.name,
            ) from None
        await self._audit(
            request, "device.fault_cleared", f"device/{slot.name}", new={"state": slot.state}
        )
        return slot.describe()

    # -- daemon commands -----------------------------------------------------------------------

    async def _for_daemon(self, request: Request) -> None:
        """``args.daemon`` of ``status``/``devices``: this daemon, else the leader answering
        for one that is not running."""
        daemon = _text(request.args, "daemon", None, required=False)
        if daemon is not None and self.site is not None and daemon != self.site.daemon:
            raise await self.site.not_running(daemon)

    def _describe_slot(self, slot: DeviceSlot) -> dict[str, JsonValue]:
        item = slot.describe()
        if self.site is not None:
            item["daemon"] = self.site.daemon
        return item

    async def _devices(self, request: Request) -> JsonValue:
        """This daemon's devices (on a site of several: ask each one, ``args.daemon``)."""
        await self._for_daemon(request)
        return [self._describe_slot(slot) for slot in self.slots.values()]

    async def _status(self, request: Request) -> JsonValue:
        """The site at a glance: its daemons, this daemon's devices with their state and last
        values (another daemon's: ask it, ``args.daemon``), the active alarms and the jobs not
        yet ended of the whole site (one store)."""
        await self._for_daemon(request)
        devices: list[JsonValue] = []
        for slot in self.slots.values():
            item = self._describe_slot(slot)
            item["values"] = {
                signal: sample_json(sample)
                for (device, signal), sample in sorted(self.latest.items())
                if device == slot.name
            }
            devices.append(item)
        alarms = await self.store.list_alarms(active_only=True, limit=1000)
        jobs: list[JsonValue] = []
        for state in ("running", "paused", "queued", "held"):
            for job in await self.store.list_jobs(state=state, limit=1000):
                item = job_json(job)
                item.pop("events")
                jobs.append(item)
        return {
            "site": self.bus.topics.site,
            "daemon": self.site.daemon if self.site is not None else None,
            "daemons": await self.site.daemons() if self.site is not None else [],
            "devices": devices,
            "alarms": [alarm_json(a) for a in alarms],
            "jobs": jobs,
        }

    async def _alarms(self, request: Request) -> JsonValue:
        active = request.args.get("active_only", False)
        alarms = await self.store.list_alarms(active_only=bool(active), limit=1000)
        return [alarm_json(a) for a in alarms]

    async def _ack_alarm(self, request: Request) -> JsonValue:
        alarm_id = _int(request.args, "alarm_id", None)
        assert alarm_id is not None
        reason = _text(request.args, "reason", None, required=False)
        try:
            alarm = await self.store.acknowledge_alarm(alarm_id, user=request.actor, reason=reason)
        except StoreError as exc:
            if "no alarm" in exc.message:
                raise UnknownAlarm(f"no alarm with id {alarm_id}") from exc
            raise
        self.bus.post(self.bus.topics.alarm(alarm.device), alarm_json(alarm, "acknowledged"))
        return alarm_json(alarm)

    async def _jobs(self, request: Request) -> JsonValue:
        state = _text(request.args, "state", None, required=False)
        printer = _text(request.args, "printer", None, required=False)
        limit = _int(request.args, "limit", None, required=False) or 100
        jobs = await self.store.list_jobs(state=state, printer=printer, limit=limit)
        out = []
        for job in jobs:
            item = job_json(job)
            item.pop("events")
            out.append(item)
        return out  # type: ignore[return-value]

    async def _job(self, request: Request) -> JsonValue:
        job_id = _int(request.args, "job_id", None)
        assert job_id is not None
        job = await self.jobs.get(job_id)
        return await self._job_record(job)

    async def _job_record(self, job: JobRecord) -> JsonValue:
        """A job with its signatures and its submitter's printed name (the job record)."""
        out = job_json(job, await self.store.list_signatures(f"job/{job.id}"))
        user = await self.store.find_user(job.submitted_by) if job.submitted_by else None
        out["submitted_by_name"] = None if user is None else user.full_name
        return out

    async def _sign(self, request: Request) -> JsonValue:
        """An electronic signature on a job (21 CFR 11.50, 11.200): the signer re-enters user id
        and password, chooses a meaning and sends the content hash they were shown."""
        args = request.args
        job_id = _int(args, "job_id", None)
        meaning = _text(args, "meaning", None)
        user = _text(args, "user", None)
        password = _text(args, "password", None)
        content = _text(args, "content_sha256", None)
        comment = _text(args, "comment", None, required=False)
        assert job_id is not None and meaning and user and password and content
        if user != request.actor:
            raise Unauthenticated(
                f"the user id entered ({user!r}) is not the user signed in ({request.actor!r}): "
                "only the person signed in can sign"
            )
        if self.site is not None:  # the leader signs only where the printer's daemon is gone
            try:
                printer = (await self.store.get_job(job_id, events=False)).printer
            except StoreError:
                printer = None
            if printer is not None and printer not in self.slots:
                raise await self.site.not_here(printer)
        await self.store.check_password(user, password)  # wrong: Unauthenticated, audited
        try:
            result = await self.store.add_signature(
                f"job/{job_id}", user, meaning, comment, content
            )
        except StoreError as exc:
            if "no job" in exc.message:
                raise UnknownJob(f"no job {job_id}") from exc
            raise
        assert result.job is not None
        self.jobs.signed(result.job)
        return {
            "signature": signature_json(result.signature),
            "job": await self._job_record(result.job),
        }


async def _timed(coro: Awaitable[Sample], device: str, what: str) -> Sample:
    try:
        async with asyncio.timeout(_READ_TIMEOUT_S):
            return await coro
    except TimeoutError:
        raise DeviceTimeoutError(
            f"{what} took longer than {_READ_TIMEOUT_S} s", device=device
        ) from None


def redact(args: dict[str, JsonValue]) -> dict[str, JsonValue]:
    """The args without secrets (passwords), as they may be audited or logged."""
    return {
        k: "***" if ("password" in k.lower() or "secret" in k.lower()) else v
        for k, v in args.items()
    }


def _split(topic: str, first: int, second: int) -> tuple[str, str]:
    parts = topic.split("/")
    return parts[first], parts[second]

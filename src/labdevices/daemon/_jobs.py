"""Print jobs: submission (G-code text or a toolpath job spec), a queue per printer, control, events.

Each state change goes to the store first (validated and audited there), then to
``jobs/{id}/state`` (retained); progress goes to the store (last acknowledged line)
and to ``jobs/{id}/progress``. Every event of a job carries a ``seq`` that grows by
one, so a follower can tell that it missed nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from pydantic import JsonValue

from ..bus import BusClient, Request
from ..devices.gcode import GcodePrinter, JobOutcome, JobProgress, JobResult, load_program
from ..errors import ConfigurationError, JobRejected, LabDeviceError
from ..files import validate
from ..store import JobRecord, JobState, Store, StoreError
from ._errors import UnknownDevice, UnknownJob
from ._supervisor import DeviceSlot

__all__ = ["ActiveJob", "JobManager", "job_json"]

log = logging.getLogger("labdevices.daemon")

_OUTCOME_STATE = {
    JobOutcome.COMPLETED: JobState.COMPLETED,
    JobOutcome.CANCELLED: JobState.CANCELLED,
    JobOutcome.FAILED: JobState.FAILED,
    JobOutcome.INTERRUPTED: JobState.INTERRUPTED,
}
_LIVE = (JobState.RUNNING, JobState.PAUSED)


def job_json(record: JobRecord) -> dict[str, JsonValue]:
    """A stored job as the API shows it."""
    return {
        "job_id": record.id,
        "printer": record.printer,
        "state": record.state.value,
        "batch_id": record.batch_id,
        "patient_id": record.patient_id,
        "bioinks": record.bioinks,
        "gcode_sha256": record.gcode_sha256,
        "lines_total": record.lines_total,
        "line": record.last_ack_line,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "error": record.error,
        "events": [{"t": e.t, "kind": e.kind, "payload": e.payload} for e in record.events],
    }


@dataclass
class ActiveJob:
    """A job this daemon is running or will run."""

    id: int
    printer: str
    commands: list[str]
    record: JobRecord
    line: int = 0
    recorded_line: int = 0
    seq: int = 0
    started: float = field(default_factory=time.monotonic)
    cancel_actor: str | None = None
    cancel_reason: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    progress_changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def state(self) -> JobState:
        return self.record.state


def _str(args: dict[str, JsonValue], key: str) -> str | None:
    value = args.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise JobRejected(f"args.{key} must be a string, got {type(value).__name__}")
    return value


class JobManager:
    """Owns every job of the printers in ``slots``; ``spawn`` starts its tasks in the daemon's group."""

    def __init__(
        self,
        slots: dict[str, DeviceSlot],
        store: Store,
        bus: BusClient,
        spawn: Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]],
    ) -> None:
        self.slots = slots
        self.printers = {name: s for name, s in slots.items() if s.is_printer}
        self.jobs: dict[int, ActiveJob] = {}
        self._store = store
        self._bus = bus
        self._topics = bus.topics
        self._spawn = spawn
        self._queues: dict[str, asyncio.Queue[ActiveJob]] = {
            n: asyncio.Queue() for n in self.printers
        }

    def start(self) -> None:
        for name in self.printers:
            self._spawn(self._worker(name), f"jobs {name}")

    # -- startup ------------------------------------------------------------------------------

    async def recover(self) -> list[JobRecord]:
        """Jobs a previous daemon left live become interrupted (never resumed); queued ones cancelled."""
        interrupted = await self._store.recover_interrupted(actor="daemon")
        stale = await self._store.list_jobs(state=JobState.QUEUED, limit=10_000)
        cancelled = [
            await self._store.transition_job(
                job.id,
                JobState.CANCELLED,
                actor="daemon",
                reason="the daemon restarted before the job started; submit it again",
            )
            for job in stale
        ]
        for record in interrupted + cancelled:
            self._bus.post(
                self._topics.job_state(str(record.id)), self._state_payload(record, 0), retain=True
            )
        return interrupted

    # -- submission ---------------------------------------------------------------------------

    async def submit(self, request: Request, topic: str) -> JsonValue:
        """``jobs/submit``: args ``printer``, one of ``gcode`` (text) or ``job`` (toolpath spec),
        optional ``batch_id``, ``patient_id``, ``bioinks``, ``name``."""
        args = request.args
        printer = _str(args, "printer")
        if printer is None:
            if len(self.printers) != 1:
                raise JobRejected(
                    f"args.printer is required (printers: {', '.join(sorted(self.printers)) or 'none'})"
                )
            printer = next(iter(self.printers))
        if printer not in self.printers:
            known = ", ".join(sorted(self.printers)) or "none"
            kind = "not a printer" if printer in self.slots else "unknown device"
            raise UnknownDevice(f"{kind} {printer!r} (printers: {known})", device=printer)
        slot = self.printers[printer]
        gcode = _str(args, "gcode")
        spec = args.get("job")
        if (gcode is None) == (spec is None):
            raise JobRejected("give exactly one of args.gcode (G-code text) or args.job (job spec)")
        batch_id = _str(args, "batch_id")
        patient_id = _str(args, "patient_id")
        bioinks_arg = args.get("bioinks")
        bioinks: list[Any] = list(bioinks_arg) if isinstance(bioinks_arg, list) else []
        if spec is not None:
            if not isinstance(spec, dict):
                raise JobRejected("args.job must be an object (a toolpath job spec)")
            gcode, planned = await asyncio.to_thread(_plan, spec, slot)
            batch_id = batch_id or planned["batch_id"] or None
            patient_id = patient_id or planned["patient_id"] or None
            bioinks = bioinks or planned["bioinks"]
        assert gcode is not None
        from ..profiles import GcodeProfile

        assert isinstance(slot.profile, GcodeProfile)
        # The one loader and set of checks `labdevices print` uses too.
        commands = load_program(
            gcode,
            slot.profile,
            source="jobs/submit: args.gcode" if spec is None else "jobs/submit: planned job",
            allow_pauses=bool(args.get("allow_pauses")) or spec is not None,
            force=bool(args.get("force")),
            device=printer,
        ).commands
        record = await self._store.create_job(
            printer,
            actor=request.actor,
            batch_id=batch_id,
            patient_id=patient_id,
            bioinks=bioinks,
            gcode_sha256=hashlib.sha256(gcode.encode()).hexdigest(),
            lines_total=len(commands),
            reason=_str(args, "name"),
        )
        job = ActiveJob(record.id, printer, commands, record)
        self.jobs[job.id] = job
        self._publish_state(job)
        self._queues[printer].put_nowait(job)
        return job_json(record)

    # -- running ------------------------------------------------------------------------------

    async def _worker(self, printer: str) -> None:
        queue = self._queues[printer]
        slot = self.printers[printer]
        while True:
            job = await queue.get()
            if job.state != JobState.QUEUED:
                continue
            device = await slot.wait_ready()
            if job.state != JobState.QUEUED:
                continue
            assert isinstance(device, GcodePrinter)
            await self._run(job, device)

    async def _run(self, job: ActiveJob, device: GcodePrinter) -> None:
        await self._transition(job, JobState.RUNNING, actor="daemon")
        progress = self._spawn(self._progress_loop(job), f"job {job.id} progress")

        def on_progress(p: JobProgress) -> None:
            job.line = p.lines_done
            job.progress_changed.set()

        try:
            try:
                result = await device.run_job(job.commands, progress=on_progress)
            except LabDeviceError as exc:
                result = JobResult(JobOutcome.FAILED, len(job.commands), 0, 0.0, exc)
        finally:
            progress.cancel()
        if job.state not in _LIVE:
            return  # the shutdown already ended it
        await self._record_progress(job)
        target = _OUTCOME_STATE[result.outcome]
        actor = job.cancel_actor if target == JobState.CANCELLED and job.cancel_actor else "daemon"
        reason = job.cancel_reason if target == JobState.CANCELLED else None
        error = str(result.error) if result.error is not None else None
        if target == JobState.COMPLETED and job.state == JobState.PAUSED:
            await self._transition(job, JobState.RUNNING, actor="daemon")
        await self._transition(job, target, actor=actor, reason=reason, error=error)
        self.jobs.pop(job.id, None)

    async def _progress_loop(self, job: ActiveJob) -> None:
        while True:
            await job.progress_changed.wait()
            job.progress_changed.clear()
            await self._record_progress(job)

    async def _record_progress(self, job: ActiveJob) -> None:
        line = job.line
        if line == job.recorded_line or job.state not in _LIVE:
            return
        try:
            await self._store.record_progress(job.id, line)
        except LabDeviceError as exc:
            log.warning("job %d: progress not recorded: %s", job.id, exc)
            return
        job.recorded_line = line
        total = len(job.commands)
        elapsed = time.monotonic() - job.started
        job.seq += 1
        self._bus.post(
            self._topics.job_progress(str(job.id)),
            {
                "job_id": job.id,
                "seq": job.seq,
                "line": line,
                "lines_total": total,
                "fraction": line / total if total else 1.0,
                "elapsed_s": elapsed,
                "eta_s": elapsed * (total - line) / line if line else None,
                "t": time.time(),
            },
        )

    async def _transition(
        self,
        job: ActiveJob,
        state: JobState,
        *,
        actor: str,
        reason: str | None = None,
        error: str | None = None,
    ) -> None:
        job.record = await self._store.transition_job(
            job.id, state, actor=actor, reason=reason, error=error
        )
        if state == JobState.RUNNING and job.record.started_at is not None:
            job.started = time.monotonic() - (time.time() - job.record.started_at)
        self._publish_state(job)

    def _state_payload(self, record: JobRecord, seq: int) -> dict[str, JsonValue]:
        payload = job_json(record)
        payload.pop("events")
        payload["seq"] = seq
        payload["t"] = time.time()
        return payload

    def _publish_state(self, job: ActiveJob) -> None:
        job.seq += 1
        self._bus.post(
            self._topics.job_state(str(job.id)),
            self._state_payload(job.record, job.seq),
            retain=True,
        )

    # -- control ------------------------------------------------------------------------------

    def _live_job(
        self, printer: str, job_id: int | None, states: tuple[JobState, ...]
    ) -> ActiveJob:
        for job in self.jobs.values():
            if job.printer == printer and job.state in states and job_id in (None, job.id):
                return job
        which = f"job {job_id}" if job_id is not None else "no job"
        wanted = " or ".join(s.value for s in states)
        raise JobRejected(f"{which} {wanted} on this printer", device=printer)

    def _device(self, printer: str) -> GcodePrinter:
        device = self.printers[printer].require()
        assert isinstance(device, GcodePrinter)
        return device

    async def pause(
        self, printer: str, *, actor: str, reason: str | None = None, job_id: int | None = None
    ) -> ActiveJob:
        job = self._live_job(printer, job_id, (JobState.RUNNING,))
        async with job.lock:
            if job.state != JobState.RUNNING:
                raise JobRejected(f"job {job.id} is {job.state.value}, not running", device=printer)
            await self._device(printer).pause()
            await self._record_progress(job)
            await self._transition(job, JobState.PAUSED, actor=actor, reason=reason)
        return job

    async def resume(
        self, printer: str, *, actor: str, reason: str | None = None, job_id: int | None = None
    ) -> ActiveJob:
        job = self._live_job(printer, job_id, (JobState.PAUSED,))
        async with job.lock:
            if job.state != JobState.PAUSED:
                raise JobRejected(f"job {job.id} is {job.state.value}, not paused", device=printer)
            await self._transition(job, JobState.RUNNING, actor=actor, reason=reason)
            await self._device(printer).resume()
        return job

    async def cancel(
        self, printer: str, *, actor: str, reason: str | None = None, job_id: int | None = None
    ) -> ActiveJob:
        job = self._live_job(printer, job_id, (JobState.QUEUED, *_LIVE))
        async with job.lock:
            if job.state == JobState.QUEUED:
                await self._transition(job, JobState.CANCELLED, actor=actor, reason=reason)
                self.jobs.pop(job.id, None)
                return job
            job.cancel_actor, job.cancel_reason = actor, reason
            await self._device(printer).cancel()
        return job

    async def get(self, job_id: int) -> JobRecord:
        try:
            return await self._store.get_job(job_id)
        except StoreError as exc:
            raise UnknownJob(f"no job {job_id}") from exc

    # -- shutdown -----------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Pause every running job safely and mark each live job interrupted at its last line."""
        for job in list(self.jobs.values()):
            if job.state == JobState.RUNNING:
                with contextlib.suppress(LabDeviceError):
                    await self.pause(job.printer, actor="daemon", reason="daemon shutting down")
            if job.state in _LIVE:
                await self._record_progress(job)
                await self._transition(
                    job,
                    JobState.INTERRUPTED,
                    actor="daemon",
                    reason="daemon shut down",
                    error=f"the daemon stopped while the job was {job.state.value}; "
                    f"last acknowledged line {job.line} of {len(job.commands)}",
                )


def _plan(spec: dict[str, Any], slot: DeviceSlot) -> tuple[str, dict[str, Any]]:
    """Plan a toolpath job spec for the slot's printer (on a worker thread: it is CPU work)."""
    from ..profiles import GcodeProfile
    from ..toolpath import PrintJob, plan_job

    job = validate(PrintJob, spec, "jobs/submit: args.job")
    assert isinstance(slot.profile, GcodeProfile)
    tools = {p.tool for p in slot.profile.printheads}
    missing = [p.tool for p in job.printheads if p.tool not in tools]
    if missing:
        raise ConfigurationError(
            f"jobs/submit: args.job.printheads: printer {slot.name!r} ({slot.profile.name}) "
            f"has no tool {missing} (has {sorted(tools)})",
            device=slot.name,
        )
    result = plan_job(job, slot.profile)
    bioinks = [
        {
            "tool": p.tool,
            "name": p.bioink.name,
            "cell_density_per_ml": p.bioink.cell_density_per_ml,
        }
        for p in job.printheads
    ]
    return result.gcode, {
        "batch_id": job.batch_id,
        "patient_id": job.patient_id,
        "bioinks": bioinks,
        "name": job.name,
    }

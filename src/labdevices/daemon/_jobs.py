"""Print jobs: submission (G-code text or a toolpath job spec), a queue per printer, control, events.

Each state change goes to the store first (validated and audited there), then to
``jobs/{id}/state`` (retained); progress goes to the store (last acknowledged line)
and to ``jobs/{id}/progress``. Every event of a job carries a ``seq`` that grows by
one while a daemon runs it, so a follower can tell that it missed nothing, and the
store's id (``store_id``): job ids restart in a new store, and a retained state of the
old store's job of the same id must not pass for the new one's.

A ``seq`` never goes back across a restart either: each event published follows at
least one change the store keeps (an event row of the job, or a higher acknowledged
line), so a job taken up again from its record continues from its count of events plus
its last acknowledged line, above anything an earlier run published.
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
from ..devices.gcode import (
    GcodePrinter,
    JobOutcome,
    JobProgress,
    JobResult,
    load_gcode,
    load_program,
)
from ..errors import ConfigurationError, JobRejected, LabDeviceError
from ..files import validate
from ..store import (
    RELEASE_MEANINGS,
    TERMINAL_STATES,
    JobRecord,
    JobState,
    SignatureRecord,
    Store,
    StoreError,
    job_content_sha256,
)
from ._audited import as_audited
from ._errors import UnknownDevice, UnknownJob
from ._site import SiteMembership
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


def signature_json(sig: SignatureRecord) -> dict[str, JsonValue]:
    """A signature as the API shows it, with its manifestation (printed name, time, meaning)."""
    out: dict[str, JsonValue] = dict(sig.as_json())
    out["manifestation"] = sig.manifestation()
    return out


def job_json(
    record: JobRecord, signatures: list[SignatureRecord] | None = None
) -> dict[str, JsonValue]:
    """A stored job as the API shows it (with its signatures when given)."""
    out: dict[str, JsonValue] = {
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
        "name": record.name,
        "submitted_by": record.submitted_by,
        "profile": record.profile,
        "content_sha256": record.content_sha256,
        "release_required": record.release_required,
    }
    if signatures is not None:
        out["signatures"] = [signature_json(s) for s in signatures]
    return out


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
        *,
        store_id: str | None = None,
        site: SiteMembership | None = None,
    ) -> None:
        self.slots = slots
        self.store_id = store_id
        #: this daemon's place on a site of several (which daemon has which printer)
        self._site = site
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
        """Jobs a previous daemon left live become interrupted (never resumed); queued ones cancelled.

        Held jobs (awaiting a release signature) are taken up again, their ``seq`` continued.
        """
        # Only this daemon's printers: the jobs of the site's other daemons are theirs.
        interrupted = await self._store.recover_interrupted(actor="daemon", printers=self.printers)
        stale = [
            job
            for job in await self._store.list_jobs(state=JobState.QUEUED, limit=10_000)
            if job.printer in self.printers
        ]
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
                self._topics.job_state(str(record.id)),
                self._state_payload(record, await self._stored_seq(record.id)),
                retain=True,
            )
        for record in await self._store.list_jobs(state=JobState.HELD, limit=10_000):
            if record.printer not in self.printers:
                continue
            job = ActiveJob(record.id, record.printer, [], record)
            job.seq = await self._stored_seq(record.id)
            self.jobs[job.id] = job
        return interrupted

    async def clear_foreign_states(self) -> None:
        """Clear the retained job states another store left on the broker (runs until cancelled).

        Job ids restart in a new store: ``jobs/2/state`` retained by the last store's job 2
        would otherwise greet whoever follows this store's job 2 (clients also ignore it, by
        its ``store_id``). Only retained messages are looked at: live ones are this daemon's.
        """
        if self.store_id is None:
            return
        async with self._bus.subscribe(self._topics.job_events()[1]) as states:
            async for message in states:
                if not message.retain or not message.payload:
                    continue
                try:
                    data = message.json()
                except LabDeviceError:
                    data = None
                if isinstance(data, dict) and data.get("store_id") == self.store_id:
                    continue
                other = data.get("store_id") if isinstance(data, dict) else None
                log.warning(
                    "clearing %s: a job state of another store (%s), not this one (%s)",
                    message.topic,
                    other or "unnamed",
                    self.store_id,
                )
                self._bus.post(message.topic, b"", retain=True)

    async def _stored_seq(self, job_id: int) -> int:
        """The highest ``seq`` any run can have published for the job (see the module's doc)."""
        record = await self._store.get_job(job_id)
        return len(record.events) + record.last_ack_line

    # -- submission ---------------------------------------------------------------------------

    async def submit(self, request: Request, topic: str) -> JsonValue:
        """``jobs/submit``: args ``printer``, one of ``gcode`` (text) or ``job`` (toolpath spec),
        optional ``batch_id``, ``patient_id``, ``bioinks``, ``name``. A refused submission is
        audited as ``job.refused`` (its G-code by size and hash)."""
        try:
            return await self._submit(request)
        except LabDeviceError as exc:
            printer = request.args.get("printer")
            try:
                await self._store.audit(
                    request.actor,
                    "job.refused",
                    f"device/{printer}" if isinstance(printer, str) and printer else "jobs",
                    new={"args": as_audited(request.args), "request_id": request.id},
                    reason=f"[{exc.code}] {exc.message}",
                )
            except LabDeviceError as store_exc:
                log.error("refused job not audited: %s", store_exc)
            raise

    async def _submit(self, request: Request) -> JsonValue:
        args = request.args
        printer = _str(args, "printer")
        if printer is None:
            if self._site is not None and len(await self._site.live_daemons()) > 1:
                raise JobRejected("args.printer is required: the site has several daemons")
            if len(self.printers) != 1:
                raise JobRejected(
                    f"args.printer is required (printers: {', '.join(sorted(self.printers)) or 'none'})"
                )
            printer = next(iter(self.printers))
        if printer not in self.printers:
            if printer not in self.slots and self._site is not None:
                raise await self._site.not_here(printer)
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
        planned: dict[str, Any] | None = None
        if spec is not None:
            if not isinstance(spec, dict):
                raise JobRejected("args.job must be an object (a toolpath job spec)")
            gcode, plan = await asyncio.to_thread(_plan, spec, slot)
            batch_id = batch_id or plan["batch_id"] or None
            patient_id = patient_id or plan["patient_id"] or None
            bioinks = bioinks or plan["bioinks"]
            planned = plan
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
            gcode=gcode,
            name=_str(args, "name") or (planned or {}).get("name"),
            profile=slot.config.profile,
            spec=spec,
            release_required=slot.config.require_release,
        )
        if planned is not None:
            await self._store.add_job_event(
                record.id,
                "plan",
                {"planned_duration_s": planned["planned_duration_s"]},
                actor=request.actor,
            )
        job = ActiveJob(record.id, printer, commands, record)
        self.jobs[job.id] = job
        self._publish_state(job)
        if record.state == JobState.QUEUED:
            self._queues[printer].put_nowait(job)
        reply = job_json(record)
        reply["store_id"] = self.store_id
        return reply

    def signed(self, record: JobRecord) -> None:
        """A signature changed a held job: released ones join their printer's queue."""
        job = self.jobs.get(record.id)
        if job is None:
            # A signature on a job this daemon does not run (e.g. one that ended); held jobs
            # of an earlier run were taken up by ``recover``.
            return
        was = job.state
        job.record = record
        if record.state == was:
            return
        self._publish_state(job)
        if record.state == JobState.QUEUED and record.printer in self._queues:
            self._queues[record.printer].put_nowait(job)
        elif record.state in TERMINAL_STATES:
            self.jobs.pop(job.id, None)

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
            if not await self._check_content(job):
                continue
            await self._store.add_job_event(
                job.id,
                "printer",
                {
                    "device": printer,
                    "profile": slot.profile.name,
                    "firmware": dict(device.firmware),
                },
            )
            await self._run(job, device)

    async def _check_content(self, job: ActiveJob) -> bool:
        """Before streaming: the G-code about to be streamed is the one stored and signed.

        Recomputes the G-code hash from the stored program and the content hash from the
        stored row, and compares them with the row and with every release signature. A
        mismatch fails the job (audited, with the reason) instead of printing it.
        """
        try:
            problem = await self._content_problem(job)
        except LabDeviceError as exc:
            problem = f"the stored job could not be read back: {exc}"
        if problem is None:
            return True
        log.error("job %d: refused to start: %s", job.id, problem)
        await self._transition(
            job,
            JobState.FAILED,
            actor="daemon",
            reason="content check before start",
            error=f"refused to start: {problem}",
        )
        self.jobs.pop(job.id, None)
        return False

    async def _content_problem(self, job: ActiveJob) -> str | None:
        record = await self._store.get_job(job.id, events=False)
        gcode = await self._store.job_gcode(job.id)
        if gcode is None:
            return "no G-code is stored with the job"
        actual = hashlib.sha256(gcode.encode("utf-8")).hexdigest()
        if actual != record.gcode_sha256:
            return (
                f"the stored G-code hashes to {actual}, not to the job's G-code hash "
                f"{record.gcode_sha256}: it was changed after submission"
            )
        content = job_content_sha256(
            printer=record.printer,
            profile=record.profile,
            batch_id=record.batch_id,
            patient_id=record.patient_id,
            bioinks=record.bioinks,
            gcode_sha256=actual,
            lines_total=record.lines_total,
            spec=record.spec,
        )
        if content != record.content_sha256:
            return (
                f"the job's content hashes to {content}, not to its recorded content hash "
                f"{record.content_sha256}: the job row was changed after submission"
            )
        commands = load_gcode(gcode)
        if len(commands) != record.lines_total:
            return f"the stored G-code has {len(commands)} lines, the job {record.lines_total}"
        if record.release_required:
            signatures = await self._store.list_signatures(f"job/{job.id}")
            releases = [s for s in signatures if s.meaning in RELEASE_MEANINGS]
            if not releases:
                return "the job needs a release signature and has none"
            stale = [s for s in releases if s.content_sha256 != content]
            if stale:
                return (
                    f"signature {stale[0].id} by {stale[0].user_id} signed content "
                    f"{stale[0].content_sha256}, the job's is {content}"
                )
        job.commands = commands
        job.record = record
        return None

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
                "store_id": self.store_id,
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
        if state in TERMINAL_STATES:  # every job's end is anchored by a signed checkpoint
            await self._store.checkpoint()

    def _state_payload(self, record: JobRecord, seq: int) -> dict[str, JsonValue]:
        payload = job_json(record)
        payload.pop("events")
        payload["seq"] = seq
        payload["store_id"] = self.store_id
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
        job = self._live_job(printer, job_id, (JobState.HELD, JobState.QUEUED, *_LIVE))
        async with job.lock:
            if job.state in (JobState.HELD, JobState.QUEUED):
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
            "lot": p.bioink.lot,
            "cell_density_per_ml": p.bioink.cell_density_per_ml,
        }
        for p in job.printheads
    ]
    return result.gcode, {
        "batch_id": job.batch_id,
        "patient_id": job.patient_id,
        "bioinks": bioinks,
        "name": job.name,
        "planned_duration_s": result.total_time_s,
    }

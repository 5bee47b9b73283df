"""Records the store hands out, and the job state machine they obey."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = [
    "TERMINAL_STATES",
    "TRANSITIONS",
    "AlarmRecord",
    "AuditRecord",
    "JobEvent",
    "JobRecord",
    "JobState",
    "SampleLike",
    "Severity",
    "TelemetryPoint",
    "TelemetryValue",
]

TelemetryValue = float | int | bool | str | None
Severity = Literal["info", "warning", "critical"]


class JobState(enum.StrEnum):
    HELD = "held"  # awaiting a supervisor's release signature (GMP mode)
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


# An interrupted job is terminal on purpose: a print cut short by a daemon crash is
# never picked up again silently; resuming it is a new, deliberate job.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.HELD: frozenset({JobState.QUEUED, JobState.CANCELLED, JobState.FAILED}),
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.FAILED, JobState.CANCELLED}),
    JobState.RUNNING: frozenset(
        {
            JobState.PAUSED,
            JobState.COMPLETED,
            JobState.FAILED,
            JobState.CANCELLED,
            JobState.INTERRUPTED,
        }
    ),
    JobState.PAUSED: frozenset(
        {JobState.RUNNING, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED}
    ),
    JobState.COMPLETED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.INTERRUPTED: frozenset(),
}
TERMINAL_STATES = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)


class SampleLike(Protocol):
    """Anything shaped like ``labdevices.devices.Sample``."""

    @property
    def device(self) -> str: ...
    @property
    def signal(self) -> str: ...
    @property
    def value(self) -> TelemetryValue: ...
    @property
    def unit(self) -> str: ...
    @property
    def t(self) -> float: ...
    @property
    def quality(self) -> str: ...


@dataclass(frozen=True, slots=True)
class TelemetryPoint:
    """One stored sample; ``t`` is seconds since the epoch."""

    device: str
    signal: str
    t: float
    value: TelemetryValue
    unit: str = ""
    quality: str = "good"


@dataclass(frozen=True, slots=True)
class JobEvent:
    """Something that happened to a job: ``kind`` is e.g. ``created``, ``state``, ``note``."""

    job_id: int
    t: float
    kind: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A print job as stored; times are seconds since the epoch."""

    id: int
    printer: str
    state: JobState
    batch_id: str | None
    patient_id: str | None
    bioinks: list[Any]
    gcode_sha256: str | None
    lines_total: int
    last_ack_line: int
    created_at: float
    started_at: float | None
    ended_at: float | None
    error: str | None
    events: list[JobEvent] = field(default_factory=list)
    name: str | None = None
    submitted_by: str | None = None
    profile: str | None = None
    #: the job spec (toolpath job or G-code metadata) as submitted, canonical JSON
    spec: str | None = None
    #: SHA-256 of what a signature on this job signs (spec, G-code hash, bioink lots)
    content_sha256: str | None = None
    release_required: bool = False
    events_sha256: str = "0" * 64


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    """An alarm; it is active until cleared, and open until acknowledged."""

    id: int
    device: str
    name: str
    severity: str
    raised_at: float
    cleared_at: float | None
    acknowledged_at: float | None
    acknowledged_by: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One link of the audit chain; ``old`` and ``new`` are canonical JSON text (or None)."""

    seq: int
    time: str
    actor: str
    action: str
    object: str
    old: str | None
    new: str | None
    reason: str | None
    prev_hash: str
    hash: str
    #: SHA-256 of the row this record's action produced (see ``_rows.py``), if any
    row_sha256: str | None = None

"""Gather one job's batch record from the store: a JSON-ready dict with stable keys.

This dict is the electronic copy (``labdevices record --json``); the HTML and PDF
renderers only lay it out. Times are given twice: seconds since the epoch and
ISO 8601 UTC text.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..store import (
    JobRecord,
    SqliteDatabase,
    default_key_path,
    default_witness_path,
    job_content_sha256,
    load_verifier,
    verify_store,
)

__all__ = ["FORMAT", "collect_record", "utc", "verification"]

#: the name and version of the record's JSON layout
FORMAT = "labdevices.batch-record/1"
#: at most this many samples of one signal go into the record (evenly thinned beyond)
MAX_SAMPLES_PER_SIGNAL = 5000


def utc(t: float | None) -> str | None:
    """Seconds since the epoch as ISO 8601 UTC text with milliseconds (None stays None)."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def public_key_for(db_path: Path, key: str | None, notes: list[str]) -> Ed25519PublicKey | None:
    """The daemon's public key: ``key`` (a PEM file or verifier key string), else the one beside
    the store (``<db>.key.pub``), noted as such: a copy kept elsewhere is what proves anything."""
    if key is not None:
        return load_verifier(key)
    beside = default_key_path(db_path)
    candidate = beside.with_name(beside.name + ".pub")
    if candidate.exists():
        notes.append(f"public key taken from {candidate}, beside the store")
        return load_verifier(candidate)
    return None


def verification(
    db: SqliteDatabase,
    covers_seq: int,
    *,
    key: str | None = None,
    witness: str | Path | None = None,
) -> dict[str, Any]:
    """The store's proof (``verify_store``: chain, checkpoints, witness, every covered row) and
    the first signed checkpoint that covers audit record ``covers_seq`` (the job's last)."""
    notes: list[str] = []
    public = public_key_for(db.path, key, notes)
    if witness is None and default_witness_path(db.path).exists():
        witness = default_witness_path(db.path)
    report = verify_store(db.location, public_key=public, witness=witness)
    chain = db.verify()
    covering = next(((n, cp) for n, cp in db.checkpoints() if cp.size >= covers_seq), None)
    checkpoint = None
    if covering is not None:
        n, cp = covering
        checkpoint = {
            "number": n,
            "origin": cp.origin,
            "size": cp.size,
            "head": cp.head,
            "time": cp.time,
            "state": cp.state,
            # trusted only when checked against a public key and the chain up to its size
            "verified": public is not None and report.ok and report.anchored_seq >= cp.size,
        }
    return {
        "ok": report.ok,
        "exit_code": report.exit_code,
        "records": report.records,
        "head_seq": chain.head_seq,
        "head_hash": chain.head_hash,
        "chain_ok": chain.ok,
        "chain_message": chain.message,
        "checkpoints": report.checkpoints,
        "witnessed": report.witnessed,
        "witness": None if witness is None else str(witness),
        "anchored_seq": report.anchored_seq,
        "key_fingerprint": report.key_fingerprint,
        "problems": [str(p) for p in report.problems],
        "more_problems": report.suppressed,
        "notes": notes + report.notes,
        "job_last_seq": covers_seq,
        "checkpoint": checkpoint,
    }


def _window(job: JobRecord) -> tuple[float, float]:
    start = job.started_at if job.started_at is not None else job.created_at
    end = job.ended_at if job.ended_at is not None else time.time()
    return start, end


def _telemetry(db: SqliteDatabase, job: JobRecord) -> dict[str, Any]:
    start, end = _window(job)
    devices = db.telemetry_devices(start=start, end=end)
    # the printer first, then the rest by name
    devices.sort(key=lambda d: (d != job.printer, d))
    out: dict[str, Any] = {}
    for device in devices:
        signals: dict[str, Any] = {}
        for s in db.telemetry_summary(device, start=start, end=end):
            points = db.query_telemetry(device, s.signal, start=start, end=end)
            numeric = [
                (p.t, float(p.value))
                for p in points
                if isinstance(p.value, int | float) and not isinstance(p.value, bool)
            ]
            step = max(1, -(-len(numeric) // MAX_SAMPLES_PER_SIGNAL))
            signals[s.signal] = {
                "unit": s.unit,
                "count": s.count,
                "first": utc(s.first_t),
                "last": utc(s.last_t),
                "min": s.min,
                "max": s.max,
                "mean": s.mean,
                "samples": [[t, v] for t, v in numeric[::step]],
                "thinned_every": step,
            }
        out[device] = {"signals": signals}
    return out


def _full_name(db: SqliteDatabase, user_id: str | None) -> str | None:
    """The printed name of a registered user (None for ids that name no user, e.g. scripts)."""
    if user_id is None:
        return None
    user = db.find_user(user_id)
    return None if user is None else user.full_name


def collect_record(
    db: SqliteDatabase,
    job_id: int,
    *,
    key: str | None = None,
    witness: str | Path | None = None,
) -> dict[str, Any]:
    """Everything an inspector reads about one job, from the open store ``db``.

    ``key`` (the daemon's public key, kept apart from the store) and ``witness`` (a copy of
    the checkpoints) go to the verification; by default those beside the store are used.
    """
    job = db.get_job(job_id)
    obj = f"job/{job_id}"
    audit = db.audit_records(object=obj)
    signatures = db.list_signatures(obj)
    sig_audit = {
        r.object: r.seq for s in signatures for r in db.audit_records(object=f"signature/{s.id}")
    }
    start, end = _window(job)
    events = [
        {"t": e.t, "time": utc(e.t), "kind": e.kind, "payload": e.payload} for e in job.events
    ]
    printer_event = next((e.payload for e in reversed(job.events) if e.kind == "printer"), {})
    plan_event = next((e.payload for e in job.events if e.kind == "plan"), {})
    transitions = []
    for r in audit:
        if r.action not in ("job.create", "job.transition"):
            continue
        old = json.loads(r.old) if r.old else {}
        new = json.loads(r.new) if r.new else {}
        transitions.append(
            {
                "seq": r.seq,
                "time": r.time,
                "actor": r.actor,
                "action": r.action,
                "from": old.get("state"),
                "to": new.get("state"),
                "line": new.get("line"),
                "reason": r.reason,
                "error": new.get("error"),
            }
        )
    alarms = [
        {
            "id": a.id,
            "device": a.device,
            "name": a.name,
            "severity": a.severity,
            "raised_at": utc(a.raised_at),
            "cleared_at": utc(a.cleared_at),
            "acknowledged_at": utc(a.acknowledged_at),
            "acknowledged_by": a.acknowledged_by,
            "reason": a.reason,
        }
        for a in reversed(db.list_alarms(limit=100_000))
        if a.raised_at <= end and (a.cleared_at is None or a.cleared_at >= start)
    ]
    # What the job is now, hashed again: a signature binds the content it signed, so a row
    # changed behind the store's back shows as signatures that no longer match.
    content_now = job_content_sha256(
        printer=job.printer,
        profile=job.profile,
        batch_id=job.batch_id,
        patient_id=job.patient_id,
        bioinks=job.bioinks,
        gcode_sha256=job.gcode_sha256,
        lines_total=job.lines_total,
        spec=job.spec,
    )
    last_seq = max([r.seq for r in audit] + list(sig_audit.values()), default=0)
    duration = (
        job.ended_at - job.started_at
        if job.started_at is not None and job.ended_at is not None
        else None
    )
    return {
        "format": FORMAT,
        "generated_at": utc(time.time()),
        "store": {"path": str(db.path), "schema_version": db.schema_version},
        "job": {
            "id": job.id,
            "name": job.name,
            "state": job.state.value,
            "batch_id": job.batch_id,
            "patient_id": job.patient_id,
            "submitted_by": job.submitted_by,
            "submitted_by_name": _full_name(db, job.submitted_by),
            "release_required": job.release_required,
            "created_at": utc(job.created_at),
            "started_at": utc(job.started_at),
            "ended_at": utc(job.ended_at),
            "error": job.error,
            "gcode_sha256": job.gcode_sha256,
            "content_sha256": job.content_sha256,
            "events_sha256": job.events_sha256,
            "lines_planned": job.lines_total,
            "lines_printed": job.last_ack_line,
            "duration_planned_s": plan_event.get("planned_duration_s"),
            "duration_s": duration,
            "spec": None if job.spec is None else json.loads(job.spec),
        },
        "bioinks": job.bioinks,
        "printer": {
            "device": job.printer,
            "profile": job.profile or printer_event.get("profile"),
            "firmware": printer_event.get("firmware") or {},
        },
        "transitions": transitions,
        "signatures": [
            {
                **s.as_json(),
                "manifestation": s.manifestation(),
                "audit_seq": sig_audit.get(f"signature/{s.id}"),
                "matches_content": s.content_sha256 == content_now,
            }
            for s in signatures
        ],
        "alarms": alarms,
        "telemetry": {
            "start": utc(start),
            "end": utc(end),
            "start_t": start,
            "end_t": end,
            "devices": _telemetry(db, job),
        },
        "events": events,
        "audit": [
            {
                "seq": r.seq,
                "time": r.time,
                "actor": r.actor,
                "action": r.action,
                "object": r.object,
                "reason": r.reason,
                "hash": r.hash,
                "row_sha256": r.row_sha256,
            }
            for r in audit
        ],
        "verification": {
            **verification(db, last_seq, key=key, witness=witness),
            "content_sha256_recomputed": content_now,
            "content_ok": content_now == job.content_sha256,
        },
    }

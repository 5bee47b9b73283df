"""Which tables hold records, and the hash of one row that puts it under the audit chain.

Every change to a row of a covered table is written in the same transaction as an
audit record about ``{prefix}/{key}`` whose ``row_sha256`` is the hash of the row as
that change left it. The last such record of each row must therefore match the row
as stored: ``audit verify`` recomputes both and names the table and row that differ.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._audit import canonical_json
from ._dialect import Connection

__all__ = [
    "COVERED",
    "Coverage",
    "event_link",
    "job_content_sha256",
    "object_of",
    "read_row",
    "row_sha256",
    "telemetry_digest",
]


@dataclass(frozen=True, slots=True)
class Coverage:
    """How rows of one table are named in the audit chain and which columns are hashed."""

    table: str
    prefix: str
    key: str = "id"
    #: columns that change without an audit record (``jobs.last_ack_line`` moves with every
    #: acknowledged line; the job's transitions record it)
    exclude: tuple[str, ...] = ()


COVERED: dict[str, Coverage] = {
    c.table: c
    for c in (
        Coverage("jobs", "job", exclude=("last_ack_line",)),
        Coverage("alarms", "alarm"),
        Coverage("users", "user"),
        Coverage("signatures", "signature"),
        Coverage("telemetry_blocks", "telemetry-block"),
        Coverage("telemetry_removals", "telemetry-removal"),
    )
}


def object_of(table: str, key: Any) -> str:
    """The audit ``object`` that names a covered row, e.g. ``job/12``."""
    return f"{COVERED[table].prefix}/{key}"


def row_sha256(table: str, row: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a covered row's canonical JSON, without its excluded columns."""
    cov = COVERED[table]
    body = {k: v for k, v in row.items() if k not in cov.exclude}
    text = canonical_json({"table": table, "row": body})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_row(db: Connection, table: str, key: Any) -> dict[str, Any] | None:
    """One row of a covered table as a column → value mapping (None if there is none)."""
    cov = COVERED[table]
    cur = db.execute(f"SELECT * FROM {table} WHERE {cov.key} = ?", (key,))
    row = cur.fetchone()
    if row is None:
        return None
    return {d[0]: v for d, v in zip(cur.description, row, strict=True)}


def event_link(prev: str, job_id: int, t: float, kind: str, payload_json: str) -> str:
    """The job's running event hash after one more event (``jobs.events_sha256``)."""
    text = canonical_json(
        {"prev": prev, "job_id": job_id, "t": t, "kind": kind, "payload": payload_json}
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def telemetry_digest(rows: Iterable[Sequence[Any]]) -> str:
    """SHA-256 of a block's samples, each (device, signal, t, value, unit, quality), in order.

    Non-finite values are spelled as JSON's NaN/Infinity here: a sample may carry one.
    """
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps(list(row), separators=(",", ":"), ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()


def job_content_sha256(
    *,
    printer: str,
    profile: str | None,
    batch_id: str | None,
    patient_id: str | None,
    bioinks: Any,
    gcode_sha256: str | None,
    lines_total: int,
    spec: str | None,
) -> str:
    """What an electronic signature on a job signs: its printer and profile, batch and patient,
    bioinks with their lots, job spec and the hash of the exact G-code it streams.

    A signature stores this hash, so it cannot be moved to another job, and a job whose
    content changes after it was signed no longer matches its signatures.
    """
    body = {
        "printer": printer,
        "profile": profile,
        "batch_id": batch_id,
        "patient_id": patient_id,
        "bioinks": bioinks,
        "gcode_sha256": gcode_sha256,
        "lines_total": lines_total,
        "spec": spec,
    }
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()

"""Electronic signatures (21 CFR 11.50, 11.70): a meaning, a person, a time, bound to a hash.

A signature row holds the signer's user id and printed name, the UTC time, the
meaning and the ``content_sha256`` of exactly what was signed (for a job:
``jobs.content_sha256``, see ``job_content_sha256``). It is written in one durable
transaction with its audit record, and the table refuses updates and deletes.
Re-authenticating the signer (user id and password) is the caller's business;
this module decides what a signature may do: in GMP mode a ``released`` (or
``approved for printing``) signature by a supervisor other than the submitter
moves a ``held`` job to ``queued``, and ``rejected`` cancels it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..auth._roles import capabilities_of
from ..errors import BadRequest, Forbidden, JobRejected, TooLarge
from ._dialect import Connection
from ._models import JobRecord, JobState
from ._rows import object_of

if TYPE_CHECKING:
    from ._sqlite import SqliteDatabase

__all__ = [
    "MEANINGS",
    "RELEASE_MEANINGS",
    "ContentMismatch",
    "SignatureRecord",
    "SignatureResult",
    "add_signature",
    "list_signatures",
]

#: what a signature may mean (the signer chooses one)
MEANINGS = ("reviewed", "approved for printing", "released", "rejected")
#: meanings that let a held job start
RELEASE_MEANINGS = frozenset({"approved for printing", "released"})
_MAX_COMMENT_BYTES = 1024
#: a GMP job past its release decision but not yet ended: no second decision
_PENDING = frozenset({JobState.QUEUED, JobState.RUNNING, JobState.PAUSED})
_COLUMNS = "id, object, user_id, full_name, meaning, comment, time, content_sha256"


class ContentMismatch(BadRequest):
    """The content hash the signer saw is not the object's current one: nothing was signed."""

    code = "content_mismatch"


@dataclass(frozen=True, slots=True)
class SignatureRecord:
    """One signature: its manifestation is ``full_name``, ``time`` (UTC, ISO 8601) and ``meaning``."""

    id: int
    object: str
    user_id: str
    full_name: str
    meaning: str
    comment: str | None
    time: str
    content_sha256: str

    def manifestation(self) -> str:
        """The line a person reads: printed name, time, meaning (21 CFR 11.50)."""
        return f"{self.full_name} ({self.user_id}), {self.time}, {self.meaning}"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": self.object,
            "user_id": self.user_id,
            "full_name": self.full_name,
            "meaning": self.meaning,
            "comment": self.comment,
            "time": self.time,
            "content_sha256": self.content_sha256,
        }


@dataclass(frozen=True, slots=True)
class SignatureResult:
    """A new signature and, for a job, the job as the signature left it."""

    signature: SignatureRecord
    job: JobRecord | None


def _job_id(object: str) -> int:
    kind, _, key = object.partition("/")
    if kind != "job" or not key.isdigit():
        raise BadRequest(f"only jobs can be signed (object 'job/ID'), got {object!r}")
    return int(key)


def _user(db: Connection, user_id: str) -> tuple[str, list[str]]:
    row = db.execute(
        "SELECT full_name, roles, active FROM users WHERE id = ?", (user_id,)
    ).fetchone()
    if row is None:
        raise Forbidden(f"no user {user_id!r}: only registered users can sign")
    full_name, roles, active = row
    if not active:
        raise Forbidden(f"user {user_id!r} is deactivated and cannot sign")
    parsed = json.loads(roles)
    return str(full_name), [str(r) for r in parsed] if isinstance(parsed, list) else []


def add_signature(
    store: SqliteDatabase,
    object: str,
    user_id: str,
    meaning: str,
    comment: str | None,
    content_sha256: str,
) -> SignatureResult:
    """Sign ``object`` (``job/ID``) as ``user_id`` (already re-authenticated by the caller).

    Refused, with nothing written: an unknown meaning or user, a comment over 1 KiB, a
    ``content_sha256`` other than the object's current one (``ContentMismatch``), a signature
    by a user without ``record.sign`` or a release or rejection by one without ``job.release``
    (the supervisor role grants both), or a release by the job's own
    submitter when the job needs a release (two-person rule) — ``Forbidden``.
    """
    if meaning not in MEANINGS:
        raise BadRequest(
            f"meaning must be one of {', '.join(map(repr, MEANINGS))}, got {meaning!r}"
        )
    if comment is not None and len(comment.encode("utf-8")) > _MAX_COMMENT_BYTES:
        raise TooLarge(f"the comment is longer than {_MAX_COMMENT_BYTES} bytes")
    job_id = _job_id(object)
    now = time.time()
    with store._tx(durable=True) as db:
        full_name, roles = _user(db, user_id)
        job = store._get_job(db, job_id, events=False)
        if job.content_sha256 is None or content_sha256 != job.content_sha256:
            raise ContentMismatch(
                f"job {job_id}: the content you signed ({content_sha256[:12]}…) is not the job's "
                f"current content ({(job.content_sha256 or 'none')[:12]}…); fetch it again"
            )
        decides = meaning in RELEASE_MEANINGS or meaning == "rejected"
        needed = "job.release" if decides else "record.sign"
        if needed not in capabilities_of(roles):
            raise Forbidden(
                f"user {user_id!r} (roles: {', '.join(roles) or 'none'}) cannot sign "
                f"{meaning!r}: that needs the {needed!r} capability (supervisor role)",
                device=job.printer,
            )
        if meaning in RELEASE_MEANINGS and job.release_required and user_id == job.submitted_by:
            raise Forbidden(
                f"job {job_id}: {user_id!r} submitted it and cannot also release it "
                "(two-person rule: another supervisor must sign)",
                device=job.printer,
            )
        if decides and job.release_required and job.state in _PENDING:
            raise JobRejected(
                f"job {job_id} is {job.state.value}: it was already released or rejected",
                device=job.printer,
            )
        stamp = _iso(now)
        cur = db.execute(
            "INSERT INTO signatures (object, user_id, full_name, meaning, comment, time,"
            " content_sha256) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (object, user_id, full_name, meaning, comment, stamp, content_sha256),
        )
        sig_id = int(cur.fetchone()[0])
        store._append_audit(
            db,
            t=now,
            actor=user_id,
            action="record.sign",
            object=object_of("signatures", sig_id),
            old=None,
            new={
                "object": object,
                "meaning": meaning,
                "full_name": full_name,
                "content_sha256": content_sha256,
            },
            reason=comment,
            row=("signatures", sig_id),
        )
        store._add_event(
            db,
            job_id,
            now,
            "signature",
            {"signature": sig_id, "user_id": user_id, "full_name": full_name, "meaning": meaning},
        )
        if job.state is JobState.HELD and meaning in RELEASE_MEANINGS:
            job = store._transition(
                db,
                job_id,
                JobState.QUEUED,
                actor=user_id,
                reason=f"released by signature {sig_id} ({meaning})",
                error=None,
            )
        elif job.state is JobState.HELD and meaning == "rejected":
            job = store._transition(
                db,
                job_id,
                JobState.CANCELLED,
                actor=user_id,
                reason=f"rejected by signature {sig_id}" + (f": {comment}" if comment else ""),
                error=None,
            )
        else:
            store._append_audit(
                db,
                t=now,
                actor=user_id,
                action="job.event",
                object=object_of("jobs", job_id),
                old=None,
                new={"kind": "signature"},
                reason=None,
                row=("jobs", job_id),
            )
            job = store._get_job(db, job_id, events=False)
        signature = SignatureRecord(
            sig_id, object, user_id, full_name, meaning, comment, stamp, content_sha256
        )
        return SignatureResult(signature, job)


def list_signatures(store: SqliteDatabase, object: str) -> list[SignatureRecord]:
    """The signatures of ``object`` (e.g. ``job/12``), oldest first."""
    with store._errors():
        rows = store._db.execute(
            f"SELECT {_COLUMNS} FROM signatures WHERE object = ? ORDER BY id", (object,)
        )
        return [SignatureRecord(*row) for row in rows]


def _iso(t: float) -> str:
    from ._sqlite import _iso as iso

    return iso(t)

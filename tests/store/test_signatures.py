"""Signatures in the store: one transaction with their audit record, bound to a content hash,
never changed; release and rejection of held jobs under the two-person rule."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from labdevices.errors import BadRequest, Forbidden, JobRejected, TooLarge
from labdevices.store import (
    ContentMismatch,
    JobRecord,
    JobState,
    SqliteDatabase,
    open_database,
    row_sha256,
    verify_audit,
)

from ._tamper import RAW_ERRORS, raw


@pytest.fixture
def db(db_path: str | Path) -> Iterator[SqliteDatabase]:
    with open_database(db_path) as store:
        yield _with_users(store)


def _with_users(store: SqliteDatabase) -> SqliteDatabase:
    for user, name, roles in (
        ("olivia", "Olivia Operator", ["operator"]),
        ("sam", "Sam Supervisor", ["supervisor"]),
        ("sara", "Sara Supervisor", ["supervisor"]),
        ("vic", "Vic Viewer", ["viewer"]),
    ):
        store.add_user(user, name, roles, by="admin", reason="test")
    return store


def held_job(db: SqliteDatabase, actor: str = "olivia") -> JobRecord:
    return db.create_job(
        "printer", actor=actor, gcode="G28\nG1 X1\n", lines_total=2, release_required=True
    )


def test_a_signature_is_written_with_its_audit_record_and_cannot_change(
    db: SqliteDatabase, db_path: str | Path
) -> None:
    job = held_job(db)
    assert job.state is JobState.HELD and job.content_sha256
    result = db.add_signature(f"job/{job.id}", "sam", "released", "ok", job.content_sha256)
    sig = result.signature
    assert (sig.full_name, sig.meaning, sig.content_sha256) == (
        "Sam Supervisor",
        "released",
        job.content_sha256,
    )
    assert sig.time.endswith("Z")
    assert result.job is not None and result.job.state is JobState.QUEUED
    [rec] = db.audit_records(object=f"signature/{sig.id}")
    assert rec.action == "record.sign" and rec.actor == "sam" and rec.reason == "ok"
    cur = db._db.execute("SELECT * FROM signatures WHERE id = ?", (sig.id,))
    row = dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))
    assert rec.row_sha256 == row_sha256("signatures", row)
    assert json.loads(rec.new or "{}")["content_sha256"] == job.content_sha256
    assert db.list_signatures(f"job/{job.id}") == [sig]
    assert [e.kind for e in db.get_job(job.id).events] == ["created", "signature", "state"]
    db.close()
    with raw(db_path) as raw_db:
        with pytest.raises(RAW_ERRORS, match="signatures cannot change"):
            raw_db.execute("UPDATE signatures SET meaning = 'rejected'")
        with pytest.raises(RAW_ERRORS, match="signatures cannot be deleted"):
            raw_db.execute("DELETE FROM signatures")
    assert verify_audit(db_path).ok


@pytest.mark.parametrize(
    ("user", "meaning", "comment", "content", "error", "match"),
    [
        ("sam", "approved", None, None, BadRequest, "meaning must be one of"),
        ("sam", "released", "x" * 1025, None, TooLarge, "1024 bytes"),
        ("nobody", "reviewed", None, None, Forbidden, "no user 'nobody'"),
        ("sam", "released", None, "f" * 64, ContentMismatch, "not the job's current content"),
        ("vic", "reviewed", None, None, Forbidden, "record.sign"),
        ("olivia", "released", None, None, Forbidden, r"job\.release"),
        ("olivia", "rejected", None, None, Forbidden, r"job\.release"),
    ],
)
def test_a_refused_signature_writes_nothing(
    db: SqliteDatabase,
    user: str,
    meaning: str,
    comment: str | None,
    content: str | None,
    error: type[Exception],
    match: str,
) -> None:
    job = held_job(db)
    before = len(db.audit_records())
    with pytest.raises(error, match=match):
        db.add_signature(f"job/{job.id}", user, meaning, comment, content or job.content_sha256)
    assert db.list_signatures(f"job/{job.id}") == []
    assert len(db.audit_records()) == before
    assert db.get_job(job.id).state is JobState.HELD


def test_two_person_rule_and_one_release_decision(db: SqliteDatabase) -> None:
    job = held_job(db, actor="sam")
    content = job.content_sha256
    assert content is not None
    with pytest.raises(Forbidden, match="two-person rule"):
        db.add_signature(f"job/{job.id}", "sam", "approved for printing", None, content)
    db.add_signature(f"job/{job.id}", "sam", "reviewed", None, content)  # allowed: no release
    assert db.get_job(job.id).state is JobState.HELD
    released = db.add_signature(f"job/{job.id}", "sara", "approved for printing", None, content)
    assert released.job is not None and released.job.state is JobState.QUEUED
    with pytest.raises(JobRejected, match="already released or rejected"):
        db.add_signature(f"job/{job.id}", "sara", "rejected", None, content)
    # a job that needs no release can still be signed; it does not change state
    plain = db.create_job("printer", actor="olivia", gcode="G28\n", lines_total=1)
    assert plain.content_sha256 is not None
    reviewed = db.add_signature(f"job/{plain.id}", "sam", "reviewed", None, plain.content_sha256)
    assert reviewed.job is not None and reviewed.job.state is JobState.QUEUED
    with pytest.raises(BadRequest, match="only jobs can be signed"):
        db.add_signature("alarm/1", "sam", "reviewed", None, content)


def test_rejection_cancels_a_held_job(db: SqliteDatabase) -> None:
    job = held_job(db)
    assert job.content_sha256 is not None
    result = db.add_signature(f"job/{job.id}", "sam", "rejected", "wrong lot", job.content_sha256)
    assert result.job is not None and result.job.state is JobState.CANCELLED
    [*_, last] = db.audit_records(object=f"job/{job.id}")
    assert last.actor == "sam" and last.reason == "rejected by signature 1: wrong lot"

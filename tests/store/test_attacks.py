"""Deliberate attacks on the store, as someone with write access to it (but not the daemon's
private key, nor the witness kept elsewhere) would make them: plain sqlite3 on the file, or
psql-like SQL as a PostgreSQL superuser (triggers off for the session, or dropped), hashes
recomputed with hashlib so that every forgery is "valid" where the attack says so, no
labdevices code.

Each attack must make ``labdevices audit verify --key PUB --witness FILE`` exit 1 naming the
table and row; the untouched store verifies (exit 0).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import labdevices.cli._proof  # noqa: F401  (registers the commands)
from labdevices.cli import app

from ._tamper import GUARDS, is_postgres, put_back, raw, save_copy
from .conftest import Location, Signed

runner = CliRunner()
GENESIS = "0" * 64
#: a plain connection: ``sqlite3.Connection`` or the psycopg one of ``_tamper.raw``
Conn = Any


# -- the attacker's tools: the published formats, re-implemented ---------------------------


def canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(r: dict[str, Any]) -> str:
    body = {k: r[k] for k in ("seq", "time", "actor", "action", "object", "reason", "prev_hash")}
    body["old"], body["new"] = r["old_value"], r["new_value"]
    if r["row_sha256"] is not None:
        body["row_sha256"] = r["row_sha256"]
    return hashlib.sha256(canon(body).encode()).hexdigest()


def row_hash(table: str, row: dict[str, Any]) -> str:
    body = {k: v for k, v in row.items() if not (table == "jobs" and k == "last_ack_line")}
    return hashlib.sha256(canon({"table": table, "row": body}).encode()).hexdigest()


@contextmanager
def connect(db: Location) -> Iterator[Conn]:
    # the guards stop accidents, not someone with the file or a superuser's psql
    with raw(db, guards_off=GUARDS) as conn:
        yield conn


def rechain(conn: Conn) -> None:
    """Renumber the records 1..n and recompute every hash and the head: a self-consistent chain."""
    rows = [dict(r) for r in conn.execute("SELECT * FROM audit ORDER BY seq")]
    conn.execute("DELETE FROM audit")
    prev = GENESIS
    for seq, r in enumerate(rows, 1):
        r["seq"], r["prev_hash"] = seq, prev
        r["hash"] = prev = record_hash(r)
        cols = ", ".join(r)
        conn.execute(
            f"INSERT INTO audit ({cols}) VALUES ({', '.join('?' * len(r))})", list(r.values())
        )
    conn.execute("UPDATE audit_head SET seq = ?, hash = ?", (len(rows), prev))


def restore_triggers(db: Location, source: Path) -> None:
    """Put the dropped guards back (copied from an untouched store), so only the data differs.
    (PostgreSQL: they were only off for the attacker's session.)"""
    if is_postgres(db):
        return
    src = sqlite3.connect(source)
    sqls = [r[0] for r in src.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger'")]
    src.close()
    conn = sqlite3.connect(db, isolation_level=None)
    for sql in sqls:
        name = sql.split()[2]
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
        conn.execute(sql)
    conn.close()


def verify(s: Signed, *extra: str) -> tuple[int, str]:
    result = runner.invoke(
        app,
        [
            "audit",
            "verify",
            "--db",
            str(s.db),
            "--key",
            str(s.key),
            "--witness",
            str(s.witness),
            *extra,
        ],
    )
    return result.exit_code, result.output


# -- the attacks ----------------------------------------------------------------------------


def edit_and_rechain(conn: Conn) -> None:
    conn.execute(
        "UPDATE audit SET actor = 'mallory' WHERE action = 'job.create' AND object = 'job/1'"
    )
    rechain(conn)


def delete_middle_and_rechain(conn: Conn) -> None:
    conn.execute("DELETE FROM audit WHERE action = 'alarm.acknowledge'")
    rechain(conn)


def cut_tail(conn: Conn) -> None:
    last = conn.execute("SELECT MAX(seq) FROM audit").fetchone()[0]
    conn.execute("DELETE FROM audit WHERE seq > ?", (last - 3,))
    row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    conn.execute("UPDATE audit_head SET seq = ?, hash = ?", (row[0], row[1]))


def cut_tail_and_checkpoints(conn: Conn) -> None:
    cut_tail(conn)
    size = conn.execute("SELECT seq FROM audit_head").fetchone()[0]
    conn.execute("DELETE FROM checkpoints WHERE size > ?", (size,))


def wipe(conn: Conn) -> None:
    for table in (
        "audit",
        "checkpoints",
        "job_events",
        "job_gcode",
        "jobs",
        "alarms",
        "signatures",
        "sessions",
        "users",
        "telemetry",
        "telemetry_blocks",
    ):
        conn.execute(f"DELETE FROM {table}")
    conn.execute("UPDATE audit_head SET seq = 0, hash = ?", (GENESIS,))


def forge_approval(conn: Conn) -> None:
    head = conn.execute("SELECT seq, hash FROM audit_head").fetchone()
    r = {
        "seq": head[0] + 1,
        "time": "2026-11-26T15:00:00.000000Z",
        "actor": "carol",
        "action": "job.approve",
        "object": "job/2",
        "old_value": None,
        "new_value": canon({"approved": True}),
        "reason": "ok",
        "prev_hash": head[1],
        "row_sha256": None,
    }
    r["hash"] = record_hash(r)
    cols = ", ".join(r)
    conn.execute(f"INSERT INTO audit ({cols}) VALUES ({', '.join('?' * len(r))})", list(r.values()))
    conn.execute("UPDATE audit_head SET seq = ?, hash = ?", (r["seq"], r["hash"]))


def job_completed(conn: Conn) -> None:
    conn.execute(
        "UPDATE jobs SET state = 'completed', error = NULL, patient_id = 'P-99' WHERE id = 2"
    )


def job_completed_rechained(conn: Conn) -> None:
    """The job edited AND its last audit record's row hash made to match, chain recomputed."""
    job_completed(conn)
    row = dict(conn.execute("SELECT * FROM jobs WHERE id = 2").fetchone())
    seq = conn.execute(
        "SELECT MAX(seq) FROM audit WHERE object = 'job/2' AND row_sha256 IS NOT NULL"
    ).fetchone()[0]
    conn.execute("UPDATE audit SET row_sha256 = ? WHERE seq = ?", (row_hash("jobs", row), seq))
    rechain(conn)


def telemetry_overwritten(conn: Conn) -> None:
    conn.execute("UPDATE telemetry SET value = '21.5' WHERE block = 2")


def telemetry_block_recomputed(conn: Conn) -> None:
    telemetry_overwritten(conn)
    h = hashlib.sha256()
    for r in conn.execute(
        "SELECT device, signal, t, value, unit, quality FROM telemetry WHERE block = 2 ORDER BY rowid"
    ):
        h.update(json.dumps(list(r), separators=(",", ":"), ensure_ascii=False).encode() + b"\n")
    conn.execute("UPDATE telemetry_blocks SET sha256 = ? WHERE id = 2", (h.hexdigest(),))


def events_deleted(conn: Conn) -> None:
    conn.execute("DELETE FROM job_events WHERE job_id = 2 AND kind = 'note'")


def triggers_dropped(conn: Conn) -> None:
    if isinstance(conn, sqlite3.Connection):
        return  # connect() already dropped them
    for guard in GUARDS:
        table = guard.split("_no_")[0]
        conn.execute(f"DROP TRIGGER {guard} ON {table}")


def alarm_edited(conn: Conn) -> None:
    conn.execute("UPDATE alarms SET acknowledged_by = 'mallory' WHERE id = 1")


def user_promoted(conn: Conn) -> None:
    conn.execute("UPDATE users SET roles = '[\"admin\"]' WHERE id = 'alice'")


def user_inserted(conn: Conn) -> None:
    conn.execute(
        "INSERT INTO users (id, full_name, roles, created_at) VALUES ('mallory', 'M', '[\"admin\"]', 0)"
    )


def signature_edited(conn: Conn) -> None:
    conn.execute("UPDATE signatures SET meaning = 'rejected' WHERE id = 1")


def signature_deleted(conn: Conn) -> None:
    conn.execute("DELETE FROM signatures WHERE id = 1")


def block_deleted(conn: Conn) -> None:
    conn.execute("DELETE FROM telemetry WHERE block = 3")
    conn.execute("DELETE FROM telemetry_blocks WHERE id = 3")


def gcode_edited(conn: Conn) -> None:
    conn.execute("UPDATE job_gcode SET gcode = 'G28\nG1 X99\nM400\n' WHERE job_id = 1")


def gcode_deleted(conn: Conn) -> None:
    conn.execute("DELETE FROM job_gcode WHERE job_id = 1")


def job_deleted(conn: Conn) -> None:
    conn.execute("DELETE FROM job_events WHERE job_id = 1")
    conn.execute("DELETE FROM job_gcode WHERE job_id = 1")
    conn.execute("DELETE FROM jobs WHERE id = 1")


def job_inserted(conn: Conn) -> None:
    conn.execute(
        "INSERT INTO jobs (printer, state, created_at, batch_id) VALUES ('printer1', 'completed', 0, 'B-X')"
    )


def checkpoint_edited(conn: Conn) -> None:
    note = conn.execute("SELECT note FROM checkpoints WHERE id = 3").fetchone()[0]
    lines = note.split("\n")
    lines[1] = str(int(lines[1]) - 1)
    conn.execute("UPDATE checkpoints SET note = ? WHERE id = 3", ("\n".join(lines),))


def head_deleted(conn: Conn) -> None:
    conn.execute("DELETE FROM audit_head")


ATTACKS: list[tuple[str, Callable[[Conn], None], bool, list[str]]] = [
    # (name, attack, put the triggers back afterwards, what the report must name)
    (
        "edit a record, recompute every later hash and audit_head",
        edit_and_rechain,
        True,
        ["audit seq 1–", "rewritten"],
    ),
    (
        "delete a middle record, renumber, recompute",
        delete_middle_and_rechain,
        True,
        ["audit seq", "rewritten"],
    ),
    ("delete the last records, head at the new last", cut_tail, True, ["audit seq", "deleted"]),
    (
        "... and the checkpoints that covered them",
        cut_tail_and_checkpoints,
        True,
        ["checkpoints row", "the witness holds checkpoint"],
    ),
    (
        "delete every record, reset the head to genesis",
        wipe,
        True,
        ["checkpoints row 1: missing", "audit seq 1–"],
    ),
    (
        "append a forged job.approve record with a valid hash",
        forge_approval,
        True,
        ["audit seq", "appended after the store was closed"],
    ),
    (
        "an interrupted job made completed, its patient id changed",
        job_completed,
        True,
        ["jobs row 2: changed"],
    ),
    (
        "... with its audit record's row hash forged and the chain recomputed",
        job_completed_rechained,
        True,
        ["audit seq", "rewritten"],
    ),
    ("telemetry values overwritten", telemetry_overwritten, True, ["telemetry block 2"]),
    (
        "... and the block digest recomputed",
        telemetry_block_recomputed,
        True,
        ["telemetry_blocks row 2: changed"],
    ),
    ("job events deleted", events_deleted, True, ["job_events job 2"]),
    (
        "the append-only triggers dropped",
        triggers_dropped,
        False,
        ["{guards} trigger audit_no_update", "{guards} trigger checkpoints_no_delete"],
    ),
    ("an alarm's acknowledgement rewritten", alarm_edited, True, ["alarms row 1: changed"]),
    ("a user given the admin role", user_promoted, True, ["users row alice: changed"]),
    ("a user inserted", user_inserted, True, ["users row mallory: has no audit record"]),
    ("a signature's meaning changed", signature_edited, True, ["signatures row 1: changed"]),
    ("a signature deleted", signature_deleted, True, ["signatures row 1: deleted"]),
    ("a telemetry block deleted", block_deleted, True, ["telemetry_blocks row 3: deleted"]),
    ("a job's G-code changed", gcode_edited, True, ["job_gcode row 1"]),
    ("a job's G-code deleted", gcode_deleted, True, ["job_gcode row 1: deleted"]),
    ("a job deleted with its events and G-code", job_deleted, True, ["jobs row 1: deleted"]),
    ("a job inserted", job_inserted, True, ["jobs row 3: has no audit record"]),
    (
        "a checkpoint's note edited",
        checkpoint_edited,
        True,
        ["checkpoints row 3: invalid checkpoint", "checkpoints row 3: differs from the witness"],
    ),
    ("audit_head deleted", head_deleted, True, ["audit_head row 1: deleted"]),
]


def test_untouched_store_verifies(signed: Signed) -> None:
    code, out = verify(signed)
    assert code == 0, out
    assert "verified" in out and "TAMPERED" not in out
    assert "not yet anchored" not in out


@pytest.mark.parametrize(
    ("attack", "restore", "expected"),
    [pytest.param(fn, restore, expected, id=name) for name, fn, restore, expected in ATTACKS],
)
def test_attack_is_reported(
    signed: Signed,
    tmp_path: Path,
    attack: Callable[[Conn], None],
    restore: bool,
    expected: list[str],
) -> None:
    save_copy(signed.db, "pristine")
    with connect(signed.db) as conn:
        conn.execute("BEGIN")
        attack(conn)
        conn.execute("COMMIT")
    if restore:
        restore_triggers(signed.db, Path(f"{signed.db}.pristine"))
    code, out = verify(signed)
    assert code == 1, out
    assert "TAMPERED" in out
    guards = "pg_trigger" if is_postgres(signed.db) else "sqlite_master"
    for text in expected:
        text = text.format(guards=guards)
        assert text in out, f"{text!r} not in:\n{out}"


def test_rollback_to_an_older_consistent_copy_is_caught_by_the_witness(
    signed: Signed, tmp_path: Path
) -> None:
    """A copy of the store taken earlier (consistent with an older checkpoint) put back."""
    save_copy(signed.db, "old")
    from labdevices.store import CheckpointSigner, load_or_create_signing_key

    signer = CheckpointSigner(load_or_create_signing_key(signed.private), "labdevices/lab1")
    with signed.open(signer) as db:
        db.audit("alice", "setpoint.write", "device/incubator1/temperature", old=36.5, new=37.0)
    shutil.copy(signed.live_witness, signed.witness)  # the witness kept up
    put_back(signed.db, "old")
    code, out = verify(signed)
    assert code == 1, out
    assert "the witness holds checkpoint" in out
    # Without the witness the old copy is consistent in itself: what the witness is for.
    result = runner.invoke(
        app,
        [
            "audit",
            "verify",
            "--db",
            str(signed.db),
            "--key",
            str(signed.key),
            "--witness",
            str(tmp_path / "none.jsonl"),
        ],
    )
    assert result.exit_code == 2  # a witness file that is not there is an error, not a pass


def test_a_forged_key_is_refused(signed: Signed, tmp_path: Path) -> None:
    """Checkpoints re-signed with another key (the attacker's) do not verify with the real one."""
    from labdevices.store import CheckpointSigner, load_or_create_signing_key

    save_copy(signed.db, "pristine")
    with connect(signed.db) as conn:
        conn.execute("DELETE FROM checkpoints")
    restore_triggers(signed.db, Path(f"{signed.db}.pristine"))
    mallory = CheckpointSigner(
        load_or_create_signing_key(tmp_path / "mallory.key"), "labdevices/lab1"
    )
    signed.live_witness.unlink()
    with signed.open(mallory) as db:
        db.audit("mallory", "job.approve", "job/2")
    code, out = verify(signed)
    assert code == 1, out
    assert "checkpoints row 1: invalid checkpoint: not signed by the given key" in out


def test_every_problem_is_listed_not_only_the_first(signed: Signed, tmp_path: Path) -> None:
    save_copy(signed.db, "pristine")
    with connect(signed.db) as conn:
        alarm_edited(conn)
        user_promoted(conn)
        telemetry_overwritten(conn)
    restore_triggers(signed.db, Path(f"{signed.db}.pristine"))
    code, out = verify(signed, "--json")
    assert code == 1
    report = json.loads(out)
    named = {(p["table"], p["row"]) for p in report["problems"]}
    assert {("alarms", "row 1"), ("users", "row alice"), ("telemetry", "block 2")} <= named

"""The audit chain: verifies after mixed operations; every kind of hand edit is found and named."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from labdevices.devices import Sample
from labdevices.store import (
    GENESIS_HASH,
    JobState,
    Store,
    StoreError,
    canonical_json,
    record_hash,
    verify_audit,
)

from ._tamper import RAW_ERRORS, is_postgres, raw, tamper


async def test_chain_verifies_after_many_mixed_operations(
    store: Store, db_path: str | Path
) -> None:
    expected = 0
    await store.record_config_load("config/demo.toml", "cd" * 32)
    expected += 1
    for i in range(20):
        job = await store.create_job("printer1", actor="alice", batch_id=f"B{i}", lines_total=10)
        await store.transition_job(job.id, "running", actor="daemon")
        await store.record_progress(job.id, 5)
        await store.insert_telemetry(
            [
                Sample("printer1", "head_temp", 25.0 + j, "degC", t=1000.0 + i * 10 + j)
                for j in range(5)
            ]
        )
        final = [JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED][i % 3]
        await store.transition_job(job.id, final, actor="daemon", error="x" if i % 3 == 1 else None)
        alarm = await store.raise_alarm("printer1", f"a{i}", "warning")
        await store.acknowledge_alarm(alarm.id, user="bob")
        await store.audit("bob", "setpoint", "inc/temp", old=37.0, new=37.0 + i / 10, reason="ramp")
        expected += 7  # create, 2 transitions, a telemetry block, raise, ack, setpoint
    result = await store.verify()
    assert result.ok, result.message
    assert result.records == result.head_seq == expected
    records = await store.audit_records()
    assert [r.seq for r in records] == list(range(1, expected + 1))
    assert records[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))
    assert verify_audit(db_path) == result


def test_record_hash_covers_every_field_and_the_previous_hash() -> None:
    base = dict(
        seq=1,
        time="t",
        actor="a",
        action="x",
        object="o",
        old=None,
        new="1",
        reason=None,
        prev_hash=GENESIS_HASH,
    )
    h = record_hash(**base)  # type: ignore[arg-type]
    for key, other in [
        ("seq", 2),
        ("time", "u"),
        ("actor", "b"),
        ("action", "y"),
        ("object", "p"),
        ("old", "0"),
        ("new", "2"),
        ("reason", "r"),
        ("prev_hash", "1" * 64),
    ]:
        assert record_hash(**{**base, key: other}) != h, key  # type: ignore[arg-type]
    assert canonical_json({"b": 1, "a": [1.5, "é"]}) == '{"a":[1.5,"é"],"b":1}'
    with pytest.raises(StoreError, match="finite"):
        canonical_json({"v": float("nan")})


def test_intact_store_verifies(filled: str | Path) -> None:
    result = verify_audit(filled)
    assert result.ok
    assert result.records == 12
    assert result.first_bad_seq is None


def test_edited_record_is_named(filled: str | Path) -> None:
    tamper(filled, "UPDATE audit SET new_value = '36.0' WHERE seq = 10")
    result = verify_audit(filled)
    assert not result.ok
    assert (result.first_bad_seq, result.problem) == (10, "edited")
    assert "record 10 was edited" in result.message
    assert "incubator1/temperature" in result.message
    assert result.head_seq == 9  # records 1-9 still proven


def test_edit_of_a_job_row_actor_is_named(filled: str | Path) -> None:
    tamper(filled, "UPDATE audit SET actor = 'mallory' WHERE seq = 4")
    result = verify_audit(filled)
    assert (result.ok, result.first_bad_seq, result.problem) == (False, 4, "edited")


def test_deleted_record_is_named(filled: str | Path) -> None:
    tamper(filled, "DELETE FROM audit WHERE seq = 7")
    result = verify_audit(filled)
    assert (result.ok, result.first_bad_seq, result.problem) == (False, 7, "deleted")
    assert "record 7 deleted" in result.message


def test_several_deleted_records_are_named(filled: str | Path) -> None:
    tamper(filled, "DELETE FROM audit WHERE seq BETWEEN 3 AND 5")
    result = verify_audit(filled)
    assert (result.first_bad_seq, result.problem) == (3, "deleted")
    assert "records 3–5 deleted" in result.message


def test_records_cut_from_the_end_are_named(filled: str | Path) -> None:
    tamper(filled, "DELETE FROM audit WHERE seq >= 11")
    result = verify_audit(filled)
    assert (result.ok, result.first_bad_seq, result.problem) == (False, 11, "truncated")
    assert "records 11–12 deleted from the end" in result.message


def test_reordered_records_are_named(filled: str | Path) -> None:
    # Swap two records' contents, keeping seq in place: what reordering rows looks like.
    cols = "time, actor, action, object, old_value, new_value, reason, prev_hash, hash, row_sha256"
    tamper(
        filled,
        "CREATE TEMP TABLE a5 AS SELECT * FROM audit WHERE seq = 5",
        "CREATE TEMP TABLE a6 AS SELECT * FROM audit WHERE seq = 6",
        f"UPDATE audit SET ({cols}) = (SELECT {cols} FROM a6) WHERE seq = 5",
        f"UPDATE audit SET ({cols}) = (SELECT {cols} FROM a5) WHERE seq = 6",
    )
    result = verify_audit(filled)
    assert (result.ok, result.first_bad_seq, result.problem) == (False, 5, "reordered")
    assert "holds the content of record 6" in result.message


def test_renumbered_records_are_named_reordered(filled: str | Path) -> None:
    tamper(
        filled,
        "UPDATE audit SET seq = 100 WHERE seq = 8",
        "UPDATE audit SET seq = 8 WHERE seq = 9",
        "UPDATE audit SET seq = 9 WHERE seq = 100",
    )
    result = verify_audit(filled)
    assert (result.first_bad_seq, result.problem) == (8, "reordered")
    assert "holds the content of record 9" in result.message


def test_rewritten_record_with_recomputed_hash_breaks_the_next_link(filled: str | Path) -> None:
    with raw(filled) as conn:
        row = conn.execute(
            "SELECT seq, time, actor, action, object, old_value, reason, prev_hash FROM audit"
            " WHERE seq = 10"
        ).fetchone()
    seq, t, actor, action, obj, old, reason, prev = row
    forged = record_hash(
        seq=seq,
        time=t,
        actor=actor,
        action=action,
        object=obj,
        old=old,
        new="30.0",
        reason=reason,
        prev_hash=prev,
    )
    tamper(filled, f"UPDATE audit SET new_value = '30.0', hash = '{forged}' WHERE seq = 10")
    result = verify_audit(filled)
    assert (result.ok, result.first_bad_seq, result.problem) == (False, 11, "inserted")
    assert "record 10 rewritten" in result.message


def test_forged_last_record_is_caught_by_the_head(filled: str | Path) -> None:
    with raw(filled) as conn:
        row = conn.execute(
            "SELECT seq, time, actor, action, object, old_value, reason, prev_hash FROM audit"
            " WHERE seq = 12"
        ).fetchone()
    seq, t, _actor, action, obj, old, reason, prev = row
    forged = record_hash(
        seq=seq,
        time=t,
        actor="mallory",
        action=action,
        object=obj,
        old=old,
        new=None,
        reason=reason,
        prev_hash=prev,
    )
    tamper(
        filled,
        f"UPDATE audit SET actor = 'mallory', new_value = NULL, hash = '{forged}' WHERE seq = 12",
    )
    result = verify_audit(filled)
    assert (result.ok, result.first_bad_seq, result.problem) == (False, 12, "edited")


def test_audit_rows_are_append_only_through_sql(filled: str | Path) -> None:
    with raw(filled) as conn:
        with pytest.raises(RAW_ERRORS, match="append-only"):
            conn.execute("UPDATE audit SET actor = 'x' WHERE seq = 1")
        with pytest.raises(RAW_ERRORS, match="append-only"):
            conn.execute("DELETE FROM audit WHERE seq = 1")
        if is_postgres(filled):
            with pytest.raises(RAW_ERRORS, match="append-only"):
                conn.execute("TRUNCATE audit")
    assert verify_audit(filled).ok


def test_verify_names_a_missing_or_corrupt_file(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.db"
    with pytest.raises(StoreError, match=r"nothing\.db: no store here"):
        verify_audit(missing)
    assert not missing.exists()  # verify never creates a store
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"junk\.db: not a labdevices store"):
        verify_audit(junk)
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(StoreError, match=r"empty\.db: not a labdevices store"):
        verify_audit(empty)


def test_verify_names_an_empty_postgresql_database(postgres_url: str) -> None:
    with pytest.raises(StoreError, match=r"/lab\w+: not a labdevices store"):
        verify_audit(postgres_url)


async def test_a_failing_audit_append_writes_nothing(store: Store, db_path: str | Path) -> None:
    job = await store.create_job("printer1", actor="alice")
    # A guard the test adds: the audit insert of the transition fails inside the transaction.
    with raw(db_path) as conn:
        if is_postgres(db_path):
            conn.execute(
                "CREATE FUNCTION fail() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN RAISE EXCEPTION 'disk says no'; END $$"
            )
            conn.execute(
                "CREATE TRIGGER fail_transition BEFORE INSERT ON audit FOR EACH ROW"
                " WHEN (NEW.action = 'job.transition') EXECUTE FUNCTION fail()"
            )
        else:
            conn.execute(
                "CREATE TRIGGER fail_transition BEFORE INSERT ON audit"
                " WHEN NEW.action = 'job.transition'"
                " BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
            )
    with pytest.raises(StoreError, match="disk says no"):
        await store.transition_job(job.id, "running", actor="daemon")
    after = await store.get_job(job.id)
    assert after.state is JobState.QUEUED
    assert [e.kind for e in after.events] == ["created"]
    assert (await store.verify()).records == 1
    with pytest.raises(StoreError, match="not JSON-serialisable"):
        await store.audit("alice", "command", "x", new={"bad": object()})
    assert (await store.verify()).records == 1

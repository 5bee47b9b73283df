"""Telemetry retention under the proof: roll-ups and removals verify; anything else does not.

Every test runs on an SQLite file and on a PostgreSQL database (``db_path``, see conftest)."""

from __future__ import annotations

import hashlib
import math
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from labdevices.devices import Sample
from labdevices.store import (
    CheckpointSigner,
    RetentionPolicy,
    StoreError,
    default_key_path,
    load_or_create_signing_key,
    load_public_key,
    open_database,
    open_store,
    run_retention,
    verify_store,
)
from labdevices.store._paths import local_stand_in

from ._tamper import is_postgres, raw, tamper
from .conftest import Location, write_history

DAY = 86_400.0
NOW = time.time()  # "now" for the runs: write_history's 3 blocks are this recent
OLD = NOW - 10 * DAY  # the samples' time: ten days before it


def _signer(db: Location) -> CheckpointSigner:
    return CheckpointSigner(load_or_create_signing_key(default_key_path(db)), "labdevices/lab1")


def _public(db: Location) -> Path:
    key = default_key_path(db)
    return key.with_name(key.name + ".pub")


def _archive_dir(db: Location) -> Path:
    """Where a run writes its archive by default: beside the file, or for a URL beside its key."""
    stand_in = local_stand_in(db)
    return stand_in.with_name(stand_in.name + ".archive")


def _number(db: Location, value: float) -> str:
    """A number as SQL for a telemetry value (a JSON column on PostgreSQL)."""
    return f"'{value}'" if is_postgres(db) else str(value)


def _samples(block: int, t0: float) -> list[Sample]:
    """Two devices, two signals, 60 samples 0.5 s apart per block (so blocks straddle minutes)."""
    out = []
    for k in range(60):
        t = t0 + block * 30 + k * 0.5
        out += [
            Sample("incubator1", "temperature", 37.0 + (k % 7) / 10, "degC", t=t),
            Sample("incubator1", "door", k % 2 == 0, "", t=t),
            Sample("bioreactor1", "ph", 7.0 + k / 100, "", t=t),
        ]
    return out


@pytest.fixture
def lab(db_path: Location) -> Location:
    """A signed, closed store: jobs, alarms, users, a signature and 20 blocks of old telemetry."""
    with open_database(db_path, signer=_signer(db_path), checkpoint_every_records=8) as db:
        write_history(db)
        for block in range(20):
            db.insert_telemetry(_samples(block, OLD))
    return db_path


def _verify(db_path: Location, **kw: object) -> list[str]:
    public = load_public_key(_public(db_path))
    report = verify_store(db_path, public_key=public, **kw)  # type: ignore[arg-type]
    return [str(p) for p in report.problems]


def _rows(db_path: Location, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with raw(db_path) as conn:
        return [tuple(r) for r in conn.execute(sql, args).fetchall()]


def _count(db_path: Location, sql: str) -> int:
    return int(_rows(db_path, sql)[0][0])


def _records(db_path: Location) -> dict[str, list[tuple[object, ...]]]:
    return {
        t: _rows(db_path, f"SELECT * FROM {t} ORDER BY 1")
        for t in ("jobs", "job_events", "alarms", "users", "signatures", "checkpoints")
    }


def _run(db_path: Location, policy: RetentionPolicy, **kw: object) -> object:
    return run_retention(
        db_path,
        policy,
        now=NOW,
        signer=_signer(db_path),
        step_blocks=7,
        **kw,  # type: ignore[arg-type]
    )


def test_roll_up_then_verify_passes_and_records_are_untouched(lab: Location) -> None:
    before = _records(lab)
    audit_before = _count(lab, "SELECT MAX(seq) FROM audit")
    summary = _run(lab, RetentionPolicy(raw_days=1))
    assert summary.samples == 20 * 180  # type: ignore[attr-defined]
    assert summary.blocks_removed == 20 and summary.blocks_trimmed == 0  # type: ignore[attr-defined]
    assert len(summary.removals) == 3  # type: ignore[attr-defined]  # steps of 7 blocks
    # write_history's three recent blocks stay
    assert _count(lab, "SELECT COUNT(*) FROM telemetry") == 15
    assert _count(lab, "SELECT COUNT(*) FROM telemetry_blocks") == 3
    assert _count(lab, "SELECT SUM(count) FROM telemetry_rollups") == 20 * 180
    assert _verify(lab) == []
    # Audit records, jobs and their events, alarms, users, signatures and checkpoints: kept.
    after = _records(lab)
    assert {t: after[t] for t in before if t != "checkpoints"} == {
        t: before[t] for t in before if t != "checkpoints"
    }
    assert after["checkpoints"][: len(before["checkpoints"])] == before["checkpoints"]
    actions = [r[0] for r in _rows(lab, "SELECT action FROM audit WHERE seq > ?", (audit_before,))]
    assert actions.count("telemetry.rollup") == 3
    assert "telemetry.trim" not in actions


def test_a_raw_block_deleted_by_hand_fails_verify(lab: Location) -> None:
    tamper(
        lab, "DELETE FROM telemetry WHERE block = 9", "DELETE FROM telemetry_blocks WHERE id = 9"
    )
    assert any("telemetry_blocks row 9: deleted" in p for p in _verify(lab))
    # ...also once retention removed its neighbours legitimately
    _run(lab, RetentionPolicy(raw_days=1))
    assert _count(lab, "SELECT COUNT(*) FROM telemetry_blocks WHERE id BETWEEN 4 AND 23") == 0
    problems = _verify(lab)
    deleted = [p for p in problems if "deleted" in p]
    assert len(deleted) == 1 and deleted[0].startswith("telemetry_blocks row 9: deleted")


def test_a_removed_block_put_back_or_a_removal_record_edited_fails(lab: Location) -> None:
    _run(lab, RetentionPolicy(raw_days=1))
    tamper(lab, "UPDATE telemetry_removals SET blocks = '[[4,9]]' WHERE id = 1")
    problems = _verify(lab)
    assert any("telemetry_removals row 1: changed" in p for p in problems)
    assert any("telemetry_blocks row 10: deleted" in p for p in problems)


def test_a_tampered_rollup_fails_verify(lab: Location) -> None:
    _run(lab, RetentionPolicy(raw_days=1))
    on = " ON telemetry_rollups" if is_postgres(lab) else ""
    with raw(lab) as conn:
        conn.execute(f"DROP TRIGGER telemetry_rollups_no_update{on}")
        conn.execute("UPDATE telemetry_rollups SET max = max + 0.5 WHERE id = 3")
    problems = _verify(lab)
    assert any("telemetry_rollups removal 1: roll-up rows were edited" in p for p in problems)
    assert any("trigger telemetry_rollups_no_update" in p for p in problems)


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM telemetry_rollups WHERE id = 2",
        "INSERT INTO telemetry_rollups (removal, device, signal, minute, unit, count, numeric,"
        " min, mean, max, t_first, t_last) VALUES (2, 'incubator1', 'temperature', 60, 'degC',"
        " 1, 1, 5, 5, 5, 61, 61)",
        "INSERT INTO telemetry_rollups (removal, device, signal, minute, unit, count, numeric,"
        " min, mean, max, t_first, t_last) VALUES (99, 'incubator1', 'temperature', 60, 'degC',"
        " 1, 1, 5, 5, 5, 61, 61)",
    ],
)
def test_a_rollup_deleted_or_inserted_fails_verify(lab: Location, sql: str) -> None:
    _run(lab, RetentionPolicy(raw_days=1))
    tamper(lab, sql)
    assert any(p.startswith("telemetry_rollups removal") for p in _verify(lab))


def test_a_tampered_block_is_never_removed(lab: Location) -> None:
    tamper(
        lab, f"UPDATE telemetry SET value = {_number(lab, 99)} WHERE block = 12 AND signal = 'ph'"
    )
    with pytest.raises(StoreError, match="telemetry block 12 does not match its audit record"):
        _run(lab, RetentionPolicy(raw_days=1))
    assert _count(lab, "SELECT COUNT(*) FROM telemetry WHERE block = 12") == 180  # evidence kept
    assert not _archive_dir(lab).exists()  # found before anything was written
    # A block inserted outside the store (no audit record) stops it as well.
    tamper(
        lab,
        f"UPDATE telemetry SET value = {_number(lab, 7.0)} WHERE block = 12 AND signal = 'ph'",
        "INSERT INTO telemetry_blocks (id, count, t_first, t_last, sha256)"
        f" VALUES (2000, 0, {OLD}, {OLD}, 'x')",
    )
    with pytest.raises(StoreError, match=r"telemetry block (12|2000) does not match"):
        _run(lab, RetentionPolicy(raw_days=1))
    assert any("block 12" in p for p in _verify(lab))


def test_the_archive_verifies_on_its_own_and_holds_every_removed_sample(lab: Location) -> None:
    removed = _rows(
        lab, "SELECT device, signal, t, value FROM telemetry WHERE block > 3 ORDER BY rowid"
    )
    summary = _run(lab, RetentionPolicy(raw_days=1))
    archive = Path(summary.archive)  # type: ignore[attr-defined]
    assert archive.parent == _archive_dir(lab)
    public = load_public_key(_public(lab))
    report = verify_store(archive, public_key=public, archive=True)
    assert report.problems == [] and report.exit_code == 0, report.problems
    conn = sqlite3.connect(archive)
    assert (
        conn.execute("SELECT device, signal, t, value FROM telemetry ORDER BY rowid").fetchall()
        == removed
    )
    conn.close()
    recorded = _rows(lab, "SELECT DISTINCT archive, archive_sha256 FROM telemetry_removals")
    assert recorded == [(archive.name, hashlib.sha256(archive.read_bytes()).hexdigest())]
    # An archive edited afterwards does not verify.
    tamper(archive, "UPDATE telemetry SET value = 1 WHERE rowid = 10")
    assert not verify_store(archive, public_key=public, archive=True).ok


def test_rollups_hold_min_mean_max_count_per_minute(lab: Location) -> None:
    with open_database(lab, readonly=True) as db:
        raw = db.query_telemetry("incubator1", "temperature")
        summary_before = db.telemetry_summary("incubator1")
    _run(lab, RetentionPolicy(raw_days=1))
    with open_database(lab, readonly=True) as db:
        rolled = db.query_rollups("incubator1", "temperature")
        summary_after = db.telemetry_summary("incubator1")
        points = db.query_telemetry("incubator1", "temperature")
        devices = db.telemetry_devices()
    assert all(type(r.count) is int and type(r.numeric) is int for r in rolled)
    by_minute: dict[int, list[float]] = {}
    for p in raw:
        by_minute.setdefault(int(p.t // 60) * 60, []).append(float(p.value))  # type: ignore[arg-type]
    assert [r.minute for r in rolled] == sorted(by_minute)
    for r in rolled:
        values = by_minute[r.minute]
        assert (r.count, r.min, r.max) == (len(values), min(values), max(values))
        assert r.mean == pytest.approx(sum(values) / len(values))
    # Summaries read roll-ups where the raw samples are gone: the same figures.
    for a, b in zip(summary_before, summary_after, strict=True):
        assert (a.signal, a.count, a.min, a.max, a.first_t, a.last_t) == (
            b.signal, b.count, b.min, b.max, b.first_t, b.last_t
        )  # fmt: skip
        assert a.mean == pytest.approx(b.mean)
    assert [p.quality for p in points] == ["rollup"] * len(rolled)
    assert [p.value for p in points] == [r.mean for r in rolled]
    assert devices == ["bioreactor1", "incubator1", "printer1"]


def test_per_device_and_per_signal_policies_trim_blocks(lab: Location) -> None:
    policy = RetentionPolicy(
        raw_days=1, devices={"bioreactor1": 30}, signals={"incubator1/door": 20}
    )
    summary = _run(lab, policy)
    assert summary.blocks_trimmed == 20 and summary.blocks_removed == 0  # type: ignore[attr-defined]
    kept = _rows(lab, "SELECT DISTINCT device, signal FROM telemetry ORDER BY 1, 2")
    assert kept == [("bioreactor1", "ph"), ("incubator1", "door"), ("printer1", "head_temp")]
    assert _verify(lab) == []
    # Nothing more is due until those expire: a second run finds nothing to do.
    again = _run(lab, policy)
    assert again.samples == 0 and again.archive is None  # type: ignore[attr-defined]
    # Twenty days on, the doors go; thirty-one, the rest: the blocks are then removed whole.
    later = run_retention(lab, policy, now=NOW + 11 * DAY, signer=_signer(lab))
    assert later.samples == 20 * 60 + 15 and later.blocks_trimmed == 20
    last = run_retention(lab, policy, now=NOW + 21 * DAY, signer=_signer(lab))
    assert last.blocks_removed == 20
    assert _count(lab, "SELECT COUNT(*) FROM telemetry_blocks") == 0
    assert _count(lab, "SELECT SUM(count) FROM telemetry_rollups") == 20 * 180 + 15
    assert _verify(lab) == []


def _state(db: Location) -> object:
    """The whole file, or on PostgreSQL what every table holds."""
    if not is_postgres(db):
        return Path(db).read_bytes()
    tables = [r[0] for r in _rows(db, "SELECT table_name FROM information_schema.tables"
                                      " WHERE table_schema = current_schema() ORDER BY 1")]  # fmt: skip
    return {t: _rows(db, f"SELECT * FROM {t} ORDER BY 1") for t in tables}


def test_dry_run_writes_nothing(lab: Location) -> None:
    before = _state(lab)
    summary = run_retention(lab, RetentionPolicy(raw_days=1), now=NOW, dry_run=True)
    assert (summary.samples, summary.blocks_removed, summary.archive) == (3600, 20, None)
    assert _state(lab) == before
    assert not _archive_dir(lab).exists()


def test_recent_or_unanchored_blocks_stay(db_path: Location) -> None:
    with open_database(db_path) as db:  # no signer: no checkpoint covers anything
        db.insert_telemetry(_samples(0, OLD))
    summary = run_retention(db_path, RetentionPolicy(raw_days=1), now=NOW)
    assert summary.samples == 0 and "no checkpoint" in summary.notes[0]
    with open_database(db_path, signer=_signer(db_path)) as db:
        db.insert_telemetry(_samples(1, NOW - 3600))  # an hour old
    summary = run_retention(db_path, RetentionPolicy(raw_days=1), now=NOW, signer=_signer(db_path))
    assert summary.samples == 180 and _count(db_path, "SELECT COUNT(*) FROM telemetry") == 180


def test_policy_refuses_bad_days() -> None:
    with pytest.raises(StoreError, match="retention: incubator1: days must be a number > 0"):
        RetentionPolicy(raw_days=1, devices={"incubator1": 0})


async def test_the_async_store_runs_retention_beside_ingest(lab: Location) -> None:
    async with open_store(lab, signer=_signer(lab)) as store:
        await store.insert_telemetry(_samples(0, NOW))  # while retention removes old ones
        summary = await store.run_retention(RetentionPolicy(raw_days=1))
        await store.checkpoint()
        assert summary.blocks_removed == 20
        rows = await store.query_telemetry("bioreactor1", "ph")
    assert len([p for p in rows if p.quality != "rollup"]) == 60
    assert _verify(lab) == []


def test_the_batch_record_plots_rollups_where_raw_samples_are_gone(lab: Location) -> None:
    import dataclasses

    from labdevices.record._collect import _telemetry

    with open_database(lab, readonly=True) as db:
        job = db.get_job(1, events=False)
        job = dataclasses.replace(job, started_at=OLD, ended_at=OLD + 20 * 30)
        before = _telemetry(db, job)
    _run(lab, RetentionPolicy(raw_days=1))
    with open_database(lab, readonly=True) as db:
        after = _telemetry(db, job)
    assert set(after) == set(before) == {"incubator1", "bioreactor1"}
    for device, body in after.items():
        for signal, plot in body["signals"].items():
            was = before[device]["signals"][signal]
            assert (plot["count"], plot["min"], plot["max"]) == (
                was["count"],
                was["min"],
                was["max"],
            )
            assert 0 < len(plot["samples"]) <= 11  # one point per minute (10 min + an edge)


def test_cli_dry_run_then_run_then_a_full_archive_verifies(lab: Location, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    import labdevices.cli._proof
    import labdevices.cli._retention  # noqa: F401
    from labdevices.cli import app

    runner = CliRunner()
    config = tmp_path / "lab.toml"
    where = f'url = "{lab}"' if is_postgres(lab) else f'path = "{lab}"'
    config.write_text(f'site = "lab1"\n[store]\n{where}\n[retention]\nraw_days = 1\n')
    dry = runner.invoke(app, ["retention", "run", "-c", str(config), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would roll up 3600 samples: 20 blocks removed, 0 trimmed" in dry.output
    done = runner.invoke(app, ["retention", "run", "-c", str(config), "--json"])
    assert done.exit_code == 0, done.output
    assert '"blocks_removed": 20' in done.output
    # The store was closed by its daemon: the run signed its records (open ... closed).
    key = str(_public(lab))
    ok = runner.invoke(app, ["audit", "verify", "--db", str(lab), "--key", key])
    assert ok.exit_code == 0, ok.output
    # A full archive (`labdevices archive`) after retention: removals and roll-ups included.
    out = tmp_path / "all.archive"
    made = runner.invoke(
        app, ["archive", "--db", str(lab), "--key", key, "--before", "2100-01-01", "-o", str(out)]
    )
    assert made.exit_code == 0, made.output
    assert "telemetry_rollups" in made.output
    ok = runner.invoke(app, ["audit", "verify", "--archive", str(out), "--key", key])
    assert ok.exit_code == 0, ok.output
    none = tmp_path / "none.toml"
    none.write_text(f'site = "lab1"\n[store]\n{where}\n')
    refused = runner.invoke(app, ["retention", "run", "-c", str(none)])
    assert refused.exit_code == 2 and "no [retention] section" in refused.output


def test_retention_tables_dropped_fail_verify(lab: Location) -> None:
    _run(lab, RetentionPolicy(raw_days=1))
    tamper(lab, "DROP TABLE telemetry_rollups", "DROP TABLE telemetry_removals")
    problems = _verify(lab)
    assert "telemetry_removals (table): the table is missing (dropped)" in problems
    assert "telemetry_rollups (table): the table is missing (dropped)" in problems


def test_blocks_of_longer_kept_signals_do_not_hold_up_the_others(db_path: Location) -> None:
    with open_database(db_path, signer=_signer(db_path)) as db:
        for k in range(6):  # old pH blocks, kept a year
            db.insert_telemetry([Sample("bioreactor1", "ph", 7.0, "", t=OLD + k)])
        for k in range(4):  # then old temperatures, kept a day
            db.insert_telemetry([Sample("incubator1", "temperature", 37.0, "degC", t=OLD + 10 + k)])
    policy = RetentionPolicy(raw_days=1, devices={"bioreactor1": 365})
    first = _run(db_path, policy, max_blocks=4)
    assert (first.samples, first.more) == (0, True)  # type: ignore[attr-defined]
    second = _run(db_path, policy, max_blocks=4)  # the first four pH blocks are skipped now
    assert second.samples == 2  # type: ignore[attr-defined]
    third = _run(db_path, policy, max_blocks=4)
    assert third.samples == 2 and not third.more  # type: ignore[attr-defined]
    assert _count(db_path, "SELECT COUNT(*) FROM telemetry WHERE signal = 'ph'") == 6
    assert _verify(db_path) == []


#: values whose stored form differs by database (JSON on PostgreSQL): each must hash the same
#: in the live store, in the archive (an SQLite file either way) and in the roll-ups
ODD_VALUES: list[float | bool | str | None] = [
    math.inf, -math.inf, math.nan, True, False, 0, -7, 2**53 + 1, 1e308, 5e-324, 0.1, -0.0,
    "auto", "1e999", "ünïcode ✓", "", None, 37.25,
]  # fmt: skip


def test_odd_values_archive_and_roll_up_under_the_proof(db_path: Location) -> None:
    with open_database(db_path, signer=_signer(db_path), checkpoint_every_records=2) as db:
        for block in range(3):
            db.insert_telemetry(
                [
                    Sample("mixer1", f"s{i}", value, "", t=OLD + block * 60 + i)
                    for i, value in enumerate(ODD_VALUES)
                ]
            )
    stored = _rows(db_path, "SELECT signal, t, value FROM telemetry ORDER BY rowid")
    summary = run_retention(db_path, RetentionPolicy(raw_days=1), now=NOW, signer=_signer(db_path))
    assert summary.samples == 3 * len(ODD_VALUES) and summary.blocks_removed == 3
    assert _verify(db_path) == []
    archive = Path(summary.archive)  # type: ignore[arg-type]
    public = load_public_key(_public(db_path))
    report = verify_store(archive, public_key=public, archive=True)
    assert report.problems == [] and report.exit_code == 0, report.problems
    conn = sqlite3.connect(archive)
    archived = conn.execute("SELECT signal, t, value FROM telemetry ORDER BY rowid").fetchall()
    conn.close()
    # NaN is stored as NULL; everything else comes out as it went in, with its type
    expected = [None if isinstance(v, float) and math.isnan(v) else v for v in ODD_VALUES]
    for rows in (stored, archived):
        values = [v for _, _, v in rows]
        assert [type(v) for v in values] == [type(int(v) if isinstance(v, bool) else v)
                                             for v in expected] * 3  # fmt: skip
        assert values == [int(v) if isinstance(v, bool) else v for v in expected] * 3
    with open_database(db_path, readonly=True) as db:
        inf = db.query_rollups("mixer1", "s0")
        text = db.query_rollups("mixer1", "s12")
    assert [(r.count, r.numeric) for r in inf] == [(1, 0)] * 3  # infinity is no statistic
    assert [(r.count, r.numeric, r.mean) for r in text] == [(1, 0, None)] * 3


def test_one_retention_run_at_a_time_on_a_shared_database(lab: Location) -> None:
    """Daemons sharing a PostgreSQL store each run retention: one run at a time plans, archives
    and removes; the others find it busy and leave it (the next interval goes on)."""
    if not is_postgres(lab):
        pytest.skip("one SQLite file has one daemon; its steps are checked under the write lock")
    from labdevices.store._postgres import RETENTION_LOCK

    with raw(lab) as other:
        other.execute(f"SELECT pg_advisory_lock({RETENTION_LOCK})")
        busy = _run(lab, RetentionPolicy(raw_days=1))
        assert busy.samples == 0 and busy.archive is None  # type: ignore[attr-defined]
        assert busy.notes == ["another retention run is in progress on this store"]  # type: ignore[attr-defined]
    assert not _archive_dir(lab).exists()
    done = _run(lab, RetentionPolicy(raw_days=1))  # the other run's connection closed
    assert done.blocks_removed == 20  # type: ignore[attr-defined]
    assert _verify(lab) == []

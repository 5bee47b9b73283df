"""Job records, alarms, telemetry and the store's lifecycle, through the async API the daemon uses."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from labdevices.devices import Sample
from labdevices.errors import JobRejected
from labdevices.store import (
    Deadband,
    InvalidTransition,
    JobState,
    PostgresStore,
    SqliteStore,
    Store,
    StoreError,
    TelemetryPoint,
    open_database,
    open_store,
    verify_audit,
    verify_store,
)
from labdevices.store._dialect import POSTGRESQL, SQLITE
from labdevices.store._schema import MIGRATIONS, SCHEMA_VERSION

from ._tamper import is_postgres, raw


async def test_job_lifecycle_is_recorded_and_audited(store: Store) -> None:
    job = await store.create_job(
        "printer1",
        actor="alice",
        batch_id="B-1",
        patient_id="P-9",
        bioinks=[{"name": "alginate 2%"}],
        gcode_sha256="ab" * 32,
        lines_total=300,
    )
    assert (job.state, job.started_at, job.ended_at) == (JobState.QUEUED, None, None)
    running = await store.transition_job(job.id, JobState.RUNNING, actor="daemon")
    assert running.started_at is not None
    await store.record_progress(job.id, 150)
    await store.add_job_event(job.id, "progress", {"line": 150})
    paused = await store.transition_job(job.id, "paused", actor="bob", reason="bubble in line")
    assert paused.last_ack_line == 150
    resumed = await store.transition_job(job.id, "running", actor="bob")
    assert resumed.started_at == running.started_at  # first start is kept
    await store.record_progress(job.id, 300)
    done = await store.transition_job(job.id, "completed", actor="daemon")
    assert done.ended_at is not None
    assert done.last_ack_line == 300

    full = await store.get_job(job.id)
    assert (full.batch_id, full.patient_id, full.bioinks) == (
        "B-1",
        "P-9",
        [{"name": "alginate 2%"}],
    )
    states = [(e.payload["from"], e.payload["to"]) for e in full.events if e.kind == "state"]
    assert states == [
        ("queued", "running"),
        ("running", "paused"),
        ("paused", "running"),
        ("running", "completed"),
    ]
    assert [e.kind for e in full.events].count("progress") == 1
    audit = await store.audit_records(object=f"job/{job.id}")
    assert [(r.actor, r.action) for r in audit] == [
        ("alice", "job.create"),
        ("daemon", "job.transition"),
        ("daemon", "job.event"),  # events are records too
        ("bob", "job.transition"),
        ("bob", "job.transition"),
        ("daemon", "job.transition"),
    ]
    assert audit[3].reason == "bubble in line"
    assert [j.id for j in await store.list_jobs(state="completed")] == [job.id]


async def test_invalid_transitions_are_rejected_and_change_nothing(store: Store) -> None:
    job = await store.create_job("printer1", actor="alice")
    with pytest.raises(
        InvalidTransition, match=r"job 1: cannot go from 'queued' to 'paused'"
    ) as info:
        await store.transition_job(job.id, "paused", actor="bob")
    assert "allowed from 'queued': cancelled, failed, running" in str(info.value)
    assert isinstance(info.value, JobRejected)
    await store.transition_job(job.id, "running", actor="daemon")
    await store.transition_job(job.id, "completed", actor="daemon")
    for target in JobState:
        with pytest.raises(InvalidTransition, match="none: the job has ended"):
            await store.transition_job(job.id, target, actor="bob")
    with pytest.raises(JobRejected, match="unknown job state 'exploded'"):
        await store.transition_job(job.id, "exploded", actor="bob")
    after = await store.get_job(job.id)
    assert after.state is JobState.COMPLETED
    assert len(after.events) == 3
    assert (await store.verify()).records == 3


async def test_bad_job_input_gets_clear_errors(store: Store) -> None:
    with pytest.raises(StoreError, match="no job with id 42"):
        await store.get_job(42)
    with pytest.raises(StoreError, match="no job with id 42"):
        await store.transition_job(42, "running", actor="bob")
    with pytest.raises(JobRejected, match="gcode_sha256 must be 64 lowercase hex"):
        await store.create_job("printer1", actor="alice", gcode_sha256="xyz")
    with pytest.raises(StoreError, match="actor must be a non-empty string"):
        await store.create_job("printer1", actor=" ")
    job = await store.create_job("printer1", actor="alice")
    with pytest.raises(
        JobRejected, match="job 1 is queued: progress is only recorded while it runs"
    ):
        await store.record_progress(job.id, 3)
    sized = await store.create_job("printer1", actor="alice", lines_total=10)
    await store.transition_job(sized.id, "running", actor="daemon")
    with pytest.raises(JobRejected, match="acknowledged line 11 is past its last line 10"):
        await store.record_progress(sized.id, 11)
    with pytest.raises(JobRejected, match="acknowledged line must be >= 0"):
        await store.record_progress(sized.id, -1)
    await store.record_progress(sized.id, 10)
    assert (await store.get_job(sized.id)).last_ack_line == 10
    assert (await store.verify()).records == 3


async def test_startup_recovery_marks_running_jobs_interrupted(db_path: str | Path) -> None:
    async with open_store(db_path) as store:
        running = await store.create_job("p1", actor="alice", lines_total=1000)
        await store.transition_job(running.id, "running", actor="daemon")
        await store.record_progress(running.id, 417)
        paused = await store.create_job("p2", actor="alice", lines_total=50)
        await store.transition_job(paused.id, "running", actor="daemon")
        await store.record_progress(paused.id, 20)
        await store.transition_job(paused.id, "paused", actor="bob")
        queued = await store.create_job("p3", actor="alice")
        done = await store.create_job("p4", actor="alice")
        await store.transition_job(done.id, "running", actor="daemon")
        await store.transition_job(done.id, "completed", actor="daemon")
    # the daemon "comes back"
    async with open_store(db_path) as store:
        recovered = await store.recover_interrupted()
        assert [(j.id, j.state, j.last_ack_line) for j in recovered] == [
            (running.id, JobState.INTERRUPTED, 417),
            (paused.id, JobState.INTERRUPTED, 20),
        ]
        assert "last acknowledged line 417 of 1000" in (recovered[0].error or "")
        assert (await store.get_job(queued.id)).state is JobState.QUEUED
        assert (await store.get_job(done.id)).state is JobState.COMPLETED
        with pytest.raises(InvalidTransition):  # never resumed, silently or otherwise
            await store.transition_job(running.id, "running", actor="daemon")
        assert await store.recover_interrupted() == []
        assert await store.recover_interrupted(printers=[]) == []  # a daemon without printers
        last = (await store.audit_records(object=f"job/{running.id}"))[-1]
        assert (last.actor, last.reason) == ("daemon", "startup recovery")
    assert verify_audit(db_path).ok


async def test_alarms_raise_acknowledge_clear_are_audited(store: Store) -> None:
    alarm = await store.raise_alarm("printer1", "head_overheat", "critical", reason="T 41 C > 40 C")
    assert [a.id for a in await store.list_alarms(active_only=True)] == [alarm.id]
    acked = await store.acknowledge_alarm(alarm.id, user="carol", reason="cooling down")
    assert acked.acknowledged_by == "carol"
    assert acked.acknowledged_at is not None
    with pytest.raises(StoreError, match="already acknowledged by carol"):
        await store.acknowledge_alarm(alarm.id, user="dave")
    cleared = await store.clear_alarm(alarm.id, reason="back to 37 C")
    assert cleared.cleared_at is not None
    assert await store.list_alarms(active_only=True) == []
    with pytest.raises(StoreError, match="already cleared"):
        await store.clear_alarm(alarm.id)
    with pytest.raises(StoreError, match="severity must be one of"):
        await store.raise_alarm("printer1", "x", "apocalyptic")  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="no alarm with id 9"):
        await store.acknowledge_alarm(9, user="carol")
    audit = await store.audit_records(object=f"alarm/{alarm.id}")
    assert [(r.actor, r.action) for r in audit] == [
        ("daemon", "alarm.raise"),
        ("carol", "alarm.acknowledge"),
        ("daemon", "alarm.clear"),
    ]


async def test_config_load_and_commands_are_audited(store: Store) -> None:
    rec = await store.record_config_load(Path("config/demo.toml"), "12" * 32, actor="daemon")
    assert (rec.action, rec.object, rec.new) == (
        "config.load",
        "config/config/demo.toml",
        '{"sha256":"' + "12" * 32 + '"}',
    )
    cmd = await store.audit(
        "alice", "setpoint", "incubator1/co2", old=5.0, new=5.5, reason="protocol step 3"
    )
    assert (cmd.seq, cmd.prev_hash, cmd.old, cmd.new) == (2, rec.hash, "5.0", "5.5")


async def test_telemetry_batches_and_range_queries(store: Store) -> None:
    batch = [Sample("inc1", "temperature", 36.0 + i / 100, "degC", t=100.0 + i) for i in range(100)]
    batch += [Sample("inc1", "door", i % 2 == 0, "", t=100.0 + i) for i in range(10)]
    batch.append(Sample("inc1", "mode", "auto", "", t=150.0, quality="stale"))
    assert await store.insert_telemetry(batch) == 111
    assert await store.insert_telemetry([]) == 0
    points = await store.query_telemetry("inc1", "temperature", start=110.0, end=119.0)
    assert [p.t for p in points] == [110.0 + i for i in range(10)]
    assert points[0] == TelemetryPoint("inc1", "temperature", 110.0, 36.1, "degC", "good")
    mode = await store.query_telemetry("inc1", "mode")
    assert (mode[0].value, mode[0].quality) == ("auto", "stale")
    assert len(await store.query_telemetry("inc1", limit=5)) == 5
    summary = {s.signal: s for s in await store.telemetry_summary("inc1", start=100.0, end=199.0)}
    temp = summary["temperature"]
    assert (temp.count, temp.unit, temp.min, temp.max) == (100, "degC", 36.0, 36.99)
    # plain numbers on both databases (a Decimal would not serialise to JSON: batch record)
    assert type(temp.count) is int and type(temp.min) is float and type(temp.mean) is float
    assert temp.mean == pytest.approx(36.495)
    assert summary["mode"].min is None


def test_deadband_keeps_changes_and_heartbeats() -> None:
    band = Deadband(0.5, min_interval_s=1.0, max_interval_s=10.0, per_signal={"co2": 0.05})
    kept = band.filter(
        [
            Sample("inc", "temp", 37.0, "degC", t=0.0),  # first: kept
            Sample("inc", "temp", 37.6, "degC", t=0.5),  # changed, but too soon
            Sample("inc", "temp", 37.6, "degC", t=1.0),  # changed > 0.5: kept
            Sample("inc", "temp", 37.9, "degC", t=2.0),  # within deadband
            Sample("inc", "temp", 37.9, "degC", t=11.0),  # heartbeat: kept
            Sample("inc", "temp", 37.9, "degC", t=11.5, quality="bad"),  # quality change: kept
            Sample("inc", "co2", 5.0, "%", t=0.0),  # kept
            Sample("inc", "co2", 5.1, "%", t=2.0),  # per-signal band 0.05: kept
            Sample("inc", "door", False, "", t=0.0),  # kept
            Sample("inc", "door", False, "", t=2.0),
            Sample("inc", "door", True, "", t=3.0),  # kept
        ]
    )
    assert [(s.signal, s.t) for s in kept] == [
        ("temp", 0.0),
        ("temp", 1.0),
        ("temp", 11.0),
        ("temp", 11.5),
        ("co2", 0.0),
        ("co2", 2.0),
        ("door", 0.0),
        ("door", 3.0),
    ]
    with pytest.raises(ValueError, match="deadband"):
        Deadband(-1.0)


async def test_store_lifecycle_joins_its_thread_and_refuses_reentry(db_path: str | Path) -> None:
    store = open_store(db_path)
    before = {t.name for t in threading.enumerate()}
    async with store:
        await store.list_jobs()
        assert any(t.name.startswith("labdevices-store") for t in threading.enumerate())
    await store.__aexit__(None, None, None)  # exit twice is safe
    assert {t.name for t in threading.enumerate()} <= before
    with pytest.raises(StoreError, match="not open"):
        await store.list_jobs()
    with pytest.raises(StoreError, match="entered only once"):
        async with store:
            pass


async def test_store_that_cannot_open_cleans_up(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"garbage" * 1000)
    with pytest.raises(StoreError, match=r"junk\.db: not a labdevices store"):
        async with SqliteStore(junk):
            pass
    assert isinstance(open_store("postgresql://lab@db.example/site"), PostgresStore)
    assert isinstance(open_store(f"sqlite:///{tmp_path}/x.db"), SqliteStore)
    with pytest.raises(StoreError, match="unknown store URL scheme"):
        open_store("mysql://lab/site")


async def test_an_unreachable_postgresql_store_is_named_without_its_password() -> None:
    url = "postgresql://lab:s3cret@127.0.0.1:1/site"
    with pytest.raises(StoreError) as caught:
        async with open_store(url):
            pass
    message = str(caught.value)
    assert "postgresql://lab:***@127.0.0.1:1/site" in message and "cannot connect" in message
    assert "s3cret" not in message


def test_schema_is_versioned_wal_and_migrated_once(db_path: str | Path) -> None:
    with open_database(db_path) as db:
        assert db.schema_version == SCHEMA_VERSION
    with open_database(db_path) as db:
        assert db.schema_version == SCHEMA_VERSION
    with raw(db_path) as conn:
        if not is_postgres(db_path):
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        count = conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0]
        assert count == len(MIGRATIONS)
        conn.execute("INSERT INTO schema_migrations VALUES (99, 'from the future', 'x')")
    with pytest.raises(StoreError, match="schema version 99 is newer than this labdevices"):
        open_database(db_path).open()
    with pytest.raises(StoreError, match="schema version 99"):
        verify_audit(db_path)


def test_a_version_1_store_is_migrated_with_its_jobs_and_chain(db_path: str | Path) -> None:
    dialect = POSTGRESQL if is_postgres(db_path) else SQLITE
    with raw(db_path) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL,"
            " applied_at TEXT NOT NULL)"
        )
        for statement in MIGRATIONS[0][2]:
            conn.execute(dialect.ddl(statement))
        conn.execute("INSERT INTO schema_migrations VALUES (1, 'v1', '2026-01-01T00:00:00Z')")
        conn.execute(
            "INSERT INTO jobs (printer, state, lines_total, created_at)"
            " VALUES ('p1', 'completed', 3, 1.0)"
        )
        conn.execute(
            "INSERT INTO job_events (job_id, t, kind, payload) VALUES (1, 1.0, 'note', '{}')"
        )
    with open_database(db_path) as db:
        assert db.schema_version == SCHEMA_VERSION
        job = db.get_job(1)
        assert (job.printer, job.state, len(job.events)) == ("p1", JobState.COMPLETED, 1)
        db.create_job("p1", actor="alice", gcode="G1 X1\n")
        assert db.verify().ok
        assert db.job_gcode(2) == "G1 X1\n"


def test_readonly_store_refuses_writes(filled: str | Path) -> None:
    with open_database(filled, readonly=True) as db:
        assert len(db.list_jobs()) == 2
        with pytest.raises(StoreError, match="read-only"):
            db.audit("x", "y", "z")


async def test_telemetry_values_of_every_kind_come_back_as_stored_and_verify(
    store: Store, db_path: str | Path
) -> None:
    values = [1, 2.5, 2.0, 1e300, float("inf"), float("-inf"), "open", True, float("nan"), None]
    samples = [Sample("inc", "v", v, "x", t=1000.0 + i) for i, v in enumerate(values)]
    assert await store.insert_telemetry(samples) == len(values)
    back = [p.value for p in await store.query_telemetry("inc")]
    assert back == [1, 2.5, 2.0, 1e300, float("inf"), float("-inf"), "open", 1, None, None]
    assert [type(v) for v in back[:3]] == [int, float, float]
    [summary] = await store.telemetry_summary("inc")
    assert (summary.count, summary.min, summary.max) == (10, float("-inf"), float("inf"))
    report = verify_store(db_path, public_key=None)  # the block's digest over the stored rows
    assert report.problems == [] and report.rows_checked["telemetry_blocks"] == 1

"""Fixtures for the store tests: a fresh store with a mix of audited history.

Every test that uses ``db_path`` (directly or through ``store``, ``filled``, ``signed``)
runs twice: on an SQLite file (id ``sqlite``) and on a fresh PostgreSQL database (id
``postgresql``, on the server of the ``postgres_server`` fixture). ``db_path`` is then the
file's path or the database's URL, which ``open_database``/``open_store`` both take.
Tests about the SQLite file itself (a missing or corrupt file, its WAL mode) do not use
``db_path`` and run once; their PostgreSQL counterparts (an unreachable server, an empty
database) are written apart.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from labdevices.devices import Sample
from labdevices.store import (
    JobState,
    SqliteDatabase,
    Store,
    default_key_path,
    default_witness_path,
    load_or_create_signing_key,
    open_database,
    open_store,
)
from labdevices.store._checkpoints import CheckpointSigner

#: a store's location: an SQLite file's path or a PostgreSQL URL
Location = str | Path


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Default store, key and witness files (a PostgreSQL store's live in the data folder) go
    to the test's own folder, never the user's."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("LABDEVICES_DB", raising=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_path(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Location:
    if backend == "sqlite":
        return tmp_path / "lab.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def store(db_path: Location) -> AsyncIterator[Store]:
    async with open_store(db_path) as s:
        yield s


@pytest.fixture
def filled(db_path: Location) -> Location:
    """A store with 12 audit records: jobs through their states, an alarm, commands, a config load."""
    with open_database(db_path) as db:
        db.record_config_load("config/demo.toml", "ab" * 32)  # 1
        job = db.create_job(  # 2
            "printer1",
            actor="alice",
            batch_id="B-001",
            patient_id="P-17",
            bioinks=[{"name": "GelMA 5%", "cells_per_ml": 1e6}],
            gcode_sha256="0f" * 32,
            lines_total=500,
        )
        db.transition_job(job.id, JobState.RUNNING, actor="daemon")  # 3
        db.record_progress(job.id, 120)
        db.transition_job(job.id, JobState.PAUSED, actor="bob", reason="check nozzle")  # 4
        db.transition_job(job.id, JobState.RUNNING, actor="bob")  # 5
        db.record_progress(job.id, 500)
        db.transition_job(job.id, JobState.COMPLETED, actor="daemon")  # 6
        alarm = db.raise_alarm("printer1", "head_overheat", "critical", reason="T > 40 C")  # 7
        db.acknowledge_alarm(alarm.id, user="carol", reason="seen")  # 8
        db.clear_alarm(alarm.id)  # 9
        db.audit("alice", "setpoint", "incubator1/temperature", old=37.0, new=36.5)  # 10
        db.audit("alice", "command", "printer1/pause", new={"args": {}})  # 11
        other = db.create_job("printer2", actor="alice")  # 12
        assert other.id == 2
    return db_path


@dataclass(frozen=True)
class Signed:
    """A store written by a signing daemon, its public key and a witness's copy, both kept apart."""

    db: Location
    key: Path
    witness: Path
    private: Path
    #: the daemon's own witness file (``witness`` is a copy kept elsewhere)
    live_witness: Path

    def open(self, signer: CheckpointSigner | None = None) -> SqliteDatabase:
        return open_database(self.db, signer=signer, witness=self.live_witness)


def write_history(db: SqliteDatabase) -> None:
    """Some of everything a daemon records: jobs (one interrupted), events, G-code, alarms,
    users, a signature, telemetry blocks, setpoints."""
    db.record_config_load("config/lab.toml", "cd" * 32)
    done = db.create_job(
        "printer1",
        actor="alice",
        batch_id="B-7",
        patient_id="P-17",
        bioinks=[{"name": "GelMA 5%", "lot": "L-3"}],
        gcode="G28\nG1 X10\nM400\n",
        lines_total=3,
    )
    db.transition_job(done.id, JobState.RUNNING, actor="daemon")
    db.record_progress(done.id, 3)
    db.transition_job(done.id, JobState.COMPLETED, actor="daemon")
    cut = db.create_job(
        "printer1", actor="bob", batch_id="B-8", patient_id="P-18", gcode="G28\nG1 X5\n"
    )
    db.transition_job(cut.id, JobState.RUNNING, actor="daemon")
    db.add_job_event(cut.id, "note", {"text": "nozzle changed"})
    db.transition_job(cut.id, JobState.INTERRUPTED, actor="daemon", error="daemon stopped")
    alarm = db.raise_alarm("incubator1", "co2_low", "warning", reason="CO2 < 4.5 %")
    db.acknowledge_alarm(alarm.id, user="carol", reason="cylinder swapped")
    now = time.time()
    with db._tx(durable=True) as c:  # users and signatures: as the identity/record code writes them
        for uid, name, roles in (
            ("alice", "Alice A", ["operator"]),
            ("carol", "Carol C", ["supervisor"]),
        ):
            c.execute(
                "INSERT INTO users (id, full_name, roles, created_at) VALUES (?, ?, ?, ?)",
                (uid, name, json.dumps(roles), now),
            )
            db._append_audit(
                c,
                t=now,
                actor="admin",
                action="user.create",
                object=f"user/{uid}",
                old=None,
                new={"roles": roles},
                reason=None,
                row=("users", uid),
            )
    with db._tx(durable=True) as c:
        cur = c.execute(
            "INSERT INTO signatures (object, user_id, full_name, meaning, comment, time,"
            " content_sha256) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            ("job/1", "carol", "Carol C", "released", "ok", "2026-11-26T10:00:00Z", "ab" * 32),
        )
        sid = int(cur.fetchone()[0])
        db._append_audit(
            c,
            t=now,
            actor="carol",
            action="job.sign",
            object=f"signature/{sid}",
            old=None,
            new={"meaning": "released"},
            reason=None,
            row=("signatures", sid),
        )
    for block in range(3):
        db.insert_telemetry(
            [
                Sample(
                    "printer1", "head_temp", 37.0 + block + k / 10, "degC", t=now + block + k / 100
                )
                for k in range(5)
            ]
        )
    db.audit("alice", "setpoint.write", "device/incubator1/temperature", old=37.0, new=36.5)


@pytest.fixture
def signed(tmp_path: Path, db_path: Location) -> Signed:
    """A store closed by a signing daemon; the public key and a witness copy kept elsewhere."""
    # where a daemon keeps them by default: beside the file, or for a URL in the data folder
    private = default_key_path(db_path)
    live_witness = default_witness_path(db_path)
    signer = CheckpointSigner(load_or_create_signing_key(private), "labdevices/lab1")
    with open_database(
        db_path, signer=signer, witness=live_witness, checkpoint_every_records=4
    ) as db:
        write_history(db)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    key = elsewhere / "daemon.pub"
    shutil.copy(private.with_name(private.name + ".pub"), key)
    witness = elsewhere / "witness.jsonl"
    shutil.copy(live_witness, witness)
    return Signed(db_path, key, witness, private, live_witness)


@pytest.fixture
def other_db_path(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Location]:
    """A second, separate store of the same kind as ``db_path``."""
    if backend == "sqlite":
        yield tmp_path / "other.db"
        return
    server = request.getfixturevalue("postgres_server")
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)

"""Fixtures for the store tests: a fresh store file with a mix of audited history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from labdevices.store import JobState, SqliteDatabase, SqliteStore


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "lab.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(db_path) as s:
        yield s


@pytest.fixture
def filled(db_path: Path) -> Path:
    """A store with 12 audit records: jobs through their states, an alarm, commands, a config load."""
    with SqliteDatabase(db_path) as db:
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

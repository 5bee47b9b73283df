"""A process SIGKILLed mid-write leaves a store that opens, verifies, and holds every commit it reported
(an SQLite file, or a PostgreSQL database whose client was killed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from labdevices.store import (
    CheckpointSigner,
    JobState,
    load_or_create_signing_key,
    load_public_key,
    open_database,
    open_store,
    verify_audit,
    verify_store,
)

from .conftest import Location

CHILD = Path(__file__).with_name("_crash_child.py")


def _run_and_kill(
    db: Location, witness: Path, kill_after_audits: int, key: Path | None = None
) -> list[dict[str, Any]]:
    """Start the writer, SIGKILL it once it reported ``kill_after_audits`` audit commits."""
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(db), str(witness), *([str(key)] if key else [])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reports: list[dict[str, Any]] = []
    try:
        assert proc.stdout is not None
        audits = 0
        while audits < kill_after_audits:
            line = proc.stdout.readline()
            assert line, f"writer died early: {proc.stderr.read() if proc.stderr else ''}"
            reports.append(json.loads(line))
            audits += reports[-1]["kind"] == "audit"
        # The writer is still running at full speed here: the kill lands mid-write.
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    # Lines flushed before the kill were reported after their commit, so they count too.
    reports += [json.loads(x) for x in rest.splitlines() if x.strip()]
    return reports


@pytest.mark.parametrize("kill_after_audits", [5, 40])
async def test_sigkill_mid_write_loses_nothing_reported(
    tmp_path: Path, db_path: Location, kill_after_audits: int
) -> None:
    db = db_path
    reports = _run_and_kill(db, tmp_path / "crash.witness", kill_after_audits)

    result = verify_audit(db)
    assert result.ok, result.message

    async with open_store(db) as store:
        records = {r.seq: r.hash for r in await store.audit_records()}
        for rep in reports:
            if rep["kind"] == "audit":
                assert records.get(rep["seq"]) == rep["hash"], f"audit record {rep['seq']} lost"
        last_state: dict[int, str] = {}
        last_line: dict[int, int] = {}
        for rep in reports:
            if rep["kind"] == "state":
                last_state[rep["job"]] = rep["state"]
            elif rep["kind"] == "line":
                last_line[rep["job"]] = rep["line"]
        order = [s.value for s in JobState]
        for job_id, state in last_state.items():
            job = await store.get_job(job_id)
            seen = {e.payload["to"] for e in job.events if e.kind == "state"} | {"queued"}
            assert state in seen, f"job {job_id}: reported {state}, stored history {seen}"
            assert order.index(job.state) >= order.index(state)
            assert job.last_ack_line >= last_line.get(job_id, 0)

        running = {j.id for j in await store.list_jobs(state="running")}
        recovered = await store.recover_interrupted()
        assert {j.id for j in recovered} == running
        for job in recovered:
            assert job.state is JobState.INTERRUPTED
            assert job.last_ack_line >= last_line.get(job.id, 0)
        assert (await store.verify()).ok


@pytest.mark.parametrize("kill_after_audits", [3, 30])
def test_sigkill_mid_write_keeps_chain_and_checkpoints_verifiable(
    tmp_path: Path, db_path: Location, kill_after_audits: int
) -> None:
    """Killed while writing and signing: the chain and every checkpoint verify against the key
    and the witness file; only the tail after the last checkpoint is unanchored (exit 3), and a
    restarted writer anchors it."""
    db, key = db_path, tmp_path / "crash.key"
    witness = tmp_path / "crash.db.witness"
    reports = _run_and_kill(db, witness, kill_after_audits, key)
    public = load_public_key(tmp_path / "crash.key.pub")

    report = verify_store(db, public_key=public, witness=witness)
    assert report.problems == [], report.problems
    assert report.exit_code in (0, 3)
    assert report.checkpoints >= 1 and report.anchored_seq <= report.head_seq
    last_audit = max(r["seq"] for r in reports if r["kind"] == "audit")
    assert report.head_seq >= last_audit

    signer = CheckpointSigner(load_or_create_signing_key(key), "labdevices/crash")
    with open_database(db, signer=signer, witness=witness) as store:  # the daemon restarts on it
        store.recover_interrupted()
    after = verify_store(db, public_key=public, witness=witness)
    assert after.exit_code == 0, after.problems
    assert after.anchored_seq == after.head_seq

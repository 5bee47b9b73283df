"""Signed checkpoints: the C2SP formats, the store's cadence, the witness file and ``WitnessLog``."""

from __future__ import annotations

import base64
import hashlib
import itertools
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

import labdevices.cli._proof  # noqa: F401  (registers the commands)
from labdevices.cli import app
from labdevices.store import (
    CheckpointError,
    CheckpointSigner,
    JobState,
    StoreError,
    WitnessLog,
    load_or_create_signing_key,
    open_database,
    public_key_bytes,
    verify_store,
)
from labdevices.store._checkpoints import parse_checkpoint, parse_verifier_key, read_witness

from ._tamper import is_postgres, put_back, save_copy
from .conftest import Location, Signed

runner = CliRunner()


def _signer(tmp_path: Path, name: str = "k") -> CheckpointSigner:
    return CheckpointSigner(load_or_create_signing_key(tmp_path / name), "labdevices/lab1")


def test_note_is_a_c2sp_signed_checkpoint(tmp_path: Path) -> None:
    signer = _signer(tmp_path)
    head = hashlib.sha256(b"x").hexdigest()
    cp = signer.sign(
        size=7, head=head, time="2026-11-26T10:00:00.000000Z", prev="0" * 64, state="running"
    )
    text, sig_line = cp.note.split("\n\n")
    lines = text.split("\n")
    assert lines[:3] == ["labdevices/lab1", "7", base64.b64encode(bytes.fromhex(head)).decode()]
    assert lines[3:] == ["time 2026-11-26T10:00:00.000000Z", "prev " + "0" * 64, "state running"]
    # The signature line, checked with nothing but the spec and the cryptography package:
    assert sig_line.startswith("\u2014 labdevices/lab1 ") and sig_line.endswith("\n")
    raw = base64.b64decode(sig_line.split()[-1])
    pub = public_key_bytes(signer.public)
    assert raw[:4] == hashlib.sha256(b"labdevices/lab1\n\x01" + pub).digest()[:4]
    signer.public.verify(raw[4:], (text + "\n").encode())
    name, public = parse_verifier_key(signer.verifier_key)
    assert name == "labdevices/lab1" and public_key_bytes(public) == pub
    vkey = base64.b64encode(b"\x01" + pub).decode()
    assert signer.verifier_key == f"labdevices/lab1+{raw[:4].hex()}+{vkey}"


def test_a_changed_note_or_another_key_does_not_verify(tmp_path: Path) -> None:
    signer = _signer(tmp_path)
    cp = signer.sign(size=3, head="ab" * 32, time="t", prev="0" * 64, state="open")
    assert parse_checkpoint(cp.note, signer.public).size == 3
    with pytest.raises(CheckpointError, match="does not verify"):
        parse_checkpoint(cp.note.replace("\n3\n", "\n4\n"), signer.public)
    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(CheckpointError, match="not signed by the given key"):
        parse_checkpoint(cp.note, other)


def test_store_checkpoints_at_open_every_n_records_on_demand_and_at_close(
    tmp_path: Path, db_path: Location
) -> None:
    signer = _signer(tmp_path)
    witness = tmp_path / "lab.witness"
    with open_database(db_path, signer=signer, witness=witness, checkpoint_every_records=5) as db:
        for i in range(12):
            db.audit("alice", "setpoint.write", "device/x/t", new=i)
        job = db.create_job("p1", actor="alice")
        db.transition_job(job.id, JobState.CANCELLED, actor="alice")
        assert db.checkpoint() is not None  # the job's end
        assert db.checkpoint() is None  # nothing new
        sizes = [(cp.size, cp.state) for _, cp in db.checkpoints()]
    assert sizes == [(0, "open"), (5, "running"), (10, "running"), (14, "running")]
    with open_database(db_path, readonly=True) as db:
        cps = db.checkpoints()
    # closed: no other daemon of the site holds a lease (tests/site: while one does, "running")
    assert [(cp.size, cp.state) for _, cp in cps][-1] == (14, "closed")
    # every one in the witness file, in order, linked
    witnessed = list(read_witness(witness))
    assert [n for n, _ in witnessed] == [n for n, _ in cps]
    assert all(note == cp.note for (_, note), (_, cp) in zip(witnessed, cps, strict=True))
    for (_, a), (_, b) in itertools.pairwise(cps):
        assert b.prev == a.sha256
    report = verify_store(db_path, public_key=signer.public, witness=witness)
    assert report.exit_code == 0 and report.anchored_seq == 14, report.problems


def test_unanchored_tail_is_reported_apart_from_tampering(
    tmp_path: Path, db_path: Location
) -> None:
    signer = _signer(tmp_path)
    db = open_database(
        db_path, signer=signer, checkpoint_every_records=100, checkpoint_every_s=3600
    )
    db.open()
    try:
        for i in range(3):
            db.audit("alice", "note", "x", new=i)
        report = verify_store(db_path, public_key=signer.public)
        assert (report.exit_code, report.unanchored, report.problems) == (3, 3, [])
        result = runner.invoke(
            app, ["audit", "verify", "--store", str(db_path), "--key", signer.verifier_key]
        )
        assert result.exit_code == 3, result.output
        assert "not yet anchored: 3 records" in result.output
    finally:
        db.close()
    assert verify_store(db_path, public_key=signer.public).exit_code == 0


def test_a_store_behind_its_witness_refuses_to_open(tmp_path: Path, db_path: Location) -> None:
    """A daemon restarted on a rolled-back store (an older copy put back) does not sign it."""
    signer = _signer(tmp_path)
    with open_database(db_path, signer=signer) as db:
        db.audit("alice", "note", "x")
    save_copy(db_path, "old")
    with open_database(db_path, signer=signer) as db:
        db.audit("alice", "note", "y")
    put_back(db_path, "old")
    with pytest.raises(StoreError, match="rolled back"):
        open_database(db_path, signer=signer).open()


def test_a_store_signed_by_another_key_refuses_to_open(tmp_path: Path, db_path: Location) -> None:
    with open_database(db_path, signer=_signer(tmp_path, "a")) as db:
        db.audit("alice", "note", "x")
    with pytest.raises(StoreError, match="not signed by this daemon's key"):
        open_database(db_path, signer=_signer(tmp_path, "b")).open()


def test_witness_log_accepts_extensions_and_refuses_forks_and_rollbacks(tmp_path: Path) -> None:
    signer = _signer(tmp_path)
    a = signer.sign(size=1, head="aa" * 32, time="t1", prev="0" * 64, state="open")
    b = signer.sign(size=4, head="bb" * 32, time="t2", prev=a.sha256, state="running")
    c = signer.sign(size=6, head="cc" * 32, time="t3", prev=b.sha256, state="running")
    fork = signer.sign(size=5, head="dd" * 32, time="t3", prev=b.sha256, state="running")
    log = WitnessLog(tmp_path / "w.jsonl", signer.public)
    assert log.accept(1, a.note) and log.accept(2, b.note)
    assert not log.accept(2, b.note)  # the retained copy seen again
    with pytest.raises(CheckpointError, match="ROLLBACK"):
        log.accept(
            1, signer.sign(size=0, head="0" * 64, time="t", prev="0" * 64, state="open").note
        )
    assert log.accept(3, c.note)
    with pytest.raises(CheckpointError, match="FORK"):
        log.accept(3, fork.note)
    unlinked = signer.sign(size=9, head="ee" * 32, time="t4", prev="1" * 64, state="running")
    with pytest.raises(CheckpointError, match="FORK"):
        log.accept(4, unlinked.note)
    mallory = _signer(tmp_path, "mallory")
    with pytest.raises(CheckpointError, match="not signed by the given key"):
        log.accept(
            4, mallory.sign(size=9, head="ee" * 32, time="t", prev=c.sha256, state="running").note
        )
    # reloaded from its file, it holds what it accepted
    again = WitnessLog(tmp_path / "w.jsonl", signer.public)
    assert sorted(again.held) == [1, 2, 3]


def test_witness_file_torn_last_line_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    path.write_text('{"n": 1, "note": "x"}\n{"n": 2, "no')
    assert list(read_witness(path)) == [(1, "x")]
    path.write_text('{"n": 1, "note": "x"}\ngarbage\n{"n": 2, "note": "y"}\n')
    with pytest.raises(StoreError, match="line 2"):
        list(read_witness(path))


def test_keys_show_prints_the_fingerprint_and_verifier_key(signed: Signed) -> None:
    result = runner.invoke(app, ["keys", "show", "--store", str(signed.db)])
    assert result.exit_code == 0, result.output
    assert "fingerprint  SHA256:" in result.output
    vkey = result.output.split("verifier key ")[1].split()[0]
    assert vkey.startswith("labdevices/lab1+")
    # the verifier key alone is enough to verify
    ok = runner.invoke(
        app,
        [
            "audit",
            "verify",
            "--db",
            str(signed.db),
            "--key",
            vkey,
            "--witness",
            str(signed.witness),
        ],
    )
    assert ok.exit_code == 0, ok.output


def test_archive_is_self_verifying_and_leaves_the_store_whole(
    signed: Signed, tmp_path: Path
) -> None:
    with open_database(signed.db, readonly=True) as db:
        before_count = len(db.audit_records())
        last_time = db.checkpoints()[-1][1].time
    out = tmp_path / "2026.archive"
    result = runner.invoke(
        app,
        [
            "archive",
            "--db",
            str(signed.db),
            "--key",
            str(signed.key),
            "--before",
            "2100-01-01",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"{before_count} audit records" in result.output
    with open_database(signed.db, readonly=True) as db:
        assert len(db.audit_records()) == before_count  # nothing deleted
    if isinstance(signed.db, Path):
        shutil.move(signed.db, tmp_path / "elsewhere.db")  # the archive stands alone
    ok = runner.invoke(app, ["audit", "verify", "--archive", str(out), "--key", str(signed.key)])
    assert ok.exit_code == 0, ok.output
    assert last_time < "2100"
    # an edited archive is caught like a store
    import sqlite3

    conn = sqlite3.connect(out)
    conn.execute("UPDATE jobs SET patient_id = 'P-0' WHERE id = 1")
    conn.commit()
    conn.close()
    bad = runner.invoke(app, ["audit", "verify", "--archive", str(out), "--key", str(signed.key)])
    assert bad.exit_code == 1 and "jobs row 1: changed" in bad.output


def test_archive_cut_leaves_later_changes_for_a_later_archive(
    tmp_path: Path, db_path: Location
) -> None:
    signer = _signer(tmp_path)
    with open_database(db_path, signer=signer, witness=tmp_path / "w") as db:
        early = db.create_job("p1", actor="alice")
        db.checkpoint()
        cut = db.checkpoints()[-1][1].time
        late = db.create_job("p1", actor="bob")
        db.transition_job(early.id, JobState.CANCELLED, actor="alice")
    # a cut strictly after the first checkpoint covering job 1's creation
    from labdevices.store._archive import write_archive

    summary = write_archive(db_path, tmp_path / "a.db", before=cut + "0", public_key=signer.public)
    assert summary.omitted == ["job/1"] and summary.rows["jobs"] == 0
    report = verify_store(tmp_path / "a.db", public_key=signer.public, archive=True)
    assert report.exit_code == 0, report.problems
    assert late.id == 2


def test_verify_takes_store_key_and_witness_from_the_daemon_config(
    signed: Signed, tmp_path: Path
) -> None:
    config = tmp_path / "daemon.toml"
    where = f'url = "{signed.db}"' if is_postgres(signed.db) else 'path = "lab.db"'
    config.write_text(
        f'site = "lab1"\n[store]\n{where}\nwitness_file = "elsewhere/witness.jsonl"\n'
    )
    result = runner.invoke(app, ["audit", "verify", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert f"{signed.db}: verified" in result.output

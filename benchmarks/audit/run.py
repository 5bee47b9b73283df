"""Audit throughput with signed checkpoints vs the chain alone, side by side; and verify speed.

Part 1: the same varied mix of audited writes (setpoint writes, job create → running →
completed, alarm raise → acknowledge → clear, telemetry blocks), each a durable commit,
on two fresh stores: one opened with no signer (the chain as it was before #12), one
with the daemon's defaults (Ed25519 signer, a checkpoint every 256 records or 10 s and
at every job end, the witness file fsynced). Rounds alternate between the two; the
median audit records/s of each and their ratio are printed. Target: ≥ 80%.

Part 2: ``verify_store`` over a store of ``--verify-records`` audit records, half of them
telemetry blocks of 5 samples (built fast by writing the rows directly, a signed
checkpoint every 256 records).

    .venv/bin/python benchmarks/audit/run.py [--ops 600] [--rounds 5] [--verify-records 1000000]
"""

from __future__ import annotations

import argparse
import platform
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from labdevices.devices import Sample
from labdevices.store import (
    CheckpointSigner,
    JobState,
    SqliteDatabase,
    load_or_create_signing_key,
    record_hash,
    verify_store,
)
from labdevices.store._audit import GENESIS_HASH
from labdevices.store._checkpoints import note_sha256
from labdevices.store._rows import row_sha256, telemetry_digest


def workload(db: SqliteDatabase, first: int, ops: int, signed: bool) -> None:
    """Operations ``first`` … ``first + ops - 1`` of the mix."""
    t0 = 1_800_000_000.0
    for i in range(first, first + ops):
        kind = i % 4
        if kind == 0:
            for k in range(3):
                db.audit(
                    "alice", "setpoint.write", f"device/inc{k}/temperature", old=37.0, new=36.5 + k
                )
        elif kind == 1:
            job = db.create_job("printer1", actor="alice", batch_id=f"B-{i}", gcode="G28\nG1 X1\n")
            db.transition_job(job.id, JobState.RUNNING, actor="daemon")
            db.transition_job(job.id, JobState.COMPLETED, actor="daemon")
            if signed:
                db.checkpoint()  # the daemon anchors every job end
        elif kind == 2:
            alarm = db.raise_alarm("inc1", "co2_low", "warning", reason="CO2 < 4.5 %")
            db.acknowledge_alarm(alarm.id, user="carol")
            db.clear_alarm(alarm.id)
        else:
            db.insert_telemetry(
                [
                    Sample("inc1", "temperature", 37.0 + j / 100, "degC", t=t0 + i + j / 50)
                    for j in range(50)
                ]
            )


def head(db: SqliteDatabase) -> int:
    with db._tx(durable=False) as c:
        return int(c.execute("SELECT seq FROM audit_head").fetchone()[0])


def one_round(tmp: Path, ops: int, chunk: int) -> tuple[float, float]:
    """Both stores open at once, the mix run on each in alternating chunks of ``chunk``
    operations, so that the machine's load drifts over both alike. Records/s of each."""
    for p in tmp.glob("*.db*"):
        p.unlink()
    signer = CheckpointSigner(load_or_create_signing_key(tmp / "bench.key"), "labdevices/bench")
    elapsed = {False: 0.0, True: 0.0}
    with (
        SqliteDatabase(tmp / "plain.db") as plain,
        SqliteDatabase(tmp / "signed.db", signer=signer) as signed,
    ):
        start = {False: head(plain), True: head(signed)}
        for n, first in enumerate(range(0, ops, chunk)):
            order = [(False, plain), (True, signed)]
            for is_signed, db in order if n % 2 == 0 else order[::-1]:
                t = time.perf_counter()
                workload(db, first, min(chunk, ops - first), is_signed)
                elapsed[is_signed] += time.perf_counter() - t
        written = {False: head(plain) - start[False], True: head(signed) - start[True]}
    return written[False] / elapsed[False], written[True] / elapsed[True]


def throughput(ops: int, rounds: int, chunk: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as d:
        tmp = Path(d)
        plain: list[float] = []
        signed: list[float] = []
        one_round(tmp, 20, 4)  # warm up
        for r in range(rounds):
            p, s = one_round(tmp, ops, chunk)
            plain.append(p)
            signed.append(s)
            print(f"round {r + 1}: chain only {p:8.0f} rec/s   signed {s:8.0f} rec/s   {s / p:.0%}")
        p, s = statistics.median(plain), statistics.median(signed)
        ratios = [b / a for a, b in zip(plain, signed, strict=True)]
        print()
        print("| | audit records/s (median) | rounds |")
        print("| --- | ---: | --- |")
        print(f"| chain only (no signer) | {p:,.0f} | {', '.join(f'{x:,.0f}' for x in plain)} |")
        print(
            f"| signed checkpoints + witness | {s:,.0f} | {', '.join(f'{x:,.0f}' for x in signed)} |"
        )
        print(
            f"| **ratio** | **{statistics.median(ratios):.0%}** (median of rounds) | per round: "
            f"{', '.join(f'{x:.0%}' for x in ratios)} |"
        )


def build_large(path: Path, records: int, signer: CheckpointSigner) -> None:
    """Half setpoint writes, half telemetry blocks of 5 samples (each block row under the chain,
    as ``insert_telemetry`` writes them); a signed checkpoint every 256 records."""
    with SqliteDatabase(path):
        pass
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    prev = GENESIS_HASH
    last_note: str | None = None
    number = 0
    block = 0
    rows: list[tuple[object, ...]] = []
    blocks: list[tuple[object, ...]] = []
    samples: list[tuple[object, ...]] = []
    for seq in range(1, records + 1):
        when = f"2026-11-26T10:{seq // 60000 % 60:02d}:{seq // 1000 % 60:02d}.{seq % 1000:06d}Z"
        row_hash = None
        if seq % 2:
            block += 1
            t0 = 1_800_000_000.0 + seq
            data = [
                ("inc1", "temperature", t0 + k / 10, 37.0 + k / 100, "degC", "good")
                for k in range(5)
            ]
            digest = telemetry_digest(data)
            block_row = {
                "id": block,
                "count": 5,
                "t_first": t0,
                "t_last": t0 + 0.4,
                "sha256": digest,
            }
            row_hash = row_sha256("telemetry_blocks", block_row)
            blocks.append(tuple(block_row.values()))
            samples += [(*d, block) for d in data]
            obj, action, old, new = (
                f"telemetry-block/{block}",
                "telemetry.block",
                None,
                '{"samples":5}',
            )
        else:
            obj, action, old, new = (
                f"device/inc{seq % 7}/temperature",
                "setpoint.write",
                "37.0",
                "36.5",
            )
        fields = {
            "seq": seq,
            "time": when,
            "actor": "daemon",
            "action": action,
            "object": obj,
            "old": old,
            "new": new,
            "reason": None,
            "prev_hash": prev,
            "row_sha256": row_hash,
        }
        h = record_hash(**fields)  # type: ignore[arg-type]
        rows.append((seq, when, "daemon", action, obj, old, new, None, prev, h, row_hash))
        prev = h
        if seq % 256 == 0 or seq == records:
            conn.executemany(
                "INSERT INTO audit (seq, time, actor, action, object, old_value, new_value, reason,"
                " prev_hash, hash, row_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.executemany(
                "INSERT INTO telemetry_blocks (id, count, t_first, t_last, sha256) VALUES (?, ?, ?, ?, ?)",
                blocks,
            )
            conn.executemany(
                "INSERT INTO telemetry (device, signal, t, value, unit, quality, block)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                samples,
            )
            rows, blocks, samples = [], [], []
            number += 1
            cp = signer.sign(
                size=seq,
                head=h,
                time="2026-11-26T11:00:00.000000Z",
                prev=GENESIS_HASH if last_note is None else note_sha256(last_note),
                state="running",
            )
            conn.execute(
                "INSERT INTO checkpoints (id, size, head, time, prev, note) VALUES (?, ?, ?, ?, ?, ?)",
                (number, cp.size, cp.head, cp.time, cp.prev, cp.note),
            )
            last_note = cp.note
    conn.execute("UPDATE audit_head SET seq = ?, hash = ?", (records, prev))
    conn.execute("COMMIT")
    conn.close()


def verify_speed(records: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as d:
        tmp = Path(d)
        signer = CheckpointSigner(load_or_create_signing_key(tmp / "k"), "labdevices/bench")
        path = tmp / "large.db"
        t = time.perf_counter()
        build_large(path, records, signer)
        built = time.perf_counter() - t
        t = time.perf_counter()
        report = verify_store(path, public_key=signer.public)
        dt = time.perf_counter() - t
        assert report.exit_code == 0, report.problems
        print(
            f"\nverify_store: {records:,} audit records, {report.checkpoints:,} checkpoints, "
            f"{report.rows_checked['telemetry_blocks']:,} telemetry blocks of 5 samples "
            f"in {dt:.1f} s ({records / dt:,.0f} records/s; store built in {built:.0f} s, "
            f"{path.stat().st_size / 1e6:.0f} MB)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--ops", type=int, default=600, help="rounds of the mix per run")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--chunk", type=int, default=20, help="operations per alternation")
    ap.add_argument("--verify-records", type=int, default=1_000_000)
    args = ap.parse_args()
    print(
        f"{platform.machine()} {platform.processor() or ''} Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}"
    )
    throughput(args.ops, args.rounds, args.chunk)
    if args.verify_records:
        verify_speed(args.verify_records)


if __name__ == "__main__":
    main()

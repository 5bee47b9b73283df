"""Soak benchmark: the daemon (``labdevices daemon``) under a steady high telemetry rate for a long
time, with retention on; its RSS sampled, after a warm-up, until the end.

Three processes: simulated Modbus sensors whose value changes at every poll (so every
sample is stored: no deadband saves the store), the daemon started through its CLI with
Mosquitto as its broker, and this one, which samples the daemon's RSS (psutil) and, at
the end, counts what the store holds. Retention keeps raw samples ``--raw-minutes``
(a fraction of ``raw_days``), so the roll-up, archive and removal run during the soak.

    .venv/bin/python benchmarks/soak/run.py [--minutes 30] [--warmup-minutes 5] [--devices 55]
        [--raw-minutes 2] [--trace FILE]

``--trace FILE``: run the daemon under tracemalloc and append, every minute, the
allocations that grew most since the end of the warm-up (slow; to find what grows).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from labdevices.profiles import ModbusProfile, load_profile
from labdevices.testing._mqtt import MosquittoBroker

HERE = Path(__file__).resolve().parent
PROFILE = HERE.parent / "telemetry" / "bench-sensor.toml"
SITE = "soak"


class Ramp:
    """A value that moves at every poll (a sawtooth from ``base`` to ``base`` + 10)."""

    def __init__(self, base: float) -> None:
        self.base = base

    def step(self, dt_s: float) -> None:
        pass

    def get(self, signal: str) -> float | bool:
        return self.base + (time.monotonic() * 10.0) % 10.0

    def set(self, signal: str, value: float | bool) -> None:
        pass


async def serve(devices: int) -> None:
    from labdevices.sim.modbus import ModbusSimulator, SimUnit

    profile = load_profile(PROFILE)
    assert isinstance(profile, ModbusProfile)
    sims = [ModbusSimulator({1: SimUnit(profile, Ramp(20.0 + d))}) for d in range(devices)]
    ports = [await sim.serve_tcp() for sim in sims]
    print(json.dumps(ports), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_reader(sys.stdin.fileno(), stop.set)  # parent closes stdin
    await stop.wait()
    for sim in sims:
        await sim.stop()


def write_config(
    path: Path, broker: MosquittoBroker, ports: list[int], db: Path, raw_minutes: float
) -> None:
    lines = [
        f'site = "{SITE}"',
        "[bus]",
        f'url = "{broker.url}"',
        "[auth]",
        "required = false",
        "[store]",
        f'path = "{db}"',
    ]
    if raw_minutes > 0:
        lines += ["[retention]", f"raw_days = {raw_minutes / 1440!r}", "interval_minutes = 1.0"]
    for i, port in enumerate(ports):
        lines += [
            f"[devices.sensor{i:02d}]",
            f'profile = "{PROFILE}"',
            f'address = "tcp://127.0.0.1:{port}?unit=1"',
            "poll_interval_s = 0.1",
        ]
    path.write_text("\n".join(lines) + "\n")


def store_size(db: Path) -> tuple[int, int]:
    """Bytes on disk: the store (file and WAL), and the retention archives beside it."""
    live = sum(f.stat().st_size for f in (db, db.with_name(db.name + "-wal")) if f.exists())
    archives = db.with_name(db.name + ".archive")
    kept = sum(f.stat().st_size for f in archives.iterdir()) if archives.is_dir() else 0
    return live, kept


def store_counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        q = {
            "raw_rows": "SELECT COALESCE(SUM(count), 0) FROM telemetry_blocks",
            "rolled_up_rows": "SELECT COALESCE(SUM(samples), 0) FROM telemetry_removals",
            "rollups": "SELECT COUNT(*) FROM telemetry_rollups",
            "audit_records": "SELECT COALESCE(MAX(seq), 0) FROM audit",
        }
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "telemetry_removals" not in tables:  # a store from before retention
            q["rolled_up_rows"] = q["rollups"] = "SELECT 0"
        return {k: int(conn.execute(sql).fetchone()[0]) for k, sql in q.items()}
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="measured, after the warm-up")
    parser.add_argument("--warmup-minutes", type=float, default=5.0)
    parser.add_argument("--devices", type=int, default=55, help="each polled at 10 Hz")
    parser.add_argument(
        "--raw-minutes", type=float, default=2.0, help="raw samples kept (0: no retention)"
    )
    parser.add_argument("--every", type=float, default=10.0, help="RSS sampled every N s")
    parser.add_argument("--trace", type=Path, default=None)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.devices))
        return
    with tempfile.TemporaryDirectory(prefix="labdevices-soak-") as tmp:
        work = Path(tmp)
        broker = MosquittoBroker(work)
        broker.start()
        sims = subprocess.Popen(
            [sys.executable, __file__, "--serve", f"--devices={args.devices}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        daemon = None
        db = work / "soak.db"
        try:
            assert sims.stdout is not None
            ports = json.loads(sims.stdout.readline())
            config = work / "daemon.toml"
            write_config(config, broker, ports, db, args.raw_minutes)
            cli = [sys.executable, "-m", "labdevices"]
            if args.trace is not None:
                warmup_s = args.warmup_minutes * 60
                cli = [
                    sys.executable,
                    str(HERE / "_traced.py"),
                    str(args.trace),
                    str(warmup_s),
                    "60",
                ]
            daemon = subprocess.Popen(
                [*cli, "daemon", "-c", str(config)],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            assert daemon.stdout is not None
            ready = daemon.stdout.readline()
            assert "ready" in ready, ready
            threading.Thread(target=daemon.stdout.read, daemon=True).start()  # keep it drained
            result = sample(psutil.Process(daemon.pid), db, args)
        finally:
            if daemon is not None:
                daemon.terminate()
                daemon.wait(timeout=60)
            assert sims.stdin is not None
            sims.stdin.close()
            sims.wait(timeout=10)
            broker.stop()
        result.update(store_counts(db))
        result["store_bytes_end"], result["archive_bytes_end"] = store_size(db)
    report(args, result)


def sample(proc: psutil.Process, db: Path, args: argparse.Namespace) -> dict[str, float]:
    """RSS every ``--every`` s; the warm-up's samples are printed but not judged."""
    t0 = time.monotonic()
    warm_end = t0 + args.warmup_minutes * 60
    end = warm_end + args.minutes * 60
    rss: list[float] = []
    start_counts: dict[str, int] = {}
    size0 = archive0 = 0
    cpu0 = proc.cpu_times()
    next_t = t0
    while True:
        next_t += args.every
        time.sleep(max(0.0, next_t - time.monotonic()))  # a sampling period, not a readiness wait
        now = time.monotonic()
        mib = proc.memory_info().rss / 2**20
        warm = now < warm_end
        if not warm:
            if not rss:
                start_counts = store_counts(db)
                size0, archive0 = store_size(db)
                cpu0, measured_from = proc.cpu_times(), now
            rss.append(mib)
        print(f"{now - t0:7.0f} s  RSS {mib:7.1f} MiB{'  (warm-up)' if warm else ''}", flush=True)
        if now >= end:
            break
    cpu1 = proc.cpu_times()
    counts = store_counts(db)
    measured = now - measured_from
    stored = (counts["raw_rows"] + counts["rolled_up_rows"]) - (
        start_counts["raw_rows"] + start_counts["rolled_up_rows"]
    )
    return {
        "rss_start": rss[0],
        "rss_end": rss[-1],
        "rss_max": max(rss),
        "rss_min": min(rss),
        "samples": len(rss),
        "measured_s": measured,
        "rows_stored": stored,
        "rows_per_s": stored / measured,
        "store_bytes_start": size0,
        "archive_bytes_start": archive0,
        "cpu_cores": (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / measured,
    }


def report(args: argparse.Namespace, r: dict[str, float]) -> None:
    load = os.getloadavg()
    spread = (r["rss_max"] - r["rss_min"]) / r["rss_start"] * 100
    drift = (r["rss_end"] - r["rss_start"]) / r["rss_start"] * 100
    print(
        f"machine: {platform.machine()} {_cpu_model()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average {load[0]:.1f} {load[1]:.1f}"
    )
    print(
        f"{args.devices} devices x 10 Hz, raw kept {args.raw_minutes:g} min, "
        f"warm-up {args.warmup_minutes:g} min, measured {r['measured_s'] / 60:.1f} min"
    )
    print(
        f"RSS after warm-up {r['rss_start']:.1f} MiB, end {r['rss_end']:.1f} MiB, "
        f"max {r['rss_max']:.1f} MiB, min {r['rss_min']:.1f} MiB: "
        f"spread {spread:.1f}% (target < 5%), end vs start {drift:+.1f}%"
    )
    print(
        f"stored {r['rows_stored']:,.0f} rows ({r['rows_per_s']:,.0f} rows/s); now raw "
        f"{r['raw_rows']:,.0f}, rolled up {r['rolled_up_rows']:,.0f} into {r['rollups']:,.0f} "
        f"minute rows; {r['audit_records']:,.0f} audit records"
    )
    hours = r["measured_s"] / 3600
    mib = 2**20
    growth = (r["store_bytes_end"] - r["store_bytes_start"]) / mib
    archived = (r["archive_bytes_end"] - r["archive_bytes_start"]) / mib
    print(
        f"store: {r['store_bytes_start'] / mib:.1f} MiB after warm-up, "
        f"{r['store_bytes_end'] / mib:.1f} MiB at the end ({growth:+.1f} MiB, "
        f"{growth / hours:+.1f} MiB/h); archives beside it {archived:+.1f} MiB "
        f"({archived / hours:+.1f} MiB/h, {r['archive_bytes_end'] / mib:.1f} MiB in all); "
        f"daemon {r['cpu_cores'] * 100:.0f}% of one core"
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()

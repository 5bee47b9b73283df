"""Store benchmark: telemetry ingest into PostgreSQL vs SQLite, side by side in one run.

Through the public API with its defaults, as the daemon writes: ``open_store(url)`` then
``insert_telemetry(batch)`` (one transaction per batch, the batch's hash entering the audit
chain). The daemon flushes every 0.5 s, so a batch holds half a second of samples: 265 at the
issue's 530 rows/s, 2,500 at 5,000 rows/s (10 daemons x 50 devices x 10 Hz into one store).
Both stores on this machine's disk; PostgreSQL is a throwaway server (initdb + pg_ctl, fsync
on, default settings otherwise), started as the tests start theirs, unless ``--url`` names one.
Each store is written with the other idle; a final ``audit verify`` checks what was written.

    .venv/bin/python benchmarks/store/run.py [--batches 200] [--sizes 10,265,2500] [--url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from labdevices.store import TelemetryPoint, open_store, verify_store

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the tests' PostgreSQL helper
from tests._postgres import PostgresServer


def _batch(size: int, n: int) -> list[TelemetryPoint]:
    t0 = 1_800_000_000.0 + n
    return [
        TelemetryPoint(
            f"dev{k % 50}", "temperature", t0 + k / size, 37.0 + (k % 7) / 10, "degC", "good"
        )
        for k in range(size)
    ]


async def _ingest(location: str | Path, size: int, batches: int) -> float:
    """Rows per second into the store at ``location``."""
    data = [_batch(size, n) for n in range(batches)]
    async with open_store(location) as store:
        await store.insert_telemetry(data[0])  # warm: connection, prepared statements
        start = time.perf_counter()
        for batch in data[1:]:
            await store.insert_telemetry(batch)
        elapsed = time.perf_counter() - start
    return size * (batches - 1) / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--sizes", default="10,265,2500")
    parser.add_argument(
        "--url", help="an existing PostgreSQL database (default: a throwaway server)"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    server = None if args.url else PostgresServer.start(fsync=True)
    try:
        print(
            f"# {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"{args.batches} batches per size"
        )
        print("| batch (rows) | SQLite rows/s | PostgreSQL rows/s | PostgreSQL / SQLite |")
        print("| ---: | ---: | ---: | ---: |")
        for size in sizes:
            with tempfile.TemporaryDirectory(prefix="labdevices-bench-") as tmp:
                sqlite_rate = await _ingest(Path(tmp) / "bench.db", size, args.batches)
                url = server.url(server.create_database()) if server else args.url
                pg_rate = await _ingest(url, size, args.batches)
                for where in (Path(tmp) / "bench.db", url):
                    report = verify_store(where, public_key=None)
                    assert not report.problems, report.problems
            print(
                f"| {size:,} | {sqlite_rate:,.0f} | {pg_rate:,.0f} | {pg_rate / sqlite_rate:.2f}x |",
                flush=True,
            )
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())

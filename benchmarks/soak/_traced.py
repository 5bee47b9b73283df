"""``labdevices`` with tracemalloc: every ``--every`` seconds, the allocations that grew most since
the first snapshot (taken after ``--warmup`` seconds) are appended to ``--out``.

    python benchmarks/soak/_traced.py OUT WARMUP EVERY daemon -c CONFIG

A diagnostic for ``run.py --trace``: it finds what grows, by line, instead of guessing.
"""

from __future__ import annotations

import sys
import threading
import time
import tracemalloc
from pathlib import Path


def _watch(out: Path, warmup: float, every: float) -> None:
    time.sleep(warmup)
    base = tracemalloc.take_snapshot()
    started = time.monotonic()
    while True:
        time.sleep(every)
        snap = tracemalloc.take_snapshot()
        stats = snap.compare_to(base, "traceback")[:12]
        lines = [f"== {time.monotonic() - started:.0f} s after the base snapshot"]
        for stat in stats:
            lines.append(f"{stat.size_diff / 1024:+.1f} KiB, {stat.count_diff:+d} blocks")
            lines += [f"    {frame}" for frame in stat.traceback.format()[-8:]]
        with out.open("a") as f:
            f.write("\n".join(lines) + "\n")


def main() -> None:
    out, warmup, every, *argv = sys.argv[1:]
    tracemalloc.start(8)
    threading.Thread(
        target=_watch, args=(Path(out), float(warmup), float(every)), daemon=True
    ).start()
    from labdevices.cli import main as labdevices

    sys.argv = ["labdevices", *argv]
    labdevices()


if __name__ == "__main__":
    main()

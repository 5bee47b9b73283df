"""Streaming benchmark: labdevices' GcodePrinter against printrun's printcore.

Streams a 100,000-line G-code file into the simulated printer over a
pseudo-terminal, both hosts against the same simulator (run in its own process,
so host and firmware have a core each), in four profiles:

1. instant: no motion time, an instant ``ok`` — the host is the bottleneck;
2. ok-1ms: 1 ms latency before each ``ok`` — round trips dominate;
3. 115200-baud: the link paced at 115200 baud — the wire is the limit;
4. corrupt-1e-3: one corrupted line in 1,000.

Run: ``.venv/bin/python benchmarks/streaming/run.py [--lines N] [--profiles 1,2,3,4]``
(needs printrun: ``.venv/bin/pip install --no-deps printrun``, which ``make test`` does).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from labdevices.devices.gcode import GcodePrinter, JobOutcome
from labdevices.profiles import GcodeProfile, load_profile
from labdevices.protocols import frame

HERE = Path(__file__).resolve().parent

PROFILES: dict[str, tuple[str, dict[str, object]]] = {
    "1": ("instant", {}),
    "2": ("ok-1ms", {"ok_delay_s": 0.001}),
    "3": ("115200-baud", {"baudrate": 115200}),
    "4": ("corrupt-1e-3", {"faults": {"corrupt_rate": 0.001}, "seed": 7}),
}


def program(n: int) -> list[str]:
    """Unique lines (so loss and duplication can be counted), typical length."""
    return [f"G1 X{(i % 1000) / 10:.1f} Y{i // 1000}.{i % 7} F1200" for i in range(n)]


@dataclass
class Run:
    host: str
    seconds: float
    lost: int
    duplicated: int

    def rate(self, n: int) -> float:
        return n / self.seconds


class SimProcess:
    def __init__(self, config: dict[str, object]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "_sim_server.py"), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = self.proc.stdout.readline().strip()
        if not self.port:
            raise RuntimeError("simulator did not start")

    def executed(self) -> list[str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            path = f.name
        self.proc.stdin.write(f"dump {path}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "done"
        data: list[str] = json.loads(Path(path).read_text())
        os.unlink(path)
        return data

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def count_errors(lines: list[str], executed: list[str]) -> tuple[int, int]:
    want = set(lines)
    seen = collections.Counter(c for c in executed if c in want)
    lost = sum(1 for c in lines if seen[c] == 0)
    duplicated = sum(n - 1 for n in seen.values() if n > 1)
    return lost, duplicated


def run_ours(port: str, lines: list[str], profile: GcodeProfile) -> float:
    async def go() -> float:
        async with GcodePrinter("bench", profile, port, reconnect=False) as printer:
            t0 = time.perf_counter()
            result = await printer.run_job(lines)
            elapsed = time.perf_counter() - t0
            if result.outcome != JobOutcome.COMPLETED:
                raise RuntimeError(f"labdevices job ended {result.outcome}: {result.error}")
            return elapsed

    return asyncio.run(go())


def run_printcore(port: str, lines: list[str]) -> float:
    from printrun import gcoder
    from printrun.printcore import printcore

    p = printcore()
    done = threading.Event()
    p.endcb = done.set
    p.connect(port, 115200)
    deadline = time.monotonic() + 30
    while not p.online:  # printcore offers no event for this
        if time.monotonic() > deadline:
            raise RuntimeError("printcore did not come online")
        time.sleep(0.01)
    gcode = gcoder.LightGCode(lines)
    t0 = time.perf_counter()
    p.startprint(gcode)
    done.wait()
    elapsed = time.perf_counter() - t0
    p.disconnect()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--profiles", default="1,2,3,4")
    ap.add_argument("--hosts", default="labdevices,printcore")
    args = ap.parse_args()
    profile = load_profile("marlin-pneumatic")
    assert isinstance(profile, GcodeProfile)
    lines = program(args.lines)
    mean_framed = sum(len(frame(i + 1, c)) for i, c in enumerate(lines)) / len(lines)
    print(f"# {args.lines} lines, mean framed line {mean_framed:.1f} bytes")
    print(
        f"# machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}"
    )
    rows = []
    for key in args.profiles.split(","):
        name, extra = PROFILES[key]
        results: dict[str, Run] = {}
        for host in args.hosts.split(","):
            sim = SimProcess({"profile": "marlin-pneumatic", "time_scale": 0.0, **extra})
            try:
                if host == "labdevices":
                    seconds = run_ours(sim.port, lines, profile)
                else:
                    seconds = run_printcore(sim.port, lines)
                lost, dup = count_errors(lines, sim.executed())
            finally:
                sim.close()
            results[host] = Run(host, seconds, lost, dup)
            print(
                f"{key} {name:14s} {host:10s} {args.lines / seconds:9.0f} lines/s  lost {lost}  duplicated {dup}",
                flush=True,
            )
        ours = results.get("labdevices")
        peer = results.get("printcore")
        ratio = ours.rate(args.lines) / peer.rate(args.lines) if ours and peer else float("nan")
        wire = (115200 / 10) / mean_framed if key == "3" else None
        rows.append((key, name, ours, peer, ratio, wire))
    print()
    print(
        "| profile | labdevices lines/s | printcore lines/s | ratio | wire limit lines/s | labdevices / wire | lost / duplicated (ours, printcore) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for key, name, ours, peer, ratio, wire in rows:
        o = ours.rate(args.lines) if ours else float("nan")
        p = peer.rate(args.lines) if peer else float("nan")
        w = f"{wire:.0f}" if wire else "–"
        ow = f"{o / wire:.0%}" if wire else "–"
        errs = f"{ours.lost if ours else '–'}/{ours.duplicated if ours else '–'}, {peer.lost if peer else '–'}/{peer.duplicated if peer else '–'}"
        print(f"| ({key}) {name} | {o:,.0f} | {p:,.0f} | {ratio:.1f}x | {w} | {ow} | {errs} |")


if __name__ == "__main__":
    main()

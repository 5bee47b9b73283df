"""Streaming benchmark: labdevices' GcodePrinter against printrun's printcore.

Streams G-code into a printer over a pseudo-terminal, both hosts against the same
firmware, lines of about 30 and 40 bytes framed (``--line-bytes``):

1. instant: no motion time, an instant ``ok`` — the host is the bottleneck;
2. ok-1ms: 1 ms latency before each ``ok`` — round trips dominate;
3. 115200-baud: the link paced at 115200 baud — the wire is the limit;
4. corrupt-1e-3: one corrupted line in 1,000;
5. recovery: 115200 baud, one checksum error in 500, the firmware's receive
   buffer and command ring equal to the profile's (128 bytes, 4 lines);
V. independent firmware: OctoPrint's virtual Marlin (receive buffer 128 bytes,
   4-line command buffer), one line in 500 refused and asked for again.

1–5 run the project's simulator in its own process (host and firmware have a
core each); V runs OctoPrint's virtual printer in the benchmark's process (its
threads share the interpreter with the host under test).

Then cancel latency (``--cancel-runs``): ``labdevices print`` streams ten-second
moves at real time into the simulator at 115200 baud; SIGINT → ``M410`` acted on
by the firmware's emergency parser, and for how long the head kept moving. For
printcore, ``cancelprint()`` → the end of the motion the firmware still holds.

Run: ``.venv/bin/python benchmarks/streaming/run.py [--lines N] [--profiles 1,2,3,4,5,V]``
(needs printrun and OctoPrint, installed without dependencies by ``make``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labdevices.devices.gcode import GcodePrinter, JobOutcome
from labdevices.profiles import GcodeProfile, load_profile
from labdevices.protocols import frame

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

PROFILES: dict[str, tuple[str, dict[str, object]]] = {
    "1": ("instant", {}),
    "2": ("ok-1ms", {"ok_delay_s": 0.001}),
    "3": ("115200-baud", {"baudrate": 115200}),
    "4": ("corrupt-1e-3", {"faults": {"corrupt_rate": 0.001}, "seed": 7}),
    "5": ("recovery 1/500", {"baudrate": 115200, "faults": {"corrupt_rate": 0.002}, "seed": 7}),
    "V": ("virtual-marlin 1/500", {}),
}
PACED = {"3", "5"}

LINES: dict[int, Callable[[int], str]] = {
    30: lambda i: f"G1 X{(i % 1000) / 10:.1f} Y{i // 1000}.{i % 7} F1200",
    40: lambda i: f"G1 X{(i % 1000) / 10:.2f} Y{i // 1000}.{i % 7}5 Z1.{i % 9}05 F1200.0",
}


#: For OctoPrint's virtual printer, which sleeps a tenth of each move's duration: short moves.
SHORT_LINES: dict[int, Callable[[int], str]] = {
    30: lambda i: f"G1 X0.{i % 1000:03d} Y0.{i // 1000:02d} F9999",
    40: lambda i: f"G1 X0.{i % 1000:03d} Y0.{i // 1000:02d} Z0.{i % 7}50 F9999.0",
}


def program(n: int, size: int, short: bool = False) -> list[str]:
    """Unique lines (so loss and duplication can be counted) of about ``size`` bytes framed."""
    make = (SHORT_LINES if short else LINES)[size]
    return [make(i) for i in range(n)]


def mean_framed(lines: list[str]) -> float:
    return sum(len(frame(i + 1, c)) for i, c in enumerate(lines)) / len(lines)


@dataclass
class Run:
    host: str
    lines: int
    seconds: float
    lost: int
    duplicated: int

    @property
    def rate(self) -> float:
        return self.lines / self.seconds


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

    def _ask(self, command: str) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            path = f.name
        self.proc.stdin.write(f"{command} {path}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "done"
        data = json.loads(Path(path).read_text())
        os.unlink(path)
        return data

    def executed(self) -> list[str]:
        result: list[str] = self._ask("dump")
        return result

    def events(self) -> dict[str, Any]:
        result: dict[str, Any] = self._ask("events")
        return result

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
        async with GcodePrinter(
            "bench", profile, port, reconnect=False, report_interval_s=60
        ) as printer:
            t0 = time.perf_counter()
            result = await printer.run_job(lines)
            elapsed = time.perf_counter() - t0
            if result.outcome != JobOutcome.COMPLETED:
                raise RuntimeError(f"labdevices job ended {result.outcome}: {result.error}")
            return elapsed

    return asyncio.run(go())


def _printcore_online(port: str) -> Any:
    from printrun.printcore import printcore

    p = printcore()
    p.connect(port, 115200)
    deadline = time.monotonic() + 30
    while not p.online:  # printcore offers no event for this
        if time.monotonic() > deadline:
            raise RuntimeError("printcore did not come online")
        time.sleep(0.01)
    return p


def run_printcore(port: str, lines: list[str]) -> float:
    from printrun import gcoder

    p = _printcore_online(port)
    done = threading.Event()
    p.endcb = done.set
    gcode = gcoder.LightGCode(lines)
    t0 = time.perf_counter()
    p.startprint(gcode)
    done.wait()
    elapsed = time.perf_counter() - t0
    p.disconnect()
    return elapsed


def run_virtual(host: str, lines: list[str], profile: GcodeProfile) -> Run:
    sys.path.insert(0, str(ROOT / "tests" / "gcode"))
    from virtual_marlin import VirtualMarlin

    with VirtualMarlin(
        rx_buffer_bytes=profile.serial.rx_buffer_bytes,
        command_buffer=profile.serial.window_lines,
        fault_rate=1 / 500,
        max_line=len(lines) + 100,
        seed=7,
    ) as vm:
        if host == "labdevices":
            seconds = run_ours(vm.port, lines, profile)
        else:
            seconds = run_printcore(vm.port, lines)
        executed = list(vm.executed)
        if vm.dropped_bytes:
            print(f"# {host}: virtual Marlin dropped {vm.dropped_bytes} bytes (buffer overrun)")
    lost, dup = count_errors(lines, executed)
    return Run(host, len(lines), seconds, lost, dup)


def stream_table(args: argparse.Namespace, profile: GcodeProfile) -> None:
    rows = []
    for size in (int(s) for s in args.line_bytes.split(",")):
        for key in args.profiles.split(","):
            name, extra = PROFILES[key]
            n = args.paced_lines if key in PACED else args.lines
            if key == "V":
                n = args.virtual_lines
            lines = program(n, size, short=key == "V")
            framed = mean_framed(lines)
            results: dict[str, Run] = {}
            for host in args.hosts.split(","):
                if key == "V" and host == "printcore":
                    # printcore's first line, `M110 N-1`, crashes the virtual printer's parser
                    continue
                if key == "V":
                    results[host] = run_virtual(host, lines, profile)
                else:
                    sim = SimProcess({"profile": "marlin-pneumatic", "time_scale": 0.0, **extra})
                    try:
                        if host == "labdevices":
                            seconds = run_ours(sim.port, lines, profile)
                        else:
                            seconds = run_printcore(sim.port, lines)
                        lost, dup = count_errors(lines, sim.executed())
                    finally:
                        sim.close()
                    results[host] = Run(host, n, seconds, lost, dup)
                r = results[host]
                print(
                    f"{size}B {key} {name:22s} {host:10s} {r.rate:9.0f} lines/s  "
                    f"lost {r.lost}  duplicated {r.duplicated}",
                    flush=True,
                )
            wire = (115200 / 10) / framed if key in PACED else None
            rows.append((size, framed, key, name, n, results, wire))
    print()
    print(
        "| line | profile | lines | labdevices lines/s | printcore lines/s | ratio "
        "| wire limit lines/s | labdevices / wire | lost / duplicated (ours, printcore) |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for _size, framed, key, name, n, results, wire in rows:
        ours, peer = results.get("labdevices"), results.get("printcore")
        o = ours.rate if ours else float("nan")
        p = peer.rate if peer else float("nan")
        ratio = f"{o / p:.1f}x" if peer else "–"
        p_text = f"{p:,.0f}" if peer else "–"
        w = f"{wire:.0f}" if wire else "–"
        ow = f"{o / wire:.0%}" if wire else "–"
        errs = (
            f"{ours.lost if ours else '–'}/{ours.duplicated if ours else '–'}, "
            f"{peer.lost if peer else '–'}/{peer.duplicated if peer else '–'}"
        )
        print(
            f"| {framed:.1f} B | ({key}) {name} | {n:,} | {o:,.0f} | {p_text} | {ratio} "
            f"| {w} | {ow} | {errs} |"
        )


#: Ten-second moves: 100 mm at 600 mm/min.
LONG_MOVES = ["G90", "M126 S255", "M42 P6 S128"] + [
    f"G1 X{10 + (i % 2) * 100} Y{i % 50} F600" for i in range(200)
]
SIM_REAL_TIME = {"profile": "marlin-pneumatic", "time_scale": 1.0, "baudrate": 115200}


def _wait_executed(sim: SimProcess, n: int) -> None:
    deadline = time.monotonic() + 60
    while sim.events()["executed"] < n:
        if time.monotonic() > deadline:
            raise RuntimeError("the print did not start")
        time.sleep(0.05)


def cancel_ours(delay_s: float) -> tuple[float, float]:
    """SIGINT to `labdevices print` → M410 at the firmware, in seconds; and motion after SIGINT."""
    sim = SimProcess(SIM_REAL_TIME)
    with tempfile.NamedTemporaryFile("w", suffix=".gcode", delete=False) as f:
        f.write("\n".join(LONG_MOVES) + "\n")
        path = f.name
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "labdevices", "print", path, "--port", sim.port],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _wait_executed(sim, 12)
        time.sleep(delay_s)  # land the signal anywhere inside a move
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        events = sim.events()
        stops = [t for t, word in events["emergency"] if word == "M410"]
        if not stops:
            raise RuntimeError("the firmware never saw M410")
        return stops[0] - t0, stops[0] - t0
    finally:
        sim.close()
        os.unlink(path)


def cancel_printcore(delay_s: float) -> float:
    """printcore's cancelprint() → the end of the motion the firmware still holds, in seconds."""
    from printrun import gcoder

    sim = SimProcess(SIM_REAL_TIME)
    try:
        p = _printcore_online(sim.port)
        p.startprint(gcoder.LightGCode(LONG_MOVES))
        _wait_executed(sim, 12)
        time.sleep(delay_s)
        t0 = time.monotonic()
        p.cancelprint()
        events = sim.events()
        p.disconnect()
        return float(events["motion_ends"]) - t0
    finally:
        sim.close()


def cancel_table(runs: int) -> None:
    print()
    print(f"# cancel with ten-second moves at real time, 115200 baud, {runs} runs each")
    ours = [cancel_ours(0.9 * i / max(1, runs)) for i in range(runs)]
    latency = [o[0] * 1000 for o in ours]
    print(
        f"labdevices: SIGINT → M410 at the firmware: median {statistics.median(latency):.1f} ms, "
        f"max {max(latency):.1f} ms; motion after SIGINT: max {max(o[1] for o in ours):.3f} s"
    )
    peer = [cancel_printcore(0.9 * i / max(1, runs)) for i in range(runs)]
    print(
        f"printcore: cancelprint() → motion ends: median {statistics.median(peer):.1f} s, "
        f"max {max(peer):.1f} s (it sends no stop; the firmware finishes what it holds)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--paced-lines", type=int, default=5_000, help="lines in profiles 3 and 5")
    ap.add_argument("--virtual-lines", type=int, default=5_000, help="lines in profile V")
    ap.add_argument("--line-bytes", default="30,40")
    ap.add_argument("--profiles", default="1,2,3,4,5,V")
    ap.add_argument("--hosts", default="labdevices,printcore")
    ap.add_argument("--cancel-runs", type=int, default=5)
    args = ap.parse_args()
    # printcore logs every firmware error on the root logger, the driver its warnings
    logging.basicConfig(level=logging.CRITICAL)
    profile = load_profile("marlin-pneumatic")
    assert isinstance(profile, GcodeProfile)
    print(
        f"# machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.platform()}"
    )
    if args.profiles:
        stream_table(args, profile)
    if args.cancel_runs:
        cancel_table(args.cancel_runs)


if __name__ == "__main__":
    main()

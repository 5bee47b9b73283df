"""Telemetry benchmark: 50 simulated devices at 10 samples/s each through the daemon to an MQTT
subscriber on Mosquitto.

Three processes: the simulated Modbus devices, the daemon (``labdevices daemon``),
and this one, which subscribes to every device's telemetry and measures the latency
from each sample's timestamp (taken by the driver when the reading arrived) to its
arrival here, the sustained rate, the daemon's CPU and memory (psutil), and then the
round-trip latency of ``read`` commands (audited, so each one is a durable store write).

    .venv/bin/python benchmarks/telemetry/run.py [--devices 50] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from labdevices.client import LabClient
from labdevices.profiles import ModbusProfile, load_profile
from labdevices.testing._auth import issue_session
from labdevices.testing._mqtt import MosquittoBroker

HERE = Path(__file__).resolve().parent
PROFILE = HERE / "bench-sensor.toml"
SITE = "bench"


# -- simulated devices (their own process) -------------------------------------------------


async def serve(devices: int) -> None:
    from labdevices.sim.modbus import ModbusSimulator, SimUnit, StaticModel

    profile = load_profile(PROFILE)
    assert isinstance(profile, ModbusProfile)
    sims = [
        ModbusSimulator({1: SimUnit(profile, StaticModel({"temperature": 2000 + d}))})
        for d in range(devices)
    ]
    ports = [await sim.serve_tcp() for sim in sims]
    print(json.dumps(ports), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_reader(sys.stdin.fileno(), stop.set)  # parent closes stdin
    await stop.wait()
    for sim in sims:
        await sim.stop()


# -- measurements --------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def write_config(path: Path, broker: MosquittoBroker, ports: list[int], db: Path) -> None:
    lines = [
        f'site = "{SITE}"',
        "[bus]",
        f'url = "{broker.url}"',
        "[store]",
        f'path = "{db}"',
    ]
    for i, port in enumerate(ports):
        lines += [
            f"[devices.sensor{i:02d}]",
            f'profile = "{PROFILE}"',
            f'address = "tcp://127.0.0.1:{port}?unit=1"',
            "poll_interval_s = 0.1",
        ]
    path.write_text("\n".join(lines) + "\n")


async def measure(
    broker: MosquittoBroker,
    daemon: psutil.Process,
    devices: int,
    seconds: float,
    commands: int,
    db: Path,
) -> dict[str, float]:
    latencies: list[float] = []
    received = 0
    session = issue_session(db, "bench", site=SITE, roles=["viewer"])
    async with LabClient(broker.url, site=SITE, session=session) as lab:
        async with lab.bus.subscribe(lab.topics.all_telemetry()) as sub:
            # Warm up until every device has reported, then measure.
            seen: set[str] = set()
            async with asyncio.timeout(60):
                while len(seen) < devices:
                    seen.add((await sub.get()).json()["device"])
            while not sub._queue.empty():
                sub._queue.get_nowait()
            cpu0 = daemon.cpu_times()
            t0 = time.monotonic()
            end = t0 + seconds
            rss_peak = 0
            while (now := time.monotonic()) < end:
                try:
                    async with asyncio.timeout(end - now):
                        message = await sub.get()
                except TimeoutError:
                    break
                arrived = time.time()
                batch = json.loads(message.payload)
                for sample in batch["samples"]:
                    latencies.append((arrived - sample["t"]) * 1000)
                received += len(batch["samples"])
                if received % 1000 < len(batch["samples"]):
                    rss_peak = max(rss_peak, daemon.memory_info().rss)
            elapsed = time.monotonic() - t0
            cpu1 = daemon.cpu_times()
            rss_peak = max(rss_peak, daemon.memory_info().rss)
            dropped = sub.dropped
        round_trips: list[float] = []
        for i in range(commands):
            start = time.perf_counter()
            await lab.read(f"sensor{i % devices:02d}", "temperature")
            round_trips.append((time.perf_counter() - start) * 1000)
    cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / elapsed
    return {
        "samples": received,
        "rate": received / elapsed,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies, default=float("nan")),
        "cpu_cores": cpu,
        "rss_mb": rss_peak / 2**20,
        "subscriber_dropped": dropped,
        "cmd_p50_ms": percentile(round_trips, 0.50),
        "cmd_p99_ms": percentile(round_trips, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--commands", type=int, default=500)
    parser.add_argument(
        "--tcp-nodelay",
        action="store_true",
        help="TCP_NODELAY on the broker's and the MQTT clients' sockets (see RESULTS.md)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tcp_nodelay and "nodelay" not in os.environ.get("PYTHONPATH", ""):
        # paho-mqtt leaves Nagle's algorithm on: re-run every process with a shim that turns it off.
        env = {**os.environ, "PYTHONPATH": str(HERE / "nodelay")}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    if args.serve:
        asyncio.run(serve(args.devices))
        return
    with tempfile.TemporaryDirectory(prefix="labdevices-bench-") as tmp:
        work = Path(tmp)
        broker = MosquittoBroker(work)
        if args.tcp_nodelay:
            with broker.config.open("a") as conf:
                conf.write("set_tcp_nodelay true\n")
        broker.start()
        sims = subprocess.Popen(
            [sys.executable, __file__, "--serve", f"--devices={args.devices}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        daemon = None
        try:
            assert sims.stdout is not None
            ports = json.loads(sims.stdout.readline())
            config = work / "daemon.toml"
            write_config(config, broker, ports, work / "bench.db")
            daemon = subprocess.Popen(
                [sys.executable, "-m", "labdevices", "daemon", "-c", str(config)],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            assert daemon.stdout is not None
            ready = daemon.stdout.readline()
            assert "ready" in ready, ready
            result = asyncio.run(
                measure(
                    broker,
                    psutil.Process(daemon.pid),
                    args.devices,
                    args.seconds,
                    args.commands,
                    work / "bench.db",
                )
            )
        finally:
            if daemon is not None:
                daemon.terminate()
                daemon.wait(timeout=30)
            assert sims.stdin is not None
            sims.stdin.close()
            sims.wait(timeout=10)
            broker.stop()
    load = os.getloadavg()
    print(
        f"machine: {platform.machine()} {_cpu_model()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average {load[0]:.1f} {load[1]:.1f}"
    )
    print(f"{args.devices} devices x 10 samples/s, {args.seconds:g} s measured")
    print(
        f"telemetry: {result['samples']:,} samples, {result['rate']:,.0f} samples/s, "
        f"latency p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, "
        f"max {result['max_ms']:.1f} ms, subscriber drops {result['subscriber_dropped']}"
    )
    print(
        f"daemon: {result['cpu_cores'] * 100:.0f}% of one core, peak RSS {result['rss_mb']:.0f} MB"
    )
    print(
        f"commands ({args.commands} reads): round trip p50 {result['cmd_p50_ms']:.2f} ms, "
        f"p99 {result['cmd_p99_ms']:.2f} ms"
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

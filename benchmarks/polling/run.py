"""Polling benchmark: 20 simulated Modbus TCP devices of 40 registers, polled as fast as they answer.

Compares samples per second through ``ModbusDevice`` against a bare pymodbus
request loop reading the same registers (the ceiling), in one run. The simulated
devices run in a separate process so both sides share the same server; client CPU
time per sample is reported too, since it is what the driver adds.

    .venv/bin/python benchmarks/polling/run.py [--devices 20] [--registers 40] [--seconds 2] [--rounds 9]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import deque
from typing import Any

from pymodbus.client import AsyncModbusTcpClient

from labdevices.devices.modbus import ModbusDevice
from labdevices.profiles import ModbusProfile


def bench_profile(registers: int) -> ModbusProfile:
    signals: dict[str, Any] = {
        f"r{i:02d}": {"table": "input", "address": i, "unit": "count"} for i in range(registers)
    }
    return ModbusProfile.model_validate(
        {
            "name": "bench",
            "driver": "modbus",
            "connection": {"poll_interval_s": 0, "timeout_s": 2.0, "retries": 0},
            "signals": signals,
        }
    )


# -- server process ------------------------------------------------------------------------


async def serve(devices: int, registers: int) -> None:
    from labdevices.sim.modbus import ModbusSimulator, SimUnit, StaticModel

    profile = bench_profile(registers)
    sims = []
    for d in range(devices):
        model = StaticModel({name: (d * 100 + i) % 65536 for i, name in enumerate(profile.signals)})
        sims.append(ModbusSimulator({1: SimUnit(profile, model)}))
    ports = [await sim.serve_tcp() for sim in sims]
    print(json.dumps(ports), flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), stop.set)  # parent closes stdin to stop us
    await stop.wait()
    for sim in sims:
        await sim.stop()


# -- client measurements -------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bare_loop(ports: list[int], registers: int, seconds: float) -> dict[str, float]:
    clients = [AsyncModbusTcpClient("127.0.0.1", port=p, reconnect_delay=0) for p in ports]
    for c in clients:
        assert await c.connect()
    latencies: list[float] = []
    count = 0
    measuring = False
    stop = False

    async def run(client: AsyncModbusTcpClient) -> None:
        nonlocal count
        while not stop:
            t0 = time.perf_counter()
            rr = await client.read_input_registers(0, count=registers, device_id=1)
            values = rr.registers
            if measuring:
                latencies.append(time.perf_counter() - t0)
                count += len(values)

    tasks = [asyncio.create_task(run(c)) for c in clients]
    await asyncio.sleep(1.0)  # warm-up
    measuring = True
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    measuring = False
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    stop = True
    await asyncio.gather(*tasks)
    for c in clients:
        c.close()
    return {
        "rate": count / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "cpu_us_per_sample": cpu / max(count, 1) * 1e6,
    }


async def driver_loop(ports: list[int], registers: int, seconds: float) -> dict[str, float]:
    profile = bench_profile(registers)
    devices = [
        ModbusDevice(f"dev{i}", profile, f"tcp://127.0.0.1:{p}?unit=1") for i, p in enumerate(ports)
    ]
    count = 0
    measuring = False

    async def consume(dev: ModbusDevice) -> None:
        nonlocal count
        async with dev.subscribe_batches() as q:
            while True:
                batch = await q.get()  # one poll's samples, by column
                if measuring and batch.quality == "good":
                    count += len(batch)

    async with asyncio.TaskGroup() as tg:
        for d in devices:
            await d.__aenter__()
        consumers = [tg.create_task(consume(d)) for d in devices]
        await asyncio.sleep(1.0)  # warm-up
        for d in devices:  # every latency of the measured span (the driver keeps the last 1024)
            d.stats.latency_s = deque()
        measuring = True
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        measuring = False
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        latencies = [x for d in devices for x in d.stats.latency_s]
        failures = sum(d.stats.failures for d in devices)
        for d in devices:
            await d.__aexit__(None, None, None)
        for c in consumers:
            c.cancel()
    return {
        "rate": count / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "cpu_us_per_sample": cpu / max(count, 1) * 1e6,
        "failures": failures,
    }


async def client_main(
    ports: list[int], registers: int, seconds: float, rounds: int
) -> dict[str, Any]:
    bare: list[dict[str, float]] = []
    driver: list[dict[str, float]] = []
    for r in range(rounds):
        # Alternate, so that drift in the shared machine's load hits both alike.
        bare.append(await bare_loop(ports, registers, seconds))
        driver.append(await driver_loop(ports, registers, seconds))
        print(
            f"round {r + 1}: bare {bare[-1]['rate']:,.0f}/s, driver {driver[-1]['rate']:,.0f}/s",
            file=sys.stderr,
        )

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(row[key] for row in rows)

    result: dict[str, Any] = {
        key: {k: med(rows, k) for k in rows[0]}
        for key, rows in (("bare", bare), ("driver", driver))
    }
    # Paired per round: the shared machine's load changes between rounds, less within one.
    result["ratios"] = [d["rate"] / b["rate"] for b, d in zip(bare, driver, strict=True)]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--registers", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.devices, args.registers))
        return
    server = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            f"--devices={args.devices}",
            f"--registers={args.registers}",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        ports = json.loads(server.stdout.readline())
        result = asyncio.run(client_main(ports, args.registers, args.seconds, args.rounds))
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=10)
    bare, drv = result["bare"], result["driver"]
    ratio = statistics.median(result["ratios"])
    cpu_ratio = bare["cpu_us_per_sample"] / drv["cpu_us_per_sample"]
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    print(
        f"{args.devices} devices x {args.registers} registers, {args.rounds} rounds of {args.seconds:g} s (medians)"
    )
    print(f"{'':8} {'samples/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'client CPU us/sample':>21}")
    for name, row in (("bare", bare), ("driver", drv)):
        print(
            f"{name:8} {row['rate']:>12,.0f} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
            f"{row['cpu_us_per_sample']:>21.2f}"
        )
    rounds = ", ".join(f"{r:.0%}" for r in result["ratios"])
    print(f"driver / bare samples/s: {ratio:.1%} median of rounds ({rounds}); target >= 90%")
    print(f"bare / driver client CPU per sample: {cpu_ratio:.1%} (the ratio if CPU-bound)")
    print(f"driver poll failures: {drv['failures']:.0f}")


if __name__ == "__main__":
    main()

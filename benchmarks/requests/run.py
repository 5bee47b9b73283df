"""Request latency with authentication on and off, side by side in one run on a real Mosquitto.

Two daemons (``labdevices daemon``, each its own process and store), one with ``[auth]
required = true`` (the default: session lookup, MAC, replay window, roles), one with
``required = false`` (the payload's claim trusted, as before #11), each polling one
simulated Modbus sensor (a third process). One ``LabClient`` per daemon sends commands
one after another, the two alternating in rounds; reported per command: p50 and p99 of
the round trip and the ratio auth on / off.

- ``read`` reads the sensor and is audited (a durable store write): the common command.
- ``describe`` touches no device and writes nothing: the bus and auth overhead alone.

    .venv/bin/python benchmarks/requests/run.py [--commands 400] [--rounds 5]
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

from labdevices.client import LabClient
from labdevices.testing._auth import issue_session
from labdevices.testing._mqtt import MosquittoBroker

HERE = Path(__file__).resolve().parent
TELEMETRY = HERE.parent / "telemetry"
PROFILE = TELEMETRY / "bench-sensor.toml"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def write_config(path: Path, site: str, url: str, port: int, db: Path, auth: bool) -> None:
    path.write_text(
        "\n".join(
            [
                f'site = "{site}"',
                "[bus]",
                f'url = "{url}"',
                "[store]",
                f'path = "{db}"',
                "[auth]",
                f"required = {'true' if auth else 'false'}",
                "[devices.sensor]",
                f'profile = "{PROFILE}"',
                f'address = "tcp://127.0.0.1:{port}?unit=1"',
                "poll_interval_s = 1.0",
            ]
        )
        + "\n"
    )


async def rounds(
    url: str, sites: dict[str, str], dbs: dict[str, Path], commands: int, count: int
) -> list[dict[tuple[str, str], list[float]]]:
    """Per round: (mode, command) → round trips in ms. The two modes alternate command by
    command (which goes first alternating too), so a burst of load hits both alike."""
    session = issue_session(dbs["on"], "bench", site=sites["on"], roles=["viewer"])
    async with (
        LabClient(url, site=sites["on"], session=session) as on,
        LabClient(url, site=sites["off"], actor="bench") as off,
    ):
        labs = {"on": on, "off": off}

        async def once(mode: str, command: str) -> float:
            lab = labs[mode]
            t0 = time.perf_counter()
            if command == "read":
                await lab.read("sensor", "temperature")
            else:
                await lab.request(lab.topics.command("sensor", "describe"))
            return (time.perf_counter() - t0) * 1000

        for mode in labs:  # warm up: connections, store, first reads
            for _ in range(50):
                await once(mode, "read")
                await once(mode, "describe")
        out = []
        for _ in range(count):
            times: dict[tuple[str, str], list[float]] = {}
            for i in range(commands):
                order = ("on", "off") if i % 2 else ("off", "on")
                for command in ("read", "describe"):
                    for mode in order:
                        times.setdefault((mode, command), []).append(await once(mode, command))
            out.append(times)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=400, help="commands per round and mode")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="labdevices-bench-requests-") as tmp:
        work = Path(tmp)
        broker = MosquittoBroker(work)
        broker.start()
        sims = subprocess.Popen(
            [sys.executable, str(TELEMETRY / "run.py"), "--serve", "--devices=2"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        daemons: list[subprocess.Popen[str]] = []
        try:
            assert sims.stdout is not None
            ports = json.loads(sims.stdout.readline())
            sites = {"on": "bench-auth-on", "off": "bench-auth-off"}
            dbs = {mode: work / f"{mode}.db" for mode in sites}
            for (mode, site), port in zip(sites.items(), ports, strict=True):
                config = work / f"{mode}.toml"
                write_config(config, site, broker.url, port, dbs[mode], mode == "on")
                daemon = subprocess.Popen(
                    [sys.executable, "-m", "labdevices", "daemon", "-c", str(config)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
                daemons.append(daemon)
                assert daemon.stdout is not None
                ready = daemon.stdout.readline()
                assert "ready" in ready, ready
            result = asyncio.run(rounds(broker.url, sites, dbs, args.commands, args.rounds))
        finally:
            for daemon in daemons:
                daemon.terminate()
                daemon.wait(timeout=30)
            assert sims.stdin is not None
            sims.stdin.close()
            sims.wait(timeout=10)
            broker.stop()
    load = os.getloadavg()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, load average {load[0]:.1f} {load[1]:.1f}"
    )
    print(f"{args.rounds} rounds x {args.commands} commands per mode and command, interleaved")
    print(f"{'command':<10} {'auth':<5} {'p50 ms':>8} {'p99 ms':>8}   (all rounds)")
    for command in ("read", "describe"):
        for mode in ("off", "on"):
            t = [x for r in result for x in r[(mode, command)]]
            print(f"{command:<10} {mode:<5} {percentile(t, 0.5):8.2f} {percentile(t, 0.99):8.2f}")
        ratios = sorted(
            percentile(r[("on", command)], 0.99) / percentile(r[("off", command)], 0.99)
            for r in result
        )
        on = [x for r in result for x in r[("on", command)]]
        off = [x for r in result for x in r[("off", command)]]
        print(
            f"{command:<10} ratio on/off: p50 {percentile(on, 0.5) / percentile(off, 0.5):.2f}, "
            f"p99 {percentile(on, 0.99) / percentile(off, 0.99):.2f}; p99 per round "
            f"{', '.join(f'{x:.2f}' for x in ratios)} (median {ratios[len(ratios) // 2]:.2f}; "
            "target p99 <= 1.20)"
        )


if __name__ == "__main__":
    main()

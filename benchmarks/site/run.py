"""Site-scale telemetry benchmark: N daemons x M simulated devices x 10 Hz through one Mosquitto
into the store, measuring sample -> stored latency, drops, and each daemon's CPU.

Processes: one Mosquitto; per daemon, one process of simulated Modbus sensors and one
``labdevices daemon`` (all on one site, device names unique across it); ``mosquitto_sub``
recording every telemetry batch with its arrival time (what was produced, and its MQTT
latency); and this one, which polls the store(s) for new rows (what was stored, and when
it became visible).

A sample's "publish -> stored" latency runs from its timestamp (taken by the driver when
the reading arrived) to the poll that first saw its row committed: the polling period
(``--poll-ms``, default 50) bounds how late that can see it. Drops are samples that went
out on MQTT within the measured window but never reached the store (and the reverse:
stored but never seen on MQTT, i.e. lost on the bus or by the subscriber).

    .venv/bin/python benchmarks/site/run.py                      # 10 daemons x 50 devices
    .venv/bin/python benchmarks/site/run.py --daemons 2 --devices 10 --seconds 10   # quick

``--store`` is where the daemons write: a SQLite path shared by all of them (the
default, ``site.db`` in a temp dir), a SQLite path with ``{daemon}`` in it (one file
per daemon), ``postgresql`` (a throwaway PostgreSQL server, started as the tests start
theirs, fsync on) or a ``postgresql://`` URL of an existing database. The daemons of
one store share its key file; each keeps its own witness file.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from labdevices.store import verify_store
from labdevices.testing._mqtt import MosquittoBroker

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the tests' PostgreSQL helper
from tests._postgres import PostgresServer

HERE = Path(__file__).resolve().parent
PROFILE = HERE.parent / "telemetry" / "bench-sensor.toml"
SITE = "bench"


# -- simulated sensors (one process per daemon) ----------------------------------------------


class Ramp:
    """A value that moves every poll (so no deadband keeps a sample out of the store)."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def step(self, dt_s: float) -> None:
        pass

    def get(self, signal: str) -> float:
        return (self.offset + time.monotonic() * 100.0) % 300.0

    def set(self, signal: str, value: float | bool) -> None:
        pass


async def serve(devices: int) -> None:
    from labdevices.profiles import ModbusProfile, load_profile
    from labdevices.sim.modbus import ModbusSimulator, SimUnit

    profile = load_profile(PROFILE)
    assert isinstance(profile, ModbusProfile)
    sims = [ModbusSimulator({1: SimUnit(profile, Ramp(d))}) for d in range(devices)]
    ports = [await sim.serve_tcp() for sim in sims]
    print(json.dumps(ports), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_reader(sys.stdin.fileno(), stop.set)  # parent closes stdin
    await stop.wait()
    for sim in sims:
        await sim.stop()


# -- configuration -----------------------------------------------------------------------------


def device_name(daemon: int, device: int) -> str:
    return f"r{daemon:02d}s{device:02d}"


def store_of(store: str, daemon: int) -> str:
    return store.replace("{daemon}", f"{daemon:02d}")


def write_config(
    path: Path, broker: MosquittoBroker, daemon: int, ports: list[int], store: str, rate_hz: float
) -> None:
    where = f'url = "{store}"' if store.startswith("postgresql://") else f'path = "{store}"'
    work = path.parent
    room = f"room{daemon:02d}"
    key = work / (f"{room}.key" if "{daemon}" in store else "site.key")
    lines = [
        f'site = "{SITE}"',
        f'daemon = "{room}"',
        "[bus]",
        f'url = "{broker.url}"',
        f'client_id = "bench-daemon-{daemon:02d}"',
        "[store]",
        where,
        # One key per store (its daemons share it), one witness per daemon.
        f'key_file = "{key}"',
        f'witness_file = "{work / room}.witness"',
    ]
    for i, port in enumerate(ports):
        lines += [
            f"[devices.{device_name(daemon, i)}]",
            f'profile = "{PROFILE}"',
            f'address = "tcp://127.0.0.1:{port}?unit=1"',
            f"poll_interval_s = {1.0 / rate_hz}",
        ]
    path.write_text("\n".join(lines) + "\n")


# -- measuring ---------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@dataclass
class StoreWatch:
    """New telemetry rows of one store, and when this process first saw each.

    PostgreSQL hands out row ids at insert, not at commit, so a transaction that commits
    after a later one shows rows below the highest id seen: it is read again from
    ``LOOKBACK`` rows below (SQLite writers take turns, so their ids come in commit order)."""

    location: str
    last_rowid: int = 0
    seen: dict[tuple[str, float], float] = field(default_factory=dict)
    _db: Any = None

    LOOKBACK = 20_000

    @property
    def postgres(self) -> bool:
        return self.location.startswith("postgresql://")

    def _query(self, sql: str, *args: float) -> list[Any]:
        if self._db is None:
            if self.postgres:
                import psycopg

                self._db = psycopg.connect(self.location, autocommit=True)
            elif Path(self.location).exists():
                uri = f"{Path(self.location).resolve().as_uri()}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True)
            else:
                return []
        if self.postgres:
            sql = sql.replace("?", "%s")
        try:
            return list(self._db.execute(sql, args).fetchall())
        except Exception as exc:  # the daemons have not made the tables yet
            if "telemetry" not in str(exc):
                raise
            return []

    def poll(self) -> None:
        since = max(0, self.last_rowid - self.LOOKBACK) if self.postgres else self.last_rowid
        rows = self._query("SELECT rowid, device, t FROM telemetry WHERE rowid > ?", since)
        now = time.time()
        for rowid, device, t in rows:
            self.seen.setdefault((device, t), now)
            self.last_rowid = max(self.last_rowid, rowid)

    def caught_up(self, end: float) -> bool:
        """Whether every device of this store has a row timed after ``end`` (then the
        window before it is complete, each daemon writing its samples in order)."""
        rows = self._query("SELECT COUNT(DISTINCT device) FROM telemetry WHERE t > ?", end)
        devices = self._query("SELECT COUNT(DISTINCT device) FROM telemetry")
        return bool(rows and devices and rows[0][0] == devices[0][0])

    def stored(self, start: float, end: float) -> set[tuple[str, float]]:
        """Every sample of the store timed within ``start``..``end`` (a full read)."""
        rows = self._query("SELECT device, t FROM telemetry WHERE t >= ? AND t <= ?", start, end)
        return {(device, t) for device, t in rows}

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


def produced_on_mqtt(
    capture: Path,
) -> tuple[dict[tuple[str, float], float], set[tuple[str, float]], int]:
    """What ``mosquitto_sub`` saw: (device, t) -> arrival time; the samples whose value is
    the device's previous one (the store's deadband keeps those out by design: two polls
    within the simulator's 10 ms refresh read the same register); the publishers' drops."""
    produced: dict[tuple[str, float], float] = {}
    values: dict[str, list[tuple[float, object]]] = {}
    dropped: dict[str, int] = {}  # per device: each batch carries the running count
    for line in capture.read_text().splitlines():
        arrived, _, payload = line.partition(" ")
        batch = json.loads(payload)
        dropped[batch["device"]] = int(batch.get("dropped") or 0)
        for sample in batch["samples"]:
            produced[(batch["device"], sample["t"])] = float(arrived)
            values.setdefault(batch["device"], []).append((sample["t"], sample["value"]))
    unchanged = set()
    for device, series in values.items():
        series.sort()
        for (_, before), (t, value) in itertools.pairwise(series):
            if value == before:
                unchanged.add((device, t))
    return produced, unchanged, sum(dropped.values())


def measure(
    broker: MosquittoBroker,
    daemons: list[psutil.Process],
    others: dict[str, list[psutil.Process]],
    watches: list[StoreWatch],
    devices: int,
    seconds: float,
    poll_s: float,
    capture: Path,
) -> dict[str, object]:
    # The subscriber is Mosquitto's own C client, so that it keeps up at 5,000 samples/s.
    with capture.open("w") as out:
        sub = subprocess.Popen(
            [
                *("mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-q", "1"),
                *("-t", f"labdevices/{SITE}/+/telemetry", "-F", "%U %p"),
            ],
            stdout=out,
        )
    try:
        # Warm up until every device has stored a sample, then measure.
        give_up = time.monotonic() + 300.0
        while len({k[0] for w in watches for k in w.seen}) < devices:
            if time.monotonic() > give_up:
                raise TimeoutError("not every device stored a sample within 300 s")
            for watch in watches:
                watch.poll()
            time.sleep(poll_s)
        cpu0 = [d.cpu_times() for d in daemons]
        others0 = {k: [p.cpu_times() for p in ps] for k, ps in others.items()}
        t0 = time.time()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for watch in watches:
                watch.poll()
            time.sleep(poll_s)
        t1 = time.time()
        cpu1 = [d.cpu_times() for d in daemons]
        others1 = {k: [p.cpu_times() for p in ps] for k, ps in others.items()}
        # Then until the stores hold every sample of the window (60 s at most): a sample
        # stored late is late, not lost.
        window_end = t1 - 1.0
        give_up = time.monotonic() + 60.0
        while time.monotonic() < give_up:
            for watch in watches:
                watch.poll()
            if all(w.caught_up(window_end) for w in watches):
                for watch in watches:  # what committed since the last poll
                    watch.poll()
                break
            time.sleep(poll_s)
    finally:
        sub.terminate()
        sub.wait(timeout=10)
    produced, unchanged, publisher_dropped = produced_on_mqtt(capture)
    stored_at: dict[tuple[str, float], float] = {}
    for w in watches:
        stored_at.update(w.seen)
    # A sample of the window's last second may have reached one side only as it closed.
    window = {k for k in produced if t0 <= k[1] <= window_end}
    stored_window = {k for w in watches for k in w.stored(t0, window_end)}
    latencies = [(stored_at[k] - k[1]) * 1000 for k in stored_window if k in stored_at]
    mqtt_latency = [(produced[k] - k[1]) * 1000 for k in window]
    elapsed = t1 - t0
    cpu = [_cores(a, b, elapsed) for a, b in zip(cpu0, cpu1, strict=True)]
    others_cpu = {
        k: sum(_cores(a, b, elapsed) for a, b in zip(others0[k], others1[k], strict=True))
        for k in others
    }
    return {
        "elapsed": window_end - t0,
        "produced": len(window),
        "stored": len(window & stored_window),
        "not_stored": len(window - stored_window - unchanged),
        "unchanged_not_stored": len((window - stored_window) & unchanged),
        "stored_not_on_mqtt": len(stored_window - window),
        "publisher_dropped": publisher_dropped,
        "missed_by_polling": len(stored_window - stored_at.keys()),
        "not_stored_examples": sorted(window - stored_window - unchanged)[:5],
        "stored_p50_ms": percentile(latencies, 0.50),
        "stored_p99_ms": percentile(latencies, 0.99),
        "stored_max_ms": max(latencies, default=float("nan")),
        "mqtt_p50_ms": percentile(mqtt_latency, 0.50),
        "mqtt_p99_ms": percentile(mqtt_latency, 0.99),
        "cpu": cpu,
        "others_cpu": others_cpu,
    }


def _cores(before: Any, after: Any, elapsed: float) -> float:
    return float(after.user + after.system - before.user - before.system) / elapsed


# -- running it --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--daemons", type=int, default=10)
    parser.add_argument("--devices", type=int, default=50, help="per daemon")
    parser.add_argument("--rate", type=float, default=10.0, help="samples/s per device")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--store", default=None, help="SQLite path ({daemon} for one per daemon)")
    parser.add_argument("--poll-ms", type=float, default=50.0, help="store polling period")
    parser.add_argument("--serve", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return
    with tempfile.TemporaryDirectory(prefix="labdevices-site-") as tmp:
        work = Path(tmp)
        store = args.store or str(work / "site.db")
        server = PostgresServer.start(fsync=True) if store == "postgresql" else None
        try:
            if server is not None:
                store = server.url(server.create_database())
            run(args, work, store)
        finally:
            if server is not None:
                server.stop()


def run(args: argparse.Namespace, work: Path, store: str) -> None:
    broker = MosquittoBroker(work)
    broker.start()
    sims: list[subprocess.Popen[str]] = []
    daemons: list[subprocess.Popen[str]] = []
    watches = [StoreWatch(p) for p in sorted({store_of(store, i) for i in range(args.daemons)})]
    try:
        for i in range(args.daemons):
            sim = subprocess.Popen(
                [sys.executable, __file__, f"--serve={args.devices}"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            sims.append(sim)
            assert sim.stdout is not None
            ports = json.loads(sim.stdout.readline())
            config = work / f"daemon-{i:02d}.toml"
            write_config(config, broker, i, ports, store_of(store, i), args.rate)
            errors = work / f"daemon-{i:02d}.log"
            daemon = subprocess.Popen(
                [sys.executable, "-m", "labdevices", "daemon", "-c", str(config)],
                stdout=subprocess.PIPE,
                stderr=errors.open("w"),
                text=True,
                env={**os.environ, "XDG_RUNTIME_DIR": str(work)},
            )
            daemons.append(daemon)
            assert daemon.stdout is not None
            ready = daemon.stdout.readline()
            assert "ready" in ready, f"daemon {i}: {ready!r}\n{errors.read_text()[-3000:]}"
        result = measure(
            broker,
            [psutil.Process(d.pid) for d in daemons],
            {
                "simulators": [psutil.Process(p.pid) for p in sims],
                "mosquitto": [psutil.Process(broker.pid)],
                "postgresql": _postgres_processes(store),
            },
            watches,
            args.daemons * args.devices,
            args.seconds,
            args.poll_ms / 1000,
            work / "mqtt.txt",
        )
    finally:
        for daemon in daemons:
            daemon.send_signal(signal.SIGTERM)
        for daemon in daemons:
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        for sim in sims:
            assert sim.stdin is not None
            sim.stdin.close()
            sim.wait(timeout=10)
        for watch in watches:
            watch.close()
        broker.stop()
    for log in sorted(work.glob("daemon-*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if "ERROR" in line or "not stored" in line:
                print(f"{log.name}: {line}")
    for watch in watches:
        problems = verify_store(watch.location, public_key=None).problems
        print(f"verify {watch.location}: {problems or 'ok'}")
    report(args, store, len(watches), result)


def _postgres_processes(store: str) -> list[psutil.Process]:
    """A local PostgreSQL server's processes (its backends included), found by its port."""
    if not store.startswith("postgresql://"):
        return []
    port = f"{urlsplit(store).port or 5432}"
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and "-p" in cmdline and port in cmdline:
            return [proc, *proc.children(recursive=True)]
    return []


def report(args: argparse.Namespace, store: str, files: int, r: dict[str, object]) -> None:
    load = os.getloadavg()
    print(
        f"machine: {platform.machine()} {_cpu_model()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average {load[0]:.1f} {load[1]:.1f}"
    )
    target = args.daemons * args.devices * args.rate
    kind = (
        "one PostgreSQL database"
        if store.startswith("postgresql://")
        else "one shared SQLite file"
        if files == 1
        else f"{files} SQLite files (one per daemon)"
    )
    print(
        f"{args.daemons} daemons x {args.devices} devices x {args.rate:g} Hz "
        f"({target:,.0f} samples/s) into {kind}, {r['elapsed']:.1f} s measured"
    )
    produced = int(r["produced"])  # type: ignore[call-overload]
    print(
        f"produced (on MQTT) {produced:,} = {produced / float(r['elapsed']):,.0f} samples/s; "  # type: ignore[arg-type]
        f"stored {r['stored']:,}; not stored {r['not_stored']} (and "
        f"{r['unchanged_not_stored']} with an unchanged value, deadbanded by design); "
        "stored but not seen on MQTT "
        f"{r['stored_not_on_mqtt']}; publisher drops {r['publisher_dropped']}; "
        f"stored but missed by the polling (no latency) {r['missed_by_polling']}"
    )
    if r["not_stored_examples"]:
        print(f"not stored, for example: {r['not_stored_examples']}")
    print(
        f"sample -> stored: p50 {r['stored_p50_ms']:.0f} ms, p99 {r['stored_p99_ms']:.0f} ms, "
        f"max {r['stored_max_ms']:.0f} ms (store polled every {args.poll_ms:g} ms); "
        f"sample -> MQTT subscriber: p50 {r['mqtt_p50_ms']:.0f} ms, p99 {r['mqtt_p99_ms']:.0f} ms"
    )
    cpu = r["cpu"]
    assert isinstance(cpu, list)
    print(
        "daemon CPU (cores): "
        + ", ".join(f"{c:.2f}" for c in cpu)
        + f"; max {max(cpu):.2f}, mean {sum(cpu) / len(cpu):.2f}"
    )
    others = r["others_cpu"]
    assert isinstance(others, dict)
    print("beside them: " + ", ".join(f"{k} {v:.2f} cores" for k, v in others.items() if v))


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

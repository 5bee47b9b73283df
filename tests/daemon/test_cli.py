"""The command line: `labdevices submit --wait`, `alarms`, `audit verify` on a tampered store, `demo`."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path

from labdevices.daemon import Daemon
from labdevices.sim.printer import SimPrinterConfig, SimulatedPrinter
from labdevices.testing._mqtt import MosquittoBroker

from .conftest import make_config


async def _cli(*args: str, timeout: float = 60) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "labdevices",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def test_submit_wait_alarms_and_a_tampered_audit_trail(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    gcode = tmp_path / "lattice.gcode"
    gcode.write_text("; a tiny print\nG28\nG1 X10 Y10 F600\nG1 X20 Y10\nM400\n")
    bus = ["--broker", mqtt_broker.url, "--site", site, "--actor", "dave"]
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim:
        assert sim.port is not None
        async with Daemon(make_config(site, mqtt_broker, db, sim.port)):
            code, out = await _cli("submit", str(gcode), "--wait", "--batch-id", "B-1", *bus)
            assert code == 0, out
            assert "completed" in out and "4 of 4 acknowledged" in out and "B-1" in out
            code, out = await _cli("alarms", *bus)
            assert code == 0, out
            code, out = await _cli("alarms", "--ack", "99", *bus)
            assert code == 2 and "unknown_alarm" not in out and "no alarm with id 99" in out

    code, out = await _cli("audit", "verify", "--db", str(db))
    assert code == 0, out
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
        seq = conn.execute("SELECT seq FROM audit WHERE action = 'job.create'").fetchone()[0]
        conn.execute("UPDATE audit SET actor = 'mallory' WHERE seq = ?", (seq,))
    finally:
        conn.close()
    code, out = await _cli("audit", "verify", "--db", str(db))
    assert code == 1
    assert f"audit seq {seq}: edited" in out


async def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    code, out = await _cli("demo", "--layers", "2", "--db", str(db), timeout=120)
    assert code == 0, out
    assert "completed" in out and "DEMO-0001" in out and "acknowledged" in out
    assert "audit chain intact" in out
    assert db.exists()

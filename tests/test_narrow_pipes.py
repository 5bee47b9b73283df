"""Listing commands piped through a non-terminal at 60 columns: every address and value whole.

(``status``, ``alarms`` and ``watch --site`` against a daemon: tests/daemon/test_operate_cli.py.)
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

from labdevices.store import SqliteDatabase
from labdevices.testing._auth import add_test_user
from labdevices.testing._modbus import ModbusSim

NARROW = {"COLUMNS": "60", "NO_COLOR": "1"}


async def _run(*args: str, until: bytes | None = None) -> tuple[int | None, str]:
    """Run the CLI with stdout a pipe; with ``until``, stop it (SIGTERM) once that is printed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "labdevices",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **NARROW},
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(60):
            if until is None:
                out, _ = await proc.communicate()
                return proc.returncode, out.decode()
            seen = b""
            while until not in seen:
                line = await proc.stdout.readline()
                assert line, seen.decode(errors="replace")
                seen += line
            proc.terminate()
            rest, _ = await proc.communicate()
            return proc.returncode, (seen + rest).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _whole(out: str) -> None:
    assert "…" not in out and "..." not in out, out


async def test_sim_lab_prints_every_address_whole() -> None:
    _code, out = await _run("sim", "lab", until=b"running")
    _whole(out)
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") >= 4}
    assert {"printer", "incubator", "bioreactor", "sensors"} <= set(rows), out
    assert re.search(r"opc\.tcp://127\.0\.0\.1:\d+\S*", rows["sensors"]), out
    assert re.search(r"tcp://127\.0\.0\.1:\d+\?unit=\d+", rows["incubator"]), out
    _code, out = await _run("sim", "lab", "--json", until=b"\n")
    data = json.loads(out.splitlines()[0])
    assert set(data["devices"]) == {"printer", "incubator", "bioreactor", "sensors"}


async def test_profiles_error_names_the_whole_field(tmp_path: Path) -> None:
    (tmp_path / "a-printer-with-a-rather-long-profile-name.toml").write_text(
        'driver = "gcode"\nprintheads = []\n'
    )
    code, out = await _run("profiles", "--folder", str(tmp_path))
    assert code == 1
    _whole(out)
    assert "a-printer-with-a-rather-long-profile-name" in out and "printheads" in out, out
    code, out = await _run("profiles", "--folder", str(tmp_path), "--json")
    [entry] = json.loads(out)
    assert entry["profile"] == "a-printer-with-a-rather-long-profile-name"
    assert "printheads" in entry["error"]


async def test_jobs_and_users_print_whole_dates_and_names(tmp_path: Path) -> None:
    db = tmp_path / "lab.db"
    add_test_user(db, "anastasia-longname", ["operator"], full_name="Anastasia Longname-Smith")
    with SqliteDatabase(db) as store:
        job = store.create_job(
            "printer-with-a-long-name",
            actor="anastasia-longname",
            batch_id="BATCH-2026-000123456",
            gcode="G28\nG1 X1",
            lines_total=2,
        )
    code, out = await _run("jobs", "--db", str(db))
    assert code == 0, out
    _whole(out)
    assert "printer-with-a-long-name" in out and "BATCH-2026-000123456" in out, out
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", out), out
    code, out = await _run("jobs", "--db", str(db), "--json")
    [listed] = json.loads(out)
    assert listed["job_id"] == job.id and listed["batch_id"] == "BATCH-2026-000123456"
    code, out = await _run("users", "list", "--db", str(db))
    assert code == 0, out
    _whole(out)
    assert "anastasia-longname" in out and "Anastasia Longname-Smith" in out, out


async def test_read_prints_values_whole(modbus_incubator: ModbusSim) -> None:
    code, out = await _run("read", "--profile", "co2-incubator", modbus_incubator.address)
    assert code == 0, out
    _whole(out)
    for signal in modbus_incubator.profile.signals:
        assert signal in out, out
    code, out = await _run("read", "--profile", "co2-incubator", "--json", modbus_incubator.address)
    assert code == 0, out
    rows = {r["signal"]: r for r in json.loads(out)}
    assert set(rows) == set(modbus_incubator.profile.signals)


async def test_help_shows_flags_as_flags_defaults_and_one_port_spelling() -> None:
    code, out = await _run("submit", "--help")
    assert code == 0 and "--wait" in out, out
    assert "<bool>" not in out, out
    for kind in ("printer", "incubator", "sensorhub"):  # (the bioreactor is on a pty)
        code, out = await _run("sim", kind, "--help")
        assert code == 0 and "--port" in out and "default" in out, out

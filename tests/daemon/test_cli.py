"""The command line: `labdevices submit --wait`, `alarms`, `audit verify` on a tampered store, `demo`."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from labdevices.daemon import Daemon
from labdevices.sim.printer import SimPrinterConfig, SimulatedPrinter
from labdevices.testing._auth import TEST_PASSWORD, add_test_user
from labdevices.testing._mqtt import MosquittoBroker

from .conftest import make_config


async def _cli(
    *args: str, timeout: float = 60, stdin: str = "", env: dict[str, str] | None = None
) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "labdevices",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})},
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout)
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
    bus = ["--broker", mqtt_broker.url, "--site", site]
    add_test_user(db, "dave", ["operator"], password=TEST_PASSWORD)
    home = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim:
        assert sim.port is not None
        async with Daemon(make_config(site, mqtt_broker, db, sim.port)):
            code, out = await _cli("submit", str(gcode), *bus, env=home)
            assert code == 2 and "log in first" in out, out
            code, out = await _cli(
                "login", "--user", "dave", *bus, stdin=TEST_PASSWORD + "\n", env=home
            )
            assert code == 0 and "logged in as dave (operator)" in out, out
            session_file = tmp_path / "config" / "labdevices" / "sessions" / f"{site}.json"
            assert session_file.stat().st_mode & 0o777 == 0o600
            assert TEST_PASSWORD not in session_file.read_text()
            code, out = await _cli("whoami", *bus, env=home)
            assert code == 0 and "dave (Dave), roles operator" in out, out
            code, out = await _cli(
                "submit", str(gcode), "--wait", "--batch-id", "B-1", *bus, env=home
            )
            assert code == 0, out
            assert "completed" in out and "4 of 4 acknowledged" in out and "B-1" in out
            code, out = await _cli("alarms", *bus, env=home)
            assert code == 0, out
            code, out = await _cli("alarms", "--ack", "99", *bus, env=home)
            assert code == 2 and "unknown_alarm" not in out and "no alarm with id 99" in out
            code, out = await _cli("logout", *bus, env=home)
            assert code == 0 and not session_file.exists(), out

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
    records = tmp_path / "records"
    code, out = await _cli(
        "demo", "--layers", "2", "--db", str(db), "--record-dir", str(records), timeout=120
    )
    assert code == 0, out
    assert "completed" in out and "DEMO-0001" in out and "acknowledged" in out
    assert "logged in as olivia (operator) and as sam (supervisor)" in out
    # the whole proof, with the daemon's public key and its witness: every record anchored
    assert "verified —" in out and "witnessed" in out and "not yet anchored" not in out
    assert db.exists()
    # GMP: held until the supervisor's signature; the record names both people
    assert "job 1 is held" in out
    assert "Olivia Operator (olivia)" in out
    assert "Sam Supervisor (sam)" in out and "approved for printing" in out
    pdf = records / "batch-record-DEMO-0001-job1.pdf"
    assert out.rstrip().splitlines()[-1].startswith("batch record written: ")
    assert str(pdf.resolve()) in " ".join(out.split())
    done = await asyncio.to_thread(
        subprocess.run, ["pdftotext", str(pdf), "-"], check=True, capture_output=True, text=True
    )
    text = done.stdout
    assert "Olivia Operator" in text and "Sam Supervisor" in text
    assert (records / "batch-record-DEMO-0001-job1.json").exists()


async def test_demo_runs_on_postgresql_and_audit_verify_proves_it(
    postgres_url: str, tmp_path: Path
) -> None:
    """`labdevices demo --store postgresql://…`, then `labdevices audit verify --store URL` with
    the key and witness the daemon kept (by default in the data folder, named after the URL)."""
    data = {"XDG_DATA_HOME": str(tmp_path / "data")}
    code, out = await _cli(
        "demo", "--layers", "2", "--store", postgres_url,
        "--record-dir", str(tmp_path / "records"), timeout=120, env=data,
    )  # fmt: skip
    assert code == 0, out
    assert "completed" in out and "DEMO-0001" in out
    assert f"store {postgres_url}" in out
    assert "verified —" in out and "witnessed" in out and "not yet anchored" not in out
    assert (tmp_path / "records" / "batch-record-DEMO-0001-job1.pdf").exists()
    keys = sorted(p.name for p in (tmp_path / "data" / "labdevices").iterdir())
    stem = keys[0].removesuffix(".key")
    assert stem.startswith("postgresql-127.0.0.1-")
    assert keys == [f"{stem}.key", f"{stem}.key.pub", f"{stem}.witness"]
    # an inspector: the public key and the witness copied elsewhere, the store by its URL
    code, out = await _cli(
        "audit", "verify", "--store", postgres_url,
        "--key", str(tmp_path / "data" / "labdevices" / f"{stem}.key.pub"),
        "--witness", str(tmp_path / "data" / "labdevices" / f"{stem}.witness"),
    )  # fmt: skip
    assert code == 0, out
    assert f"{postgres_url}: verified" in out
    # and jobs / users read the same store by its URL
    code, out = await _cli("jobs", "--store", postgres_url)
    assert code == 0 and "DEMO-0001" in out, out
    code, out = await _cli("users", "list", "--store", postgres_url)
    assert code == 0 and "Olivia Operator" in out, out


async def test_sign_shows_what_is_signed_and_asks_for_the_password(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    from labdevices.client import LabClient
    from labdevices.testing._auth import add_test_user, issue_session

    db = tmp_path / "lab.db"
    add_test_user(db, "sam", ["supervisor"], password="copper-m-3838", full_name="Sam Supervisor")
    session_file = issue_session(db, "sam", site=site).save(tmp_path / "sam-session.json")
    loaded = make_config(site, mqtt_broker, db, "/dev/null-printer")
    devices = dict(loaded.config.devices)
    devices["printer"] = devices["printer"].model_copy(update={"require_release": True})
    loaded.config = loaded.config.model_copy(update={"devices": devices})
    bus = ["--broker", mqtt_broker.url, "--site", site, "--session-file", str(session_file)]
    olivia_session = issue_session(db, "olivia", site=site)
    async with (
        Daemon(loaded),
        LabClient(mqtt_broker.url, site=site, session=olivia_session) as olivia,
    ):
        job = await olivia.submit(printer="printer", gcode="G28\n", batch_id="B-9")
        assert job.state == "held" and job.content_sha256 is not None
        args = ["sign", str(job.job_id), "--meaning", "approved", *bus]
        code, out = await _cli(*args, stdin="wrong-password\n")
        assert code == 2 and "error:" in out and "signed:" not in out, out
        assert (await olivia.job(job.job_id)).state == "held"
        code, out = await _cli(*args, "--comment", "checked", stdin="copper-m-3838\n")
        assert code == 0, out
        assert job.content_sha256 in out and "B-9" in out and "G-code SHA-256" in out
        assert "signed: Sam Supervisor (sam)" in out and "approved for printing" in out
        assert "is queued" in out
        after = await olivia.job(job.job_id)
    assert [s.comment for s in after.signatures] == ["checked"]

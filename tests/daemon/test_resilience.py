"""The daemon survives its broker restarting mid-job, and being killed mid-job."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from labdevices.client import JobEvent, JobInfo, LabClient
from labdevices.daemon import Daemon
from labdevices.sim.printer import SimPrinterConfig, SimulatedPrinter
from labdevices.store import JobState, SqliteDatabase, verify_audit
from labdevices.testing._auth import issue_session
from labdevices.testing._mqtt import MosquittoBroker

from .conftest import long_job, make_config


async def test_broker_restart_mid_job_loses_no_event_or_reply(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.02)) as sim:
        assert sim.port is not None
        async with (
            Daemon(make_config(site, mqtt_broker, tmp_path / "lab.db", sim.port)) as daemon,
            LabClient(
                mqtt_broker.url,
                site=site,
                client_id=f"c-{site}",
                timeout=30,
                session=issue_session(tmp_path / "lab.db", "olga", site=site),
            ) as lab,
        ):
            events: list[JobEvent] = []
            read: asyncio.Task[object] | None = None
            async with contextlib.aclosing(lab.run(printer="printer", gcode=long_job())) as stream:
                async for item in stream:
                    if isinstance(item, JobInfo):
                        continue
                    events.append(item)
                    if item.kind == "progress" and read is None:
                        mqtt_broker.stop()
                        await daemon.bus.wait_disconnected()
                        done = len(sim.executed)
                        # The printer goes on without the broker, and a request waits for it.
                        await sim.wait_until(lambda s, n=done: len(s.executed) > n + 20)  # type: ignore[misc]
                        read = asyncio.create_task(lab.read("printer", "nozzle_temperature"))
                        mqtt_broker.start()
            assert read is not None
            reading = await read
            assert reading.signal == "nozzle_temperature"  # type: ignore[attr-defined]
            assert (events[-1].kind, events[-1].state) == ("state", "completed")
            assert [e.seq for e in events] == list(range(events[0].seq, events[-1].seq + 1))
            assert daemon.bus.stats.connects >= 2


def _write_config(path: Path, site: str, broker: MosquittoBroker, db: Path, port: str) -> None:
    path.write_text(
        f"""
site = "{site}"
[bus]
url = "{broker.url}"
client_id = "daemon-{site}"
[store]
path = "{db}"
flush_interval_s = 0.1
[devices.printer]
profile = "marlin-pneumatic"
address = "{port}"
poll_interval_s = 0.2
"""
    )


async def _start_daemon(config: Path) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "labdevices",
        "daemon",
        "-c",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert b"labdevices daemon ready" in line, line
    return proc


async def test_a_daemon_killed_mid_job_comes_back_with_the_job_interrupted(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    config = tmp_path / "daemon.toml"
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.02)) as sim:
        assert sim.port is not None
        _write_config(config, site, mqtt_broker, db, sim.port)
        proc = await _start_daemon(config)
        try:
            async with LabClient(
                mqtt_broker.url, site=site, timeout=30, session=issue_session(db, "olga", site=site)
            ) as lab:
                job_id = 0
                async with contextlib.aclosing(
                    lab.run(printer="printer", gcode=long_job())
                ) as stream:
                    async for item in stream:
                        if isinstance(item, JobInfo):
                            job_id = item.job_id
                        elif item.kind == "progress" and item.line > 40:
                            break
                proc.kill()
                await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert verify_audit(db).ok
        with SqliteDatabase(db, readonly=True) as store:
            killed = store.get_job(job_id)
        assert killed.state == JobState.RUNNING and killed.last_ack_line > 40

        proc = await _start_daemon(config)
        try:
            async with LabClient(
                mqtt_broker.url, site=site, session=issue_session(db, "olga", site=site)
            ) as lab:
                job = await lab.job(job_id)
                assert job.state == "interrupted"
                assert job.line == killed.last_ack_line
                assert f"last acknowledged line {killed.last_ack_line}" in (job.error or "")
                executed = len(sim.executed)
                assert await lab.jobs(state="running") == []
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await proc.wait() == 0
        # Never resumed: no job line reached the printer from the restarted daemon.
        assert not [c for c in sim.executed[executed:] if c.startswith("G1 X")]
    result = verify_audit(db)
    assert result.ok, result.message
    with SqliteDatabase(db, readonly=True) as store:
        records = store.audit_records()
    assert [r.action for r in records].count("config.load") == 2
    interrupted = [
        r for r in records if r.action == "job.transition" and "interrupted" in (r.new or "")
    ]
    assert interrupted and interrupted[0].reason == "startup recovery"

"""The day's work from the command line, against a daemon running the simulated lab:
`status`, `set`, `pause`/`resume`/`cancel`, `estop`, `clear-fault`, `watch --site`, `--version`."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from labdevices.client import JobInfo, LabClient
from labdevices.daemon import (
    BusConfig,
    Daemon,
    DaemonConfig,
    DeviceConfig,
    StoreConfig,
    check_config,
)
from labdevices.sim.lab import SimulatedLab
from labdevices.testing._auth import issue_session
from labdevices.testing._mqtt import MosquittoBroker

from .conftest import deadline, long_job
from .test_cli import _cli


def _audit(db: Path, action: str) -> list[tuple[str, str, str | None, str | None]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT actor, object, new_value, reason FROM audit WHERE action = ? ORDER BY seq",
            (action,),
        ).fetchall()
    finally:
        conn.close()


@contextlib.asynccontextmanager
async def _lab_daemon(
    sim_lab: SimulatedLab, broker: MosquittoBroker, site: str, db: Path
) -> AsyncIterator[Daemon]:
    config = DaemonConfig(
        site=site,
        devices={
            name: DeviceConfig(profile=sim_lab.profiles[name], address=address, poll_interval_s=0.2)
            for name, address in sim_lab.addresses.items()
        },
        bus=BusConfig(url=broker.url, client_id=f"daemon-{site}"),
        store=StoreConfig(path=db, flush_interval_s=0.1),
        device_retry_min_s=0.05,
        device_retry_max_s=0.5,
    )
    async with Daemon(check_config(config, "test-config")) as d:
        for slot in d.slots.values():
            await slot.wait_ready()
        yield d


@pytest.fixture
def sessions(tmp_path: Path, site: str) -> dict[str, Path]:
    """Session files of an operator (olga) and a supervisor (sam)."""
    out = {}
    for user, role in (("olga", "operator"), ("sam", "supervisor")):
        path = tmp_path / f"{user}.json"
        issue_session(tmp_path / "lab.db", user, site=site, roles=[role]).save(path)
        out[user] = path
    return out


async def test_status_set_and_watch_of_the_whole_site(
    sim_lab: SimulatedLab,
    mqtt_broker: MosquittoBroker,
    site: str,
    tmp_path: Path,
    sessions: dict[str, Path],
) -> None:
    db = tmp_path / "lab.db"
    as_olga = ["--broker", mqtt_broker.url, "--site", site, "--session-file", str(sessions["olga"])]
    async with deadline(120), _lab_daemon(sim_lab, mqtt_broker, site, db):
        # the incubator has reported a value (so `status` has one to show)
        async with (
            LabClient(mqtt_broker.url, site=site, session_file=sessions["olga"]) as lab,
            lab.telemetry("incubator") as readings,
        ):
            async for _ in readings:
                break
        code, out = await _cli("status", "--json", *as_olga)
        assert code == 0, out
        status = json.loads(out)
        assert status["site"] == site
        devices = {d["device"]: d for d in status["devices"]}
        assert set(devices) == {"printer", "incubator", "bioreactor", "sensors"}
        assert {d["state"] for d in devices.values()} == {"idle"}
        value = devices["incubator"]["values"]["chamber_temperature"]
        assert value["unit"] == "degC" and isinstance(value["value"], float)
        assert status["alarms"] == [] and status["jobs"] == []

        # piped at 60 columns: each signal on one row, its value whole (the values move on)
        code, out = await _cli("status", *as_olga, env={"COLUMNS": "60"})
        assert code == 0 and "…" not in out, out
        for d in status["devices"]:
            for name in d["values"]:
                found = re.search(rf"│ {re.escape(name)} +│ (\S+) +│ ([^│]*?) *│", out)
                assert found, (name, out)
                value, unit = found.groups()
                assert value in ("True", "False") or float(value) == float(value), (name, out)
                units = {
                    e["values"][name]["unit"] for e in status["devices"] if name in e["values"]
                }
                assert unit in units, (name, out)
        code, out = await _cli("alarms", *as_olga, env={"COLUMNS": "60"})
        assert code == 0 and "…" not in out, out

        code, out = await _cli(
            "set", "incubator", "temperature_setpoint", "36.5", "--reason", "protocol B", *as_olga
        )
        assert code == 0 and "incubator.temperature_setpoint set to 36.5" in out, out
        [(actor, obj, new, reason)] = _audit(db, "setpoint.write")
        assert (actor, obj, json.loads(new or ""), reason) == (
            "olga",
            "device/incubator/temperature_setpoint",
            36.5,
            "protocol B",
        )
        code, out = await _cli(
            "set", "incubator", "temperature_setpoint", "99", "--reason", "oops", *as_olga
        )
        assert code == 2 and "temperature_setpoint" in out and "99" in out, out

        code, out = await _cli("watch", "--duration", "1.5", *as_olga)
        assert code == 0, out
        for name in ("printer", "incubator", "bioreactor", "sensors", "chamber_temperature"):
            assert name in out, out
        assert ">>>>>" not in out and "Traceback" not in out, out


async def test_job_control_estop_and_clear_fault(
    sim_lab: SimulatedLab,
    mqtt_broker: MosquittoBroker,
    site: str,
    tmp_path: Path,
    sessions: dict[str, Path],
) -> None:
    db = tmp_path / "lab.db"
    bus = ["--broker", mqtt_broker.url, "--site", site]
    as_olga = [*bus, "--session-file", str(sessions["olga"])]
    as_sam = [*bus, "--session-file", str(sessions["sam"])]
    async with deadline(120), _lab_daemon(sim_lab, mqtt_broker, site, db) as d:
        async with LabClient(mqtt_broker.url, site=site, session_file=sessions["olga"]) as lab:
            async with contextlib.aclosing(
                lab.run(printer="printer", gcode=long_job(2000))
            ) as stream:
                async for item in stream:
                    if isinstance(item, JobInfo):
                        job_id = item.job_id
                    elif item.state == "running" or item.line > 0:
                        break
            code, out = await _cli("pause", str(job_id), "--reason", "check nozzle", *as_olga)
            assert code == 0 and f"job {job_id} on printer paused: paused" in out, out
            code, out = await _cli("resume", str(job_id), *as_olga)
            assert code == 0 and "resumed: running" in out, out
            code, out = await _cli("cancel", str(job_id), "--reason", "wrong bioink", *as_olga)
            assert code == 0 and "cancelled: cancelled" in out, out
            assert (await lab.job(job_id)).state == "cancelled"

        code, out = await _cli("estop", "printer", "--reason", "drill", *as_olga)
        assert code == 0 and "emergency stop sent" in out, out
        assert d.slots["printer"].state == "fault"
        # an operator may stop, not re-arm
        code, out = await _cli("clear-fault", "printer", "--reason", "drill over", *as_olga)
        assert code == 2 and "olga" in out and "fault.clear" in out, out
        assert d.slots["printer"].state == "fault"
        code, out = await _cli("clear-fault", "printer", "--reason", "drill over", *as_sam)
        assert code == 0 and "printer: fault cleared, now idle" in out, out
        assert d.slots["printer"].state == "idle"
        [(actor, obj, _, reason)] = _audit(db, "device.clear_fault")
        assert (actor, obj, reason) == ("sam", "device/printer", "drill over")
        # the printer works again: a job runs to its end
        async with LabClient(mqtt_broker.url, site=site, session_file=sessions["olga"]) as lab:
            async with contextlib.aclosing(lab.run(printer="printer", gcode="G28\nG1 X5 Y5")) as s:
                async for item in s:
                    last = item
            assert not isinstance(last, JobInfo) and last.state == "completed"
        code, out = await _cli("clear-fault", "printer", "--reason", "again", *as_sam)
        assert code == 2 and "not in fault" in out, out


async def test_version() -> None:
    from importlib.metadata import version

    code, out = await _cli("--version")
    assert code == 0 and out.strip() == f"labdevices {version('labdevices')}"

"""Supervision and shutdown: a failing device is retried while the others run; telemetry reaches
MQTT and the store; a daemon stopped mid-job pauses it safely and records it interrupted."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from labdevices.client import JobInfo, LabClient
from labdevices.daemon import Daemon, DeviceConfig, InterlockConfig
from labdevices.sim.printer import SimPrinterConfig, SimulatedPrinter
from labdevices.store import JobState, SqliteDatabase, verify_audit
from labdevices.testing._auth import issue_session
from labdevices.testing._mqtt import MosquittoBroker

from .conftest import deadline, long_job, make_config


async def test_a_missing_device_is_retried_while_the_printer_serves_telemetry(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    missing = DeviceConfig(profile="co2-incubator", address="tcp://127.0.0.1:1?unit=1")
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim:
        assert sim.port is not None
        offline = InterlockConfig(
            name="incubator-offline", device="incubator", condition="offline", hold_s=0.2
        )
        config = make_config(
            site, mqtt_broker, db, sim.port, interlocks=[offline], incubator=missing
        )
        async with (
            deadline(30),
            LabClient(
                mqtt_broker.url, site=site, session=issue_session(db, "olga", site=site)
            ) as lab,
            lab.bus.subscribe(lab.topics.state("incubator")) as incubator_states,
            lab.telemetry("printer") as readings,
            lab.alarm_events() as alarm_events,
            Daemon(config) as daemon,
        ):
            reading = await anext(readings)
            assert reading.device == "printer" and reading.unit == "degC"
            failures = 0
            while failures < 2:  # reported each time, and tried again
                state = json.loads((await incubator_states.get()).payload)
                if state["state"] == "offline" and state["error"]:
                    assert "cannot connect to tcp://127.0.0.1:1" in state["error"]
                    failures += 1
            assert daemon.slots["incubator"].attempts >= 2
            devices = {d.name: d for d in await lab.devices()}
            assert devices["printer"].state == "idle"
            assert devices["incubator"].state != "idle" and devices["incubator"].error
            raised = await anext(alarm_events)
            assert (raised.event, raised.name) == ("raised", "incubator-offline")
            alarms = await lab.alarms(active_only=True)
            assert [(a.device, a.name, a.active) for a in alarms] == [
                ("incubator", "incubator-offline", True)
            ]
    with SqliteDatabase(db, readonly=True) as store:
        stored = store.query_telemetry("printer", "nozzle_temperature")
    assert stored and stored[0].unit == "degC"


async def test_stopping_the_daemon_mid_job_pauses_it_and_records_it_interrupted(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    job = "\n".join(["G28", "M126 S255", *long_job().splitlines()[1:]])  # valve open: depositing
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.02)) as sim:
        assert sim.port is not None
        async with (
            deadline(30),
            LabClient(
                mqtt_broker.url, site=site, session=issue_session(db, "olga", site=site)
            ) as lab,
        ):
            async with Daemon(make_config(site, mqtt_broker, db, sim.port)):
                async with contextlib.aclosing(lab.run(printer="printer", gcode=job)) as stream:
                    async for item in stream:
                        if isinstance(item, JobInfo):
                            job_id = item.job_id
                        elif item.kind == "progress" and item.line > 20:
                            break
                assert sim.state.valves[0]
            assert not sim.state.valves[0]  # closed by the pause
            async with contextlib.aclosing(lab.follow(job_id)) as stream:
                async for event in stream:
                    last = event
            assert last.state == "interrupted"
            status = json.loads((await _retained(lab, lab.topics.daemon_status()))["payload"])
            assert status["online"] is False
    assert verify_audit(db).ok
    with SqliteDatabase(db, readonly=True) as store:
        record = store.get_job(job_id)
    assert record.state == JobState.INTERRUPTED and record.last_ack_line > 20
    states = [e.payload["to"] for e in record.events if e.kind == "state"]
    assert states == ["running", "paused", "interrupted"]


async def _retained(lab: LabClient, topic: str) -> dict[str, bytes]:
    async with lab.bus.subscribe(topic) as sub:
        message = await sub.get()
    return {"payload": message.payload}

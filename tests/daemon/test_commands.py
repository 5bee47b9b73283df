"""Commands over MQTT: reads and writes validated against the profile, structured errors, audited."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from labdevices.bus import DeadlineExceeded, MalformedRequest, Request, parse_reply
from labdevices.client import LabClient
from labdevices.daemon import Daemon, UnknownDevice, UnknownSignal
from labdevices.errors import LimitViolation
from labdevices.sim.printer import SimPrinterConfig, SimulatedPrinter
from labdevices.store import SqliteDatabase
from labdevices.testing._auth import issue_session
from labdevices.testing._mqtt import MosquittoBroker

from .conftest import make_config


async def test_reads_writes_and_bad_commands(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim:
        assert sim.port is not None
        async with (
            Daemon(make_config(site, mqtt_broker, db, sim.port)) as daemon,
            LabClient(
                mqtt_broker.url, site=site, session=issue_session(db, "bob", site=site)
            ) as lab,
        ):
            await daemon.slots["printer"].wait_ready()
            devices = await lab.devices()
            assert [(d.name, d.state) for d in devices] == [("printer", "idle")]
            assert devices[0].signals["bed_temperature_setpoint"].max == 60.0

            reading = await lab.read("printer", "nozzle_temperature")
            assert reading.unit == "degC" and isinstance(reading.value, float)

            await lab.write("printer", "bed_temperature_setpoint", 37.0, reason="warm the bed")
            assert "M140 S37.0" in sim.executed
            executed = list(sim.executed)

            with pytest.raises(LimitViolation, match=r"above the limit 60\.0") as limit:
                await lab.write("printer", "bed_temperature_setpoint", 95.0)
            assert limit.value.device == "printer"
            with pytest.raises(UnknownDevice, match="unknown device 'nope'"):
                await lab.read("nope", "nozzle_temperature")
            with pytest.raises(UnknownSignal, match="unknown signal 'pressure'"):
                await lab.write("printer", "pressure", 1.0)
            with pytest.raises(LimitViolation, match="read-only"):
                await lab.write("printer", "nozzle_temperature", 30.0)
            with pytest.raises(MalformedRequest, match=r"args\.value must be a finite number"):
                await lab.request(
                    lab.topics.command("printer", "write"),
                    {"signal": "bed_temperature_setpoint", "value": "hot"},
                )

            # A payload that is no envelope at all, and one that arrives after its deadline.
            inbox = lab.bus.reply_topic
            async with lab.bus.subscribe(inbox + "/raw") as raw:
                topic = lab.topics.command("printer", "write")
                await lab.bus.publish(
                    topic, json.dumps({"reply_to": inbox + "/raw", "id": "x1", "args": 5}).encode()
                )
                reply = parse_reply((await raw.get()).payload)
                assert not reply.ok and reply.error.code == "malformed_request"
                assert "args" in reply.error.message
                late = Request(
                    id=uuid.uuid4().hex,
                    reply_to=inbox + "/raw",
                    args={"signal": "bed_temperature_setpoint", "value": 20.0},
                    deadline=time.time() - 1,
                )
                assert lab.session is not None
                late = lab.session.sign(topic, late)
                await lab.bus.publish(topic, late.model_dump_json(exclude_unset=True).encode())
                reply = parse_reply((await raw.get()).payload)
                assert not reply.ok and reply.error.code == DeadlineExceeded.code

            with pytest.raises(UnknownDevice):
                await lab.submit(printer="incubator", gcode="G28\n")
            # Nothing reached the printer from any refused command.
            assert sim.executed[len(executed) :] == [
                c for c in sim.executed[len(executed) :] if c.split()[0] in {"M105", "M155"}
            ]
    with SqliteDatabase(db, readonly=True) as store:
        records = store.audit_records()
    writes = [r for r in records if r.action == "setpoint.write"]
    assert len(writes) == 1 and writes[0].actor == "bob" and writes[0].new == "37.0"
    assert writes[0].reason == "warm the bed"
    refused = [r for r in records if r.action == "command.refused"]
    assert len(refused) == 5 and {r.actor for r in refused} == {"bob"}
    assert any("[limit]" in (r.reason or "") for r in refused)

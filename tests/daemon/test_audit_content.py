"""What the audit trail records is right and bounded: the value a setpoint write replaced, refused
non-finite values and job submissions, size limits (``too_large``), ids out of range
(``bad_request``)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from labdevices.bus import Request, parse_reply
from labdevices.client import LabClient
from labdevices.daemon import Daemon, DeviceConfig, UnknownDevice
from labdevices.errors import BadRequest, JobRejected, LimitViolation, TooLarge
from labdevices.sim.printer import SimPrinterConfig, SimulatedPrinter
from labdevices.store import AuditRecord, SqliteDatabase
from labdevices.testing._auth import issue_session
from labdevices.testing._modbus import ModbusSim
from labdevices.testing._mqtt import MosquittoBroker

from .conftest import deadline, make_config

SETPOINT = "bed_temperature_setpoint"


def _records(db: Path) -> list[AuditRecord]:
    with SqliteDatabase(db, readonly=True) as store:
        return store.audit_records()


async def test_a_burst_of_setpoint_writes_records_each_old_value_it_replaced(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    values = [20.0 + i / 2 for i in range(40)]
    async with deadline(60), SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim:
        assert sim.port is not None
        async with (
            Daemon(make_config(site, mqtt_broker, db, sim.port)) as daemon,
            LabClient(
                mqtt_broker.url, site=site, session=issue_session(db, "bob", site=site)
            ) as lab,
        ):
            await daemon.slots["printer"].wait_ready()
            await asyncio.gather(*(lab.write("printer", SETPOINT, v) for v in values))
            await lab.write("printer", SETPOINT, 37.0)
    writes = [r for r in _records(db) if r.action == "setpoint.write"]
    assert len(writes) == len(values) + 1
    olds = [None if r.old is None else json.loads(r.old) for r in writes]
    news = [json.loads(r.new or "null") for r in writes]
    # A write-only G-code setpoint cannot be read back: the first old value is unknown.
    assert olds[0] is None
    assert olds[1:] == news[:-1]  # each write replaced exactly the one before it
    assert sorted(news[:-1]) == values and news[-1] == 37.0


async def test_before_its_first_write_the_old_value_is_read_back_from_the_device(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path, modbus_incubator: ModbusSim
) -> None:
    db = tmp_path / "lab.db"
    incubator = DeviceConfig(profile="co2-incubator", address=modbus_incubator.address)
    async with deadline(60), SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim:
        assert sim.port is not None
        config = make_config(site, mqtt_broker, db, sim.port, incubator=incubator)
        async with (
            Daemon(config) as daemon,
            LabClient(
                mqtt_broker.url, site=site, session=issue_session(db, "bob", site=site)
            ) as lab,
        ):
            await daemon.slots["incubator"].wait_ready()
            before = (await lab.read("incubator", "temperature_setpoint")).value
            await lab.write("incubator", "temperature_setpoint", 36.0)
            await lab.write("incubator", "temperature_setpoint", 36.5)
    writes = [r for r in _records(db) if r.action == "setpoint.write"]
    assert [(json.loads(r.old or "null"), json.loads(r.new or "null")) for r in writes] == [
        (before, 36.0),
        (36.0, 36.5),
    ]


async def test_non_finite_values_and_refused_jobs_are_audited_as_refused(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    async with deadline(60), SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim:
        assert sim.port is not None
        async with (
            Daemon(make_config(site, mqtt_broker, db, sim.port)) as daemon,
            LabClient(
                mqtt_broker.url, site=site, session=issue_session(db, "bob", site=site)
            ) as lab,
        ):
            await daemon.slots["printer"].wait_ready()
            inbox = lab.bus.reply_topic + "/raw"
            async with lab.bus.subscribe(inbox):
                # JSON has no NaN, but Python's parser takes the literal. A session's MAC is over
                # canonical JSON, which has no NaN either: such a request cannot carry a valid
                # MAC, so the daemon's guard refuses it (audited, no reply: the inbox is not
                # proven) before any handler sees it.
                topic = lab.topics.command("printer", "write")
                assert lab.session is not None
                signed = lab.session.sign(
                    topic,
                    Request(id="n1", reply_to=inbox, args={"signal": SETPOINT, "value": 1.5}),
                )
                payload = json.dumps(signed.model_dump(exclude_unset=True))
                payload = payload.replace('"value": 1.5', '"value": NaN')
                assert "NaN" in payload
                await lab.bus.publish(topic, payload.encode())
                # a barrier: a valid request on the same connection, answered after the NaN
                # one was handled (messages of one connection arrive in order)
                await lab.devices()
            with pytest.raises(LimitViolation, match="not a finite number"):
                await daemon.router.write_setpoint(
                    "printer", SETPOINT, float("inf"), "daemon", None
                )
            with pytest.raises(UnknownDevice):
                await lab.submit(printer="nope", gcode="G28\n")
            big = "; only comments\n" * 200
            with pytest.raises(JobRejected, match="no G-code commands"):
                await lab.submit(printer="printer", gcode=big, batch_id="B-9")
    records = _records(db)
    nan = [r for r in records if r.action == "request.refused"]
    assert len(nan) == 1 and not [r for r in records if r.action == "setpoint.write"]
    inf = [r for r in records if r.action == "setpoint.refused"]
    assert len(inf) == 1 and inf[0].new == '"inf"' and inf[0].object == f"device/printer/{SETPOINT}"
    refused = [r for r in records if r.action == "job.refused"]
    assert [r.object for r in refused] == ["device/nope", "device/printer"]
    assert all(r.actor == "bob" for r in refused)
    assert "[unknown_device]" in (refused[0].reason or "")
    kept = json.loads(refused[1].new or "{}")["args"]
    assert kept["batch_id"] == "B-9"
    assert kept["gcode"]["bytes"] == len(big)  # the G-code by size and hash, not whole
    assert len(kept["gcode"]["sha256"]) == 64


async def test_oversized_requests_are_refused_too_large_and_never_stored(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    async with deadline(60), SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim:
        assert sim.port is not None
        async with (
            Daemon(make_config(site, mqtt_broker, db, sim.port)) as daemon,
            LabClient(
                mqtt_broker.url, site=site, session=issue_session(db, "bob", site=site)
            ) as lab,
        ):
            await daemon.slots["printer"].wait_ready()
            with pytest.raises(TooLarge, match=r"args\.reason is 2048 bytes; the limit is 1024"):
                await lab.write("printer", SETPOINT, 30.0, reason="x" * 2048)
            with pytest.raises(TooLarge, match=r"args is \d+ bytes; the limit is 65536"):
                await lab.request(
                    lab.topics.command("printer", "write"),
                    {"signal": SETPOINT, "value": 30.0, "note": "y" * 70_000},
                )
            with pytest.raises(TooLarge, match=r"request is \d+ bytes; the limit is 262144"):
                await lab.ack_alarm(1, reason="z" * 5_000_000)
            inbox = lab.bus.reply_topic + "/raw"
            async with lab.bus.subscribe(inbox) as raw:
                big = json.dumps(
                    {
                        "id": uuid.uuid4().hex,
                        "reply_to": inbox,
                        "args": {},
                        "padding": "p" * 300_000,
                    }
                )
                await lab.bus.publish(lab.topics.command("printer", "read"), big.encode())
                reply = parse_reply((await raw.get()).payload)
                assert not reply.ok and reply.error.code == "too_large"
                assert "request is" in reply.error.message
            # A job submission carries its G-code: it has a larger allowance.
            gcode = "; padding\n" * 40_000 + "G28\n"
            info = await lab.submit(printer="printer", gcode=gcode)
            assert info.lines_total == 1
    records = _records(db)
    assert max(len(r.new or "") + len(r.reason or "") for r in records) < 4096
    assert not [r for r in records if r.action == "command.refused"]  # refused unread


async def test_ids_out_of_range_are_bad_requests(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    async with deadline(60), SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim:
        assert sim.port is not None
        async with (
            Daemon(make_config(site, mqtt_broker, db, sim.port)),
            LabClient(
                mqtt_broker.url, site=site, session=issue_session(db, "bob", site=site)
            ) as lab,
        ):
            with pytest.raises(BadRequest, match=r"args\.job_id is out of range"):
                await lab.job(2**70)
            with pytest.raises(BadRequest, match=r"args\.alarm_id is out of range"):
                await lab.ack_alarm(-(2**64))
            with pytest.raises(BadRequest):
                await lab.request(lab.topics.command("printer", "pause"), {"job_id": 2**63})

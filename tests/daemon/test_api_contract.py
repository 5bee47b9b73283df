"""The API as a contract: docs/api/asyncapi.yaml and docs/api.md are what the code generates; the
document names every command the daemon serves, with its capability, and every error code; and
the traffic of a run (every request, reply and published message) fits its schemas."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

from labdevices.auth import capability_for
from labdevices.bus import BusClient, BusMessage, ErrorReply, OkReply, Request
from labdevices.cli._api import api_markdown, api_yaml
from labdevices.client import JobInfo, LabClient
from labdevices.daemon import Daemon, parse_mqtt_url
from labdevices.daemon._api import COMMANDS, MESSAGES, error_codes
from labdevices.errors import LabDeviceError
from labdevices.sim.printer import SimPrinterConfig, SimulatedPrinter
from labdevices.testing._auth import TEST_PASSWORD, add_test_user, issue_session
from labdevices.testing._mqtt import MosquittoBroker

from .conftest import deadline, make_config

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_documents_are_what_the_code_generates() -> None:
    committed = (ROOT / "docs" / "api" / "asyncapi.yaml").read_text(encoding="utf-8")
    assert committed == api_yaml(), "run: labdevices api schema -o docs/api/asyncapi.yaml"
    rendered = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert rendered == api_markdown(), "run: labdevices api schema --markdown -o docs/api.md"


def test_the_document_has_the_authentication_fields_and_every_error_code() -> None:
    doc = yaml.safe_load(api_yaml())
    assert doc["asyncapi"] == "3.0.0"
    request = doc["components"]["schemas"]["Request"]["properties"]
    assert {"id", "reply_to", "args", "deadline", "session", "t", "mac"} <= set(request)
    codes = doc["info"]["x-error-codes"]
    assert set(codes) == set(error_codes())
    for code in ("unauthenticated", "forbidden", "too_large", "bad_request", "malformed_request"):
        assert codes.get(code), code
    # every command has its channel, operation, request message and an example
    for cmd in COMMANDS:
        channel = doc["channels"][f"{cmd.scope}_{cmd.name}"]
        assert channel["address"] == cmd.address
        message = doc["components"]["messages"][f"{cmd.scope}_{cmd.name}_request"]
        cmd.args.model_validate(message["examples"][0]["payload"]["args"])
    for name, (address, _, _) in MESSAGES.items():
        assert doc["channels"][name]["address"] == address


def _pattern(address: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(address)) + "$")


def _check(message: BusMessage) -> str:
    """Validate one message against the document's models; the channel it belongs to."""
    data: Any = json.loads(message.payload)
    for cmd in COMMANDS:
        if _pattern(cmd.address).match(message.topic):
            request = Request.model_validate(data)
            cmd.args.model_validate(request.args)
            return cmd.key
    if _pattern("labdevices/{site}/clients/{user}/{client}/reply").match(message.topic):
        (OkReply if data.get("ok") else ErrorReply).model_validate(data)
        return "reply"
    for name, (address, model, _) in MESSAGES.items():
        if _pattern(address).match(message.topic):
            model.model_validate(data)
            return name
    raise AssertionError(f"{message.topic}: no channel of the document")


async def test_the_traffic_of_a_run_fits_the_document(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    add_test_user(db, "sam", ["supervisor"], password=TEST_PASSWORD)
    olga = issue_session(db, "olga", site=site)
    host, port, *_ = parse_mqtt_url(mqtt_broker.url)
    recorded: list[BusMessage] = []
    async with (
        deadline(120),
        SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim,
        BusClient(host, port, site=site) as sniffer,
        sniffer.subscribe(f"labdevices/{site}/#") as sub,
    ):
        assert sim.port is not None

        async def record() -> None:
            async for message in sub:
                if message.payload:
                    recorded.append(message)

        recorder = asyncio.create_task(record())
        try:
            async with Daemon(make_config(site, mqtt_broker, db, sim.port)) as d:
                await d.slots["printer"].wait_ready()
                served = {("device", n) for n in d.router.device_commands}
                served |= {("daemon", n) for n in d.router.daemon_commands}
                served.add(("jobs", "submit"))
                assert served == {(c.scope, c.name) for c in COMMANDS}
                for scope, name in served - {("daemon", "login")}:
                    assert capability_for(scope, name) is not None, (scope, name)
                await _exercise(mqtt_broker.url, site, olga, d)
            # the last messages (replies, final states) reach the sniffer before it stops
            await sniffer.flush(10)
            async with sniffer.subscribe(f"labdevices/{site}/daemon/status/+") as status:
                async for message in status:
                    if json.loads(message.payload).get("online") is False:
                        break
        finally:
            recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recorder
    seen = {_check(m) for m in recorded}
    exercised = {c.key for c in COMMANDS}
    assert exercised <= seen, sorted(exercised - seen)
    assert {"reply", "deviceState", "telemetry", "jobProgress", "jobState", "daemonStatus"} <= seen


async def _exercise(url: str, site: str, olga: Any, d: Daemon) -> None:
    """Every command once (some refused: their error replies are traffic too)."""
    async with LabClient(url, site=site, user="sam", password=TEST_PASSWORD) as sam:
        await sam.whoami()
        async with LabClient(url, site=site, session=olga) as lab:
            await lab.devices()
            await lab.status()
            await lab.read("printer", "bed_temperature")
            await lab.describe("printer")
            with contextlib.suppress(LabDeviceError):
                await lab.write("printer", "bed_temperature_setpoint", 999.0, reason="too hot")
            await lab.write("printer", "bed_temperature_setpoint", 20.0, reason="ok")
            async with contextlib.aclosing(
                lab.run(printer="printer", gcode="G28\n" + "G1 X10 Y10 F600\nG1 X20 Y10\n" * 200)
            ) as stream:
                async for item in stream:
                    if isinstance(item, JobInfo):
                        job_id = item.job_id
                    elif item.line > 0:
                        break
            await lab.pause("printer", job_id=job_id)
            await lab.resume("printer", job_id=job_id)
            await lab.cancel("printer", job_id=job_id, reason="contract test")
            await lab.jobs()
            job = await lab.job(job_id)
            await lab.alarms()
            with contextlib.suppress(LabDeviceError):
                await lab.ack_alarm(999)
            with contextlib.suppress(LabDeviceError):
                await sam.sign(job_id, meaning="reviewed", password="wrong", content_sha256="0")
            assert job.content_sha256 is not None
            await sam.sign(
                job_id,
                meaning="reviewed",
                password=TEST_PASSWORD,
                content_sha256=job.content_sha256,
            )
            await lab.estop("printer", reason="contract test")
            await sam.clear_fault("printer", reason="contract test")
            await lab.logout()
        await sam.logout()

"""Only the daemon speaks for the lab: a real Mosquitto run with what `labdevices broker-config`
writes, and the embedded broker with the same rules, refuse a user's forged daemon publish,
another user's inbox, and anyone's requests (a login carries a password)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from labdevices.cli._broker import write_broker_config
from labdevices.client import LabClient
from labdevices.daemon import Daemon
from labdevices.errors import Forbidden
from labdevices.sim.printer import SimPrinterConfig, SimulatedPrinter
from labdevices.testing._auth import TEST_PASSWORD, add_test_user, issue_session
from labdevices.testing._mqtt import MosquittoBroker

from .conftest import make_config

FORGED = {"device": "printer", "state": "failed", "forged": True}


def _users(db: Path) -> None:
    add_test_user(db, "alice", ["operator"], password=TEST_PASSWORD)
    add_test_user(db, "bob", ["operator"], password=TEST_PASSWORD)


@contextlib.asynccontextmanager
async def client(
    host: str, port: int, user: str | None, password: str | None = TEST_PASSWORD
) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(
        host, port, username=user, password=password if user else None, identifier=f"raw-{user}"
    ) as c:
        yield c


async def _forgery_is_not_delivered(host: str, port: int, root: str) -> None:
    """alice forges the printer's state (retained) and telemetry; bob sees only the daemon's."""
    state, telemetry = f"{root}/printer/state", f"{root}/printer/telemetry"
    async with client(host, port, "bob") as bob, client(host, port, "alice") as alice:
        await bob.subscribe(telemetry, qos=1)
        forged_sample = {"device": "printer", "samples": [{"signal": "t", "value": 55.5, "t": 0}]}
        await alice.publish(telemetry, json.dumps(forged_sample), qos=1)
        await alice.publish(state, json.dumps(FORGED), qos=1, retain=True)
        await alice.publish(
            f"{root}/jobs/1/state", json.dumps({"job_id": 1, "state": "failed"}), qos=1, retain=True
        )
        await alice.publish(f"{root}/clients/bob/x/reply", b'{"id":"1","ok":true}', qos=1)
        # The daemon's telemetry keeps coming: the next one proves the forged one was not
        # routed (the broker routes a publish before acknowledging it; bob's stream is ordered).
        async with asyncio_timeout(20):
            message = await anext(bob.messages)
        assert b"55.5" not in message.payload  # type: ignore[operator]
        # Retained messages follow each SUBACK in order: a forged job state would come first.
        await bob.subscribe(f"{root}/jobs/1/state", qos=1)
        await bob.subscribe(state, qos=1)
        async with asyncio_timeout(20):
            while True:
                first = await anext(bob.messages)
                if first.topic.value != telemetry:
                    break
        assert first.topic.value == state, first.topic
        retained = json.loads(next_payload(first))
        assert "forged" not in retained and retained["state"] in ("idle", "busy", "connecting")


def next_payload(message: aiomqtt.Message) -> bytes:
    assert isinstance(message.payload, bytes)
    return message.payload


@contextlib.asynccontextmanager
async def asyncio_timeout(seconds: float) -> AsyncIterator[None]:
    import asyncio

    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        pytest.fail(f"nothing within {seconds} s")


async def _others_inboxes_and_requests_unreadable(
    host: str, port: int, url: str, site: str
) -> None:
    """alice listens on bob's inbox and on every request topic while bob logs in (password in
    the request, session secret in the reply) and reads: she gets none of it."""
    root = f"labdevices/{site}"
    async with client(host, port, "alice") as alice:
        for topic in (f"{root}/clients/bob/#", f"{root}/daemon/cmd/login", f"{root}/+/cmd/+"):
            await alice.subscribe(topic, qos=1)  # Mosquitto grants it, then delivers nothing
        await alice.subscribe(f"{root}/printer/telemetry", qos=1)
        async with LabClient(url, site=site, user="bob", password=TEST_PASSWORD) as lab:
            await lab.read("printer", "nozzle_temperature")
        done = time.time()
        # The daemon's telemetry after bob's exchange comes after anything routed to alice
        # from it (one stream, in order): only telemetry may come before.
        async with asyncio_timeout(20):
            async for message in alice.messages:
                assert message.topic.value.endswith("/printer/telemetry"), (
                    message.topic,
                    message.payload,
                    message.retain,
                )
                samples = json.loads(next_payload(message))["samples"]
                if max(sample["t"] for sample in samples) > done:
                    break


async def test_mosquitto_with_the_generated_password_file_and_acl(
    site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    _users(db)
    files = write_broker_config(db, tmp_path / "broker")
    assert files["daemon-password"].stat().st_mode & 0o777 == 0o600
    assert files["passwd"].read_text().count("$7$210000$") == 3  # daemon, alice, bob
    acl = files["acl"].read_text()
    assert "user labdevices-daemon\ntopic readwrite labdevices/#" in acl
    assert "topic read labdevices/+/clients/alice/#" in acl
    (tmp_path / "mosquitto").mkdir()
    broker = MosquittoBroker(
        tmp_path / "mosquitto", password_file=files["passwd"], acl_file=files["acl"]
    )
    broker.start()
    root = f"labdevices/{site}"
    try:
        async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim:
            assert sim.port is not None
            config = make_config(
                site,
                broker.url,
                db,
                sim.port,
                username="labdevices-daemon",
                password_file=files["daemon-password"],
            )
            async with Daemon(config) as daemon:
                await daemon.slots["printer"].wait_ready()
                with pytest.raises(aiomqtt.MqttError):
                    async with client(broker.host, broker.port, None):
                        pass
                with pytest.raises(aiomqtt.MqttError):
                    async with client(broker.host, broker.port, "alice", "wrong password!"):
                        pass
                await _forgery_is_not_delivered(broker.host, broker.port, root)
                await _others_inboxes_and_requests_unreadable(
                    broker.host, broker.port, broker.url, site
                )
                # The real client works within the same rules: login, read, its job events.
                async with LabClient(
                    broker.url, site=site, user="alice", password=TEST_PASSWORD
                ) as lab:
                    assert (await lab.whoami())["user"] == "alice"
                    assert (await lab.read("printer", "nozzle_temperature")).unit == "degC"
                    job = await lab.submit(printer="printer", gcode="G28\nG1 X10 Y10 F600\n")
                    async for event in lab.follow(job.job_id):
                        last = event
                    assert last.state == "completed"
    finally:
        broker.stop()


async def test_broker_config_command_writes_the_files(tmp_path: Path) -> None:
    import asyncio

    db = tmp_path / "lab.db"
    _users(db)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "labdevices",
        "broker-config",
        "--db",
        str(db),
        "-o",
        str(tmp_path / "out"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out
    text = out.decode()
    assert 'username = "labdevices-daemon"' in text and "password_file = " in text
    password = (tmp_path / "out" / "daemon-password").read_text().strip()
    assert password not in text  # the secret is in the 0600 file, never printed


async def test_the_embedded_broker_applies_the_same_rules(site: str, tmp_path: Path) -> None:
    db = tmp_path / "lab.db"
    _users(db)
    root = f"labdevices/{site}"
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim:
        assert sim.port is not None
        async with Daemon(make_config(site, None, db, sim.port)) as daemon:
            await daemon.slots["printer"].wait_ready()
            assert daemon.broker_url is not None
            host, port = daemon.broker_url.removeprefix("mqtt://").split(":")
            for user, password in ((None, None), ("alice", "wrong password!"), ("mallory", "x")):
                with pytest.raises(aiomqtt.MqttError):
                    async with client(host, int(port), user, password):
                        pass
            await _forgery_is_not_delivered(host, int(port), root)
            await _others_inboxes_and_requests_unreadable(host, int(port), daemon.broker_url, site)
            async with client(host, int(port), "alice") as alice:
                # The embedded broker refuses such subscriptions outright.
                for topic in (f"{root}/clients/bob/#", f"{root}/daemon/cmd/login", "labdevices/#"):
                    granted = await alice.subscribe(topic, qos=1)
                    assert [getattr(g, "value", g) for g in granted] == [0x80], topic
            # A session alone (no password) gets in too: its token, checked by the daemon.
            session = issue_session(db, "bob", site=site)
            async with LabClient(daemon.broker_url, site=site, session=session) as lab:
                assert (await lab.whoami())["user"] == "bob"
                # The client says so when the broker refuses a subscription.
                with pytest.raises(Forbidden, match="refused the subscription"):
                    async with lab.bus.subscribe(f"{root}/clients/alice/#"):
                        pass


async def test_the_ready_line_does_not_print_the_broker_password(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    import asyncio

    secret = "s3cret-broker-password"
    url = mqtt_broker.url.replace("mqtt://", f"mqtt://labdevices-daemon:{secret}@")
    config = tmp_path / "daemon.toml"
    config.write_text(
        f'site = "{site}"\n[bus]\nurl = "{url}"\n[store]\npath = "{tmp_path / "lab.db"}"\n'
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "labdevices",
        "daemon",
        "-c",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert "labdevices daemon ready" in line, line
        assert secret not in line and "labdevices-daemon:***@" in line
    finally:
        proc.terminate()
        _, err = await proc.communicate()
    assert secret.encode() not in err

"""Several daemons on one site (issue #16): one Mosquitto, one store, each daemon its printers.

Real parts: simulated Marlin printers on ptys, a real Mosquitto, daemons in this process
sharing one store file (as two processes would: each its own connections).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from labdevices.bus import BusClient, BusMessage
from labdevices.client import JobEvent, JobInfo, LabClient
from labdevices.daemon import Daemon
from labdevices.daemon._errors import SiteConflict
from labdevices.errors import JobRejected, LabDeviceError, Unauthenticated
from labdevices.sim.printer import SimPrinterConfig, SimulatedPrinter
from labdevices.store import (
    CheckpointSigner,
    SqliteDatabase,
    default_key_path,
    default_witness_path,
    load_or_create_signing_key,
    open_database,
    verify_store,
)
from labdevices.testing._auth import TEST_PASSWORD, add_test_user, issue_session
from labdevices.testing._mqtt import MosquittoBroker

from ..daemon.conftest import deadline, job_lines, long_job
from ..daemon.test_cli import _cli
from .conftest import LEASE_S, Location, room

SHORT_JOB = "G28\nG1 X10 Y10 F600\nG1 X20 Y10 F600\n"


@contextlib.asynccontextmanager
async def printers(n: int, time_scale: float = 0.01) -> AsyncIterator[list[SimulatedPrinter]]:
    async with contextlib.AsyncExitStack() as stack:
        sims = [
            await stack.enter_async_context(
                SimulatedPrinter(config=SimPrinterConfig(time_scale=time_scale))
            )
            for _ in range(n)
        ]
        yield sims


def _port(sim: SimulatedPrinter) -> str:
    assert sim.port is not None
    return sim.port


async def _run(lab: LabClient, **args: Any) -> tuple[JobInfo, list[JobEvent]]:
    info: JobInfo | None = None
    events: list[JobEvent] = []
    async with contextlib.aclosing(lab.run(**args)) as stream:
        async for item in stream:
            if isinstance(item, JobInfo):
                info = item
            else:
                events.append(item)
    assert info is not None
    return info, events


@contextlib.asynccontextmanager
async def replies(broker: MosquittoBroker, site: str) -> AsyncIterator[list[BusMessage]]:
    """Every reply published on the site while the block runs (to count them)."""
    seen: list[BusMessage] = []
    host, port = broker.host, broker.port
    async with BusClient(host, port, site=site, client_id=f"sniffer-{site}") as sniffer:
        await sniffer.wait_connected(10)
        async with sniffer.subscribe(f"labdevices/{site}/clients/#") as sub:

            async def collect() -> None:
                async for message in sub:
                    seen.append(message)

            task = asyncio.create_task(collect())
            try:
                yield seen
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def _replies_to(seen: list[BusMessage], request_id: str) -> list[dict[str, Any]]:
    out = []
    for message in seen:
        with contextlib.suppress(ValueError):
            body = json.loads(message.payload)
            if isinstance(body, dict) and body.get("id") == request_id:
                out.append(body)
    return out


def _verify(store: Location) -> None:
    key = load_or_create_signing_key(default_key_path(store))
    report = verify_store(
        store, public_key=CheckpointSigner(key, "x").public, witness=default_witness_path(store)
    )
    assert report.ok, str(report)


async def test_two_daemons_one_site_a_job_on_each_printer_and_the_site_proof_verifies(
    mqtt_broker: MosquittoBroker, site: str, site_store: Location
) -> None:
    async with printers(2) as (sim_a, sim_b):
        a_config = room(site, mqtt_broker, site_store, "room-a", {"printer-a": _port(sim_a)})
        b_config = room(site, mqtt_broker, site_store, "room-b", {"printer-b": _port(sim_b)})
        session = issue_session(site_store, "alice", site=site)
        async with (
            Daemon(a_config, lease_s=LEASE_S) as a,
            Daemon(b_config, lease_s=LEASE_S) as b,
            LabClient(mqtt_broker.url, site=site, session=session) as lab,
            deadline(90),
        ):
            (job_a, events_a), (job_b, events_b) = await asyncio.gather(
                _run(lab, printer="printer-a", gcode=SHORT_JOB),
                _run(lab, printer="printer-b", gcode=SHORT_JOB),
            )
            assert events_a[-1].state == events_b[-1].state == "completed"
            # one store, one sequence of ids, one store id on the bus
            assert job_a.job_id != job_b.job_id
            assert job_a.store_id == job_b.store_id == a.store_id == b.store_id
            status = await lab.status()
            jobs = await lab.jobs()
        # each job ran on its own printer, through its own daemon
        assert job_lines(sim_a.executed) == job_lines(sim_b.executed) == SHORT_JOB.split("\n")[:-1]
    assert {(d.daemon, d.live, tuple(d.devices)) for d in status.daemons} == {
        ("room-a", True, ("printer-a",)),
        ("room-b", True, ("printer-b",)),
    }
    assert sum(d.leader for d in status.daemons) == 1
    assert {(d.info.name, d.info.daemon) for d in status.devices} == {
        ("printer-a", "room-a"),
        ("printer-b", "room-b"),
    }
    assert {(j.job_id, j.printer, j.state) for j in jobs} == {
        (job_a.job_id, "printer-a", "completed"),
        (job_b.job_id, "printer-b", "completed"),
    }
    # the audit and the checkpoints of both daemons are one chain, and it proves
    _verify(site_store)
    with open_database(site_store, readonly=True) as store:
        actors = {r.actor for r in store.audit_records() if r.action == "site.lease"}
        assert actors == {"room-a", "room-b"}
        assert store.list_leases() == []  # both gave their leases up


async def test_a_device_name_owned_by_a_live_daemon_is_refused_at_start(
    mqtt_broker: MosquittoBroker, site: str, site_store: Location
) -> None:
    async with printers(2) as (sim_a, sim_b):
        a_config = room(site, mqtt_broker, site_store, "room-a", {"printer-a": _port(sim_a)})
        b_config = room(
            site,
            mqtt_broker,
            site_store,
            "room-b",
            {"printer-b": _port(sim_b), "printer-a": _port(sim_b)},
        )
        async with Daemon(a_config, lease_s=LEASE_S), deadline(60):
            with pytest.raises(SiteConflict) as refused:
                async with Daemon(b_config, lease_s=LEASE_S):
                    pass
            message = str(refused.value)
            assert "room-b.toml" in message and "'room-b' cannot join" in message
            assert "device 'printer-a' is owned by daemon 'room-a'" in message
            assert refused.value.device == "printer-a"
            with open_database(site_store, readonly=True) as store:
                # nothing was taken by the refused daemon, not even its other printer
                assert {x.daemon for x in store.list_leases()} == {"room-a"}
                [refusal] = [r for r in store.audit_records() if r.action == "site.refused"]
                assert refusal.actor == "room-b" and "'printer-a'" in (refusal.reason or "")
        # once room-a stopped (its leases given up), room-b may have printer-a
        async with Daemon(b_config, lease_s=LEASE_S) as b, deadline(30):
            assert set(b.slots) == {"printer-a", "printer-b"}


async def test_a_crashed_daemons_leases_do_not_block_its_restart(
    mqtt_broker: MosquittoBroker, site: str, site_store: Location
) -> None:
    async with printers(1) as (sim,):
        config = room(site, mqtt_broker, site_store, "room-a", {"printer-a": _port(sim)})
        # What a room-a killed on this host leaves: its lease, not given up, and no process.
        dead = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
        await dead.wait()
        with _as_daemon(site_store, site) as store:
            store.acquire_leases(
                ["device/printer-a"],
                daemon="room-a",
                instance=f"{socket.gethostname()}:{dead.pid}:0",
                ttl_s=600,
            )
        started = time.monotonic()
        async with Daemon(config, lease_s=LEASE_S), deadline(30):
            pass
        assert time.monotonic() - started < 600  # taken over at once, not waited for
        # A room-a on another host cannot be checked: its lease is waited for, one lease time.
        with _as_daemon(site_store, site) as store:
            store.acquire_leases(
                ["device/printer-a"], daemon="room-a", instance="elsewhere:1:0", ttl_s=LEASE_S
            )
            expires = store.list_leases()[0].expires_at
        async with Daemon(config, lease_s=LEASE_S), deadline(30):
            assert time.time() >= expires
        with open_database(site_store, readonly=True) as store:
            reasons = [r.reason for r in store.audit_records() if r.action == "site.lease"]
        assert "the previous holder is no longer running" in reasons
        assert "the previous holder's lease ran out" in reasons


def _as_daemon(store: Location, site: str) -> SqliteDatabase:
    """The store as a daemon opens it (with its key: checkpoints signed)."""
    key = load_or_create_signing_key(default_key_path(store))
    return open_database(store, signer=CheckpointSigner(key, f"labdevices/{site}"))


async def test_a_second_copy_of_a_running_daemon_is_refused(
    mqtt_broker: MosquittoBroker, site: str, site_store: Location
) -> None:
    async with printers(1) as (sim,):
        config = room(site, mqtt_broker, site_store, "room-a", {"printer-a": _port(sim)})
        async with Daemon(config, lease_s=LEASE_S), deadline(30):
            # it waits one lease time (a crashed run's would have run out), then gives up
            with pytest.raises(SiteConflict, match="'printer-a' is owned by daemon 'room-a'"):
                async with Daemon(config, lease_s=LEASE_S):
                    pass


async def test_a_site_level_mutation_runs_once_and_is_answered_once(
    mqtt_broker: MosquittoBroker, site: str, site_store: Location
) -> None:
    async with printers(2) as (sim_a, sim_b):
        a_config = room(site, mqtt_broker, site_store, "room-a", {"printer-a": _port(sim_a)})
        b_config = room(site, mqtt_broker, site_store, "room-b", {"printer-b": _port(sim_b)})
        session = issue_session(site_store, "olga", site=site, roles=["operator"])
        with open_database(site_store) as store:
            alarm = store.raise_alarm("printer-b", "door_open", "warning")
        async with (
            Daemon(a_config, lease_s=LEASE_S) as a,
            Daemon(b_config, lease_s=LEASE_S) as b,
            replies(mqtt_broker, site) as seen,
            LabClient(mqtt_broker.url, site=site, session=session) as lab,
            deadline(60),
        ):
            follower = a if b.site_member.is_leader else b
            skipped = follower.bus.stats.not_taken
            acked = await lab.ack_alarm(alarm.id, reason="closed it")
            assert acked.acknowledged_by == "olga"
            # a second acknowledgement is refused, not run again
            with pytest.raises(LabDeviceError):
                await lab.ack_alarm(alarm.id, reason="again")
            # a request the client sends after both: its reply comes after any late one
            await lab.whoami()
            # the other daemon heard the requests too, and left them
            assert follower.bus.stats.not_taken > skipped
        answered = [
            body
            for m in seen
            if (body := json.loads(m.payload)).get("ok") and "acknowledged_by" in str(body)
        ]
    assert len(answered) == 1
    assert len(_replies_to(seen, answered[0]["id"])) == 1
    with open_database(site_store, readonly=True) as store:
        acks = [r for r in store.audit_records() if r.action == "alarm.acknowledge"]
    assert len(acks) == 1 and acks[0].actor == "olga"


async def test_restarting_daemon_b_does_not_touch_daemon_as_running_job(
    mqtt_broker: MosquittoBroker, site: str, site_store: Location
) -> None:
    async with printers(2, time_scale=0.02) as (sim_a, sim_b):
        a_config = room(site, mqtt_broker, site_store, "room-a", {"printer-a": _port(sim_a)})
        b_config = room(site, mqtt_broker, site_store, "room-b", {"printer-b": _port(sim_b)})
        session = issue_session(site_store, "alice", site=site)
        async with (
            Daemon(a_config, lease_s=LEASE_S),
            LabClient(mqtt_broker.url, site=site, session=session) as lab,
            deadline(120),
        ):
            events: list[JobEvent] = []
            async with contextlib.aclosing(lab.run(printer="printer-a", gcode=long_job(80))) as run:
                async for item in run:
                    if isinstance(item, JobInfo):
                        continue
                    events.append(item)
                    if item.kind == "progress" and len(events) == 3:
                        # room-b starts and stops twice while printer-a prints
                        for _ in range(2):
                            async with Daemon(b_config, lease_s=LEASE_S) as b:
                                assert b.recovered == []
                                running = await lab.job(item.job_id)
                                assert running.state == "running"
    assert events[-1].state == "completed"
    with open_database(site_store, readonly=True) as store:
        record = store.get_job(events[-1].job_id)
    assert [e.payload["to"] for e in record.events if e.kind == "state"] == [
        "running",
        "completed",
    ]


async def test_a_job_for_a_printer_is_run_by_its_daemon_not_by_the_leader(
    mqtt_broker: MosquittoBroker, site: str, site_store: Location
) -> None:
    async with printers(2) as (sim_a, sim_b):
        a_config = room(site, mqtt_broker, site_store, "room-a", {"printer-a": _port(sim_a)})
        b_config = room(site, mqtt_broker, site_store, "room-b", {"printer-b": _port(sim_b)})
        session = issue_session(site_store, "alice", site=site)
        # room-b starts first: it leads the site
        async with (
            Daemon(b_config, lease_s=LEASE_S) as b,
            Daemon(a_config, lease_s=LEASE_S) as a,
            replies(mqtt_broker, site) as seen,
            LabClient(mqtt_broker.url, site=site, session=session) as lab,
            deadline(60),
        ):
            assert b.site_member.is_leader and not a.site_member.is_leader
            info, events = await _run(lab, printer="printer-a", gcode=SHORT_JOB)
            assert events[-1].state == "completed"
            # a device nobody on the site has: the leader says so, once, naming the site's
            with pytest.raises(LabDeviceError, match="devices of the site: printer-a, printer-b"):
                await lab.describe("printer-z")
            described = await lab.describe("printer-a")
            # which printer, the leader cannot guess on a site of several daemons
            with pytest.raises(JobRejected, match=r"args\.printer is required"):
                await lab.submit(gcode=SHORT_JOB)
            await lab.whoami()
    assert described.daemon == "room-a"
    assert job_lines(sim_a.executed) == SHORT_JOB.split("\n")[:-1]
    assert job_lines(sim_b.executed) == []
    bodies = [json.loads(m.payload) for m in seen]
    accepted = [
        b
        for b in bodies
        if b.get("ok")
        and isinstance(b.get("result"), dict)
        and b["result"].get("job_id") == info.job_id
        and b["result"].get("state") == "queued"
    ]
    assert len(accepted) == 1
    unknown = [b for b in bodies if b.get("error", {}).get("code") == "unknown_device"]
    assert len(unknown) == 1


async def test_a_request_the_last_leader_ran_is_not_run_again_by_the_next_one(
    mqtt_broker: MosquittoBroker, site: str, site_store: Location
) -> None:
    """The attack: capture a login (a mutation: it makes a session) and replay it, within the
    replay window, once another daemon has taken the site's lead."""
    add_test_user(site_store, "alice", ["operator"], password=TEST_PASSWORD)
    async with printers(2) as (sim_a, sim_b):
        a_config = room(site, mqtt_broker, site_store, "room-a", {"printer-a": _port(sim_a)})
        b_config = room(site, mqtt_broker, site_store, "room-b", {"printer-b": _port(sim_b)})
        topic = f"labdevices/{site}/daemon/cmd/login"
        async with (
            # (an anonymous client: the daemon's refusals reach it, under clients/anonymous/)
            BusClient(mqtt_broker.host, mqtt_broker.port, site=site, client_id="anonymous") as eve,
            Daemon(b_config, lease_s=LEASE_S) as b,
            deadline(60),
        ):
            await eve.wait_connected(10)
            async with eve.subscribe(topic) as wire:
                async with Daemon(a_config, lease_s=LEASE_S) as a:
                    await b.site_member.leave()  # room-a leads from here
                    await a.site_member.renew()
                    assert a.site_member.is_leader
                    async with LabClient(
                        mqtt_broker.url, site=site, user="alice", password=TEST_PASSWORD
                    ):
                        captured = await wire.get()
                # room-a stopped; room-b leads again
                await b.site_member.join()
                assert b.site_member.is_leader
                skipped = b.bus.stats.not_taken
                eve.post(topic, captured.payload)
                # a probe after it: refused (no session), its answer comes after the replay's fate
                with pytest.raises(Unauthenticated):
                    await eve.request(f"labdevices/{site}/daemon/cmd/whoami", timeout=10)
                assert b.bus.stats.not_taken == skipped + 1  # the replay, left alone
    with open_database(site_store, readonly=True) as store:
        sessions = [r for r in store.audit_records() if r.action == "session.create"]
    assert len(sessions) == 1


async def test_the_cli_shows_the_whole_site_status_jobs_watch_and_audit_verify(
    mqtt_broker: MosquittoBroker, site: str, site_store: Location, tmp_path: Path
) -> None:
    session = tmp_path / "olga.json"
    issue_session(site_store, "olga", site=site).save(session)
    as_olga = ["--broker", mqtt_broker.url, "--site", site, "--session-file", str(session)]
    async with printers(2) as (sim_a, sim_b):
        a_config = room(site, mqtt_broker, site_store, "room-a", {"printer-a": _port(sim_a)})
        b_config = room(site, mqtt_broker, site_store, "room-b", {"printer-b": _port(sim_b)})
        async with (
            Daemon(a_config, lease_s=LEASE_S),
            Daemon(b_config, lease_s=LEASE_S),
            LabClient(mqtt_broker.url, site=site, session_file=session) as lab,
            deadline(120),
        ):
            await _run(lab, printer="printer-b", gcode=SHORT_JOB)
            code, out = await _cli("status", "--json", *as_olga)
            assert code == 0, out
            status = json.loads(out)
            assert [(d["daemon"], d["live"], d["devices"]) for d in status["daemons"]] == [
                ("room-a", True, ["printer-a"]),
                ("room-b", True, ["printer-b"]),
            ]
            assert {(d["device"], d["daemon"]) for d in status["devices"]} == {
                ("printer-a", "room-a"),
                ("printer-b", "room-b"),
            }
            code, out = await _cli("status", *as_olga)
            assert code == 0 and "daemons of site" in out and "leader" in out, out
            code, out = await _cli("jobs", "--db", str(site_store))
            assert code == 0 and "printer-b" in out, out
            code, out = await _cli("watch", "--site", "--duration", "1.5", *as_olga)
            assert code == 0 and "printer-a" in out and "printer-b" in out, out
    code, out = await _cli("audit", "verify", "--db", str(site_store))
    assert code == 0, out

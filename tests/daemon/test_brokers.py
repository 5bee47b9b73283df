"""The daemon on bridged brokers: fail-over during a print job loses nothing acknowledged, and a
copy of a request delivered again by the bridge is never run twice."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from labdevices.bus import BusClient, Request
from labdevices.client import JobEvent, JobInfo, LabClient, Session
from labdevices.daemon import BusConfig, Daemon, check_config
from labdevices.sim.printer import SimPrinterConfig, SimulatedPrinter
from labdevices.store import JobState, SqliteDatabase, verify_audit
from labdevices.testing._auth import issue_session
from labdevices.testing._mqtt import BridgedBrokers

from .conftest import deadline, long_job, make_config
from .test_cli import _cli


@dataclass
class BridgedLab:
    """A daemon with both brokers in ``[bus] url`` (the primary first), its printer, its store."""

    daemon: Daemon
    sim: SimulatedPrinter
    db: Path
    session: Session


@pytest.fixture
async def lab_on_bridge(
    bridged_brokers: BridgedBrokers, site: str, tmp_path: Path
) -> AsyncIterator[BridgedLab]:
    db = tmp_path / "lab.db"
    session = issue_session(db, "olga", site=site)
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.02)) as sim:
        assert sim.port is not None
        config = make_config(site, None, db, sim.port).config
        bus = BusConfig(url=bridged_brokers.urls, client_id=f"daemon-{site}")
        loaded = check_config(config.model_copy(update={"bus": bus}), "test-config")
        async with Daemon(loaded) as daemon:
            yield BridgedLab(daemon, sim, db, session)


async def test_broker_fail_over_mid_job_loses_no_transition_audit_record_or_sample(
    bridged_brokers: BridgedBrokers, lab_on_bridge: BridgedLab, site: str
) -> None:
    primary, standby = bridged_brokers.primary, bridged_brokers.standby
    daemon, sim = lab_on_bridge.daemon, lab_on_bridge.sim
    db, session = lab_on_bridge.db, lab_on_bridge.session
    async with deadline(120):
        # The client, like the daemon, knows both brokers, the primary first.
        async with LabClient(
            bridged_brokers.urls, site=site, client_id=f"c-{site}", timeout=30, session=session
        ) as lab:
            await daemon.bus.wait_connected(10)
            assert daemon.bus.broker == primary.url and lab.bus.broker == primary.url
            events: list[JobEvent] = []
            job_id = 0
            killed_at = back_at = 0.0
            async with contextlib.aclosing(lab.run(printer="printer", gcode=long_job())) as stream:
                async for item in stream:
                    if isinstance(item, JobInfo):
                        job_id = item.job_id
                        continue
                    events.append(item)
                    if item.kind == "progress" and not killed_at:
                        killed_at = time.time()
                        await asyncio.to_thread(primary.kill)  # a crash: nothing saved
                        await daemon.bus.wait_disconnected()
                        await daemon.bus.wait_connected(10)
                        back_at = time.time()
                        assert daemon.bus.broker == standby.url
                        done = len(sim.executed)
                        # The printer went on: the job is not held up by the bus.
                        await sim.wait_until(lambda s, n=done: len(s.executed) > n + 20)  # type: ignore[misc]
                        # A request made now is answered over the standby.
                        reading = await lab.read("printer", "nozzle_temperature")
                        assert reading.signal == "nozzle_temperature"
            assert (events[-1].kind, events[-1].state) == ("state", "completed")
            assert lab.bus.broker == standby.url
            assert daemon.bus.stats.failovers == 1 and lab.bus.stats.failovers == 1
            stats = daemon.pipeline.stats
        # A client that comes after the job sees its final state, retained on the standby.
        async with (
            LabClient(standby.url, site=site, session=session) as late,
            contextlib.aclosing(late.follow(job_id)) as follow,
        ):
            final = await anext(follow)
            assert (final.kind, final.state) == ("state", "completed")

    # Nothing acknowledged is lost: the store is written by the daemon, not through the bus.
    assert stats.store_dropped == stats.store_errors == 0
    result = verify_audit(db)
    assert result.ok, result.message
    with SqliteDatabase(db, readonly=True) as store:
        job = store.get_job(job_id)
        assert job.state == JobState.COMPLETED and job.last_ack_line == job.lines_total
        transitions = [r.new for r in store.audit_records() if r.action == "job.transition"]
        during = store.query_telemetry("printer", start=killed_at - 1.0, end=back_at + 1.0)
    assert any("running" in (t or "") for t in transitions)
    assert any("completed" in (t or "") for t in transitions)
    assert during, "no telemetry stored around the fail-over"


async def test_a_request_delivered_twice_by_the_bridge_runs_once(
    bridged_brokers: BridgedBrokers, lab_on_bridge: BridgedLab, site: str
) -> None:
    primary, standby = bridged_brokers.primary, bridged_brokers.standby
    daemon, db, session = lab_on_bridge.daemon, lab_on_bridge.db, lab_on_bridge.session
    async with (
        deadline(60),
        LabClient(standby.url, site=site, session=session) as lab,
        BusClient(primary.host, primary.port, site=site) as other,
    ):
        await other.wait_connected(10)
        topic = lab.topics.command("printer", "read")
        envelope = session.sign(
            topic,
            Request(
                id=uuid.uuid4().hex,
                reply_to=lab.bus.reply_topic,
                args={"signal": "nozzle_temperature"},
                deadline=time.time() + 30,
            ),
        )
        data = envelope.model_dump_json(exclude_unset=True).encode()
        async with lab.bus.subscribe(lab.bus.reply_topic) as replies:
            await lab.bus.publish(topic, data)  # over the bridge to the daemon
            first = await replies.get()
            await other.publish(topic, data)  # the same bytes again, as a bridge loop would
            again = await replies.get()
        assert again.json() == first.json() and first.json()["ok"]
        assert daemon.bus.stats.duplicate_requests == 1
    with SqliteDatabase(db, readonly=True) as store:
        records = store.audit_records()
    assert [r.action for r in records].count("command.read") == 1
    replays = [r for r in records if r.action == "request.refused" and envelope.id in (r.new or "")]
    assert len(replays) == 1 and '"why":"replay"' in (replays[0].new or "").replace(" ", "")
    assert verify_audit(db).ok


async def test_the_cli_given_both_brokers_reaches_the_daemon_when_the_primary_is_dead(
    bridged_brokers: BridgedBrokers, lab_on_bridge: BridgedLab, site: str, tmp_path: Path
) -> None:
    session = tmp_path / "session.json"
    lab_on_bridge.session.save(session)
    daemon = lab_on_bridge.daemon
    async with deadline(60):
        await daemon.bus.wait_connected(10)
        await asyncio.to_thread(bridged_brokers.primary.kill)
        await daemon.bus.wait_disconnected()
        await daemon.bus.wait_connected(10)
        code, out = await _cli(
            *("alarms", "--site", site, "--session-file", str(session)),
            *("--broker", ",".join(bridged_brokers.urls)),
        )
    assert code == 0, out

"""What only a PostgreSQL store has: several daemons writing one store at once, and a database
server that can go away and come back under a running daemon."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from labdevices.devices import Sample
from labdevices.store import (
    CheckpointSigner,
    PostgresStore,
    StoreError,
    load_or_create_signing_key,
    load_public_key,
    open_store,
    verify_store,
)

from .._postgres import PostgresServer


async def _daemon_work(store: PostgresStore, name: str, rounds: int) -> list[int]:
    """What a daemon writes: jobs through their states, audit records, telemetry blocks."""
    seqs = []
    for i in range(rounds):
        job = await store.create_job(f"{name}-printer", actor=name, batch_id=f"{name}-{i}")
        await store.transition_job(job.id, "running", actor=name)
        await store.insert_telemetry(
            [
                Sample(f"{name}-printer", "t", 20.0 + k, "degC", t=1000.0 + i + k / 10)
                for k in range(5)
            ]
        )
        await store.transition_job(job.id, "completed", actor=name)
        seqs.append((await store.audit(name, "command", f"{name}/step{i}")).seq)
    return seqs


async def test_two_daemons_append_to_one_chain_signed_with_the_site_key(
    postgres_url: str, tmp_path: Path
) -> None:
    site_key = tmp_path / "site.key"  # one key file shared by the site's daemons
    signer = CheckpointSigner(load_or_create_signing_key(site_key), "labdevices/site1")
    witnesses = [tmp_path / "room1.witness", tmp_path / "room2.witness"]
    stores = [
        open_store(postgres_url, signer=signer, witness=w, checkpoint_every_records=7)
        for w in witnesses
    ]
    async with stores[0] as room1, stores[1] as room2:
        assert isinstance(room1, PostgresStore) and isinstance(room2, PostgresStore)
        a, b = await asyncio.gather(
            _daemon_work(room1, "room1", 15), _daemon_work(room2, "room2", 15)
        )
        # one total order: every seq once, across both daemons
        assert sorted(a + b) == sorted(set(a + b))
        records = await room1.audit_records()
        assert [r.seq for r in records] == list(range(1, len(records) + 1))
        assert {r.actor for r in records} >= {"room1", "room2"}
        # the job ids are the store's, not each daemon's
        jobs = await room2.list_jobs(limit=1000)
        assert len({j.id for j in jobs}) == 30
        await room1.checkpoint()
        await room2.checkpoint()
    public = load_public_key(site_key.with_name("site.key.pub"))
    for witness in witnesses:  # either daemon's witness proves the one chain
        report = verify_store(postgres_url, public_key=public, witness=witness)
        assert report.problems == [], report.problems
        assert report.exit_code == 0 and report.anchored_seq == report.head_seq
        assert report.rows_checked["jobs"] == 30
    # a daemon (re)starting on the store checks the last checkpoint, signed by the other
    async with open_store(postgres_url, signer=signer, witness=witnesses[0]) as again:
        assert (await again.verify()).ok


async def test_a_session_revoked_by_another_daemon_is_refused_at_once(postgres_url: str) -> None:
    async with open_store(postgres_url) as room1, open_store(postgres_url) as room2:
        await room1.add_user(
            "gina", "Gina", ["operator"], by="system-setup", reason="r", password="x" * 16
        )
        session = await room1.create_session("gina")
        for _ in range(3):  # read (and, where there is a cache, cached) by room 1
            got = await room1.get_session(session.id)
            assert got is not None and got.revoked_at is None
        await room2.revoke_session(session.id, by="gina", reason="logout")
        got = await room1.get_session(session.id)
        assert got is not None and got.revoked_at is not None


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A server of the test's own, to stop under a running store."""
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


async def test_server_crash_fails_the_call_clearly_and_loses_nothing_acknowledged(
    own_server: PostgresServer, tmp_path: Path
) -> None:
    name = own_server.create_database()
    url = own_server.url(name).replace("postgres@", "postgres:hunter2@")  # trust: unused
    signer = CheckpointSigner(load_or_create_signing_key(tmp_path / "k"), "labdevices/site1")
    witness = tmp_path / "w"
    async with open_store(url, signer=signer, witness=witness) as store:
        acknowledged = [(await store.audit("alice", "note", f"x/{i}")).hash for i in range(5)]
        job = await store.create_job("p1", actor="alice")
        own_server.pg_ctl("stop", mode="immediate")  # a crash: no shutdown checkpoint
        with pytest.raises(StoreError) as caught:
            await store.transition_job(job.id, "running", actor="alice")
        message = str(caught.value)
        assert f"postgresql://postgres:***@127.0.0.1:{own_server.port}/{name}" in message
        assert "hunter2" not in message
        with pytest.raises(StoreError, match="cannot connect"):  # still down
            await store.audit("alice", "note", "while down")
        own_server.pg_ctl("start")  # crash recovery replays the WAL
        # the store connects again by itself and goes on where the chain left off
        running = await store.transition_job(job.id, "running", actor="alice")
        assert running.state == "running"
        records = await store.audit_records()
        assert [r.hash for r in records[:5]] == acknowledged
        assert (await store.verify()).ok
    report = verify_store(url, public_key=signer.public, witness=witness)
    assert report.problems == [] and report.exit_code == 0, report.problems


async def test_the_daemon_keeps_telemetry_while_the_database_is_down(
    own_server: PostgresServer,
) -> None:
    from labdevices.bus import BusClient, TelemetryPublisher
    from labdevices.daemon._telemetry import TelemetryPipeline

    url = own_server.url(own_server.create_database())
    # the MQTT side is not under test: a publisher that is never started only queues
    publisher = TelemetryPublisher(BusClient(site="s1"))
    async with open_store(url) as store:
        pipeline = TelemetryPipeline(publisher, store, lambda sample: True)
        for k in range(5):
            pipeline.add(Sample("incubator", "t", 37.0 + k / 10, "degC", t=1000.0 + k))
        own_server.pg_ctl("stop", mode="immediate")
        await pipeline.flush_store()  # fails, logged: the samples wait
        assert (pipeline.stats.stored, pipeline.stats.store_errors) == (0, 1)
        pipeline.add(Sample("incubator", "t", 38.0, "degC", t=1005.0))
        own_server.pg_ctl("start")
        await pipeline.flush_store()
        assert pipeline.stats.stored == 6 and pipeline.stats.store_dropped == 0
        stored = await store.query_telemetry("incubator")
        assert [p.t for p in stored] == [1000.0 + k for k in range(6)]

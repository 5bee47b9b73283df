"""One store written by several daemons: leases taken all or none, one audit chain with its
checkpoints from two processes writing at once, and caches that see the other's writes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

from labdevices.bus import Request
from labdevices.daemon._errors import DeviceAbsent, UnknownDevice
from labdevices.daemon._site import SiteMembership
from labdevices.store import (
    CheckpointSigner,
    SqliteDatabase,
    default_key_path,
    default_witness_path,
    device_lease,
    load_or_create_signing_key,
    open_database,
    open_store,
    verify_store,
)
from labdevices.testing._auth import add_test_user

from .conftest import Location

# One daemon's writes: audit records with a checkpoint every few, as the daemon does.
WRITER = """
import sys
from labdevices.store import CheckpointSigner, load_or_create_signing_key, open_database
db, key, who, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
signer = CheckpointSigner(load_or_create_signing_key(key), "labdevices/site")
with open_database(db, signer=signer, checkpoint_every_records=5) as store:
    for i in range(n):
        store.audit(who, "test.write", f"thing/{who}/{i}", new={"i": i})
"""


def test_two_processes_writing_at_once_make_one_chain_that_verifies(site_store: Location) -> None:
    key_path = default_key_path(site_store)
    key = load_or_create_signing_key(key_path)
    with open_database(site_store):
        pass  # created and migrated before the writers race
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(site_store), str(key_path), who, "150"],
            stderr=subprocess.PIPE,
        )
        for who in ("room-a", "room-b")
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err.decode()
    report = verify_store(
        site_store,
        public_key=CheckpointSigner(key, "x").public,
        witness=default_witness_path(site_store),
    )
    assert report.ok, str(report)
    assert report.unanchored == 0
    with open_database(site_store, readonly=True) as store:
        records = store.audit_records()
        checkpoints = store.checkpoints()
    mine = [r for r in records if r.action == "test.write"]
    assert len(mine) == 300
    assert {r.actor for r in mine} == {"room-a", "room-b"}
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    # one sequence of checkpoints, each after the one before, both writers' among them
    assert [n for n, _ in checkpoints] == list(range(1, len(checkpoints) + 1))
    sizes = [cp.size for _, cp in checkpoints]
    assert sizes == sorted(sizes) and sizes[-1] == len(records)


def test_leases_are_taken_all_or_none_and_run_out(site_store: Location) -> None:
    with open_database(site_store) as store:
        a = ["device/printer-a", "device/incubator"]
        assert store.acquire_leases(a, daemon="room-a", instance="a1", ttl_s=60) == []
        blocking = store.acquire_leases(
            ["device/printer-b", "device/incubator"], daemon="room-b", instance="b1", ttl_s=60
        )
        assert [(x.name, x.daemon) for x in blocking] == [("device/incubator", "room-a")]
        # nothing of the refused set was taken
        assert {x.name for x in store.list_leases()} == set(a)
        # a renewal by the holder is no new lease (audited once)
        assert store.acquire_leases(a, daemon="room-a", instance="a1", ttl_s=60) == []
        taken = [r for r in store.audit_records() if r.action == "site.lease"]
        assert sorted(r.object for r in taken) == sorted(f"lease/{n}" for n in a)
        # a lease not renewed runs out: the next one may take it
        assert store.acquire_leases(["leader"], daemon="room-a", instance="a1", ttl_s=0.05) == []
        time.sleep(0.1)  # the lease's time passing is what is tested
        assert store.acquire_leases(["leader"], daemon="room-b", instance="b1", ttl_s=60) == []
        leader = [x for x in store.list_leases() if x.name == "leader"]
        assert [(x.daemon, x.instance) for x in leader] == [("room-b", "b1")]
        store.release_leases(instance="a1")
        assert {x.daemon for x in store.list_leases()} == {"room-b"}


def test_a_store_closed_while_another_daemon_writes_is_not_checkpointed_closed(
    site_store: Location,
) -> None:
    signer = CheckpointSigner(load_or_create_signing_key(default_key_path(site_store)), "s")
    with open_database(site_store, signer=signer) as other:
        other.acquire_leases([device_lease("p")], daemon="room-b", instance="b1", ttl_s=60)
        with open_database(site_store, signer=signer) as mine:
            mine.audit("room-a", "test.write", "thing/1")
        # room-b still runs: "closed" would make its next records look added behind our back
        assert _last_state(other) == "running"
        other.audit("room-b", "test.write", "thing/2")
        other.release_leases(instance="b1")
    with open_database(site_store, readonly=True) as store:
        assert _last_state(store) == "closed"  # the last daemon of the site closed it
    # and it opens again: nothing was added after the closing checkpoint
    with open_database(site_store, signer=signer):
        pass


def _last_state(store: SqliteDatabase) -> str:
    return store.checkpoints()[-1][1].state


async def test_a_cached_session_revoked_by_another_daemon_is_seen_at_once(
    site_store: Location,
) -> None:
    add_test_user(site_store, "alice")
    with open_database(site_store) as db:
        session = db.create_session("alice")
    async with open_store(site_store) as store:
        first = await store.get_session(session.id)
        assert first is not None and first.revoked_at is None
        assert await store.get_session(session.id) == first  # cached
        with open_database(site_store) as other:  # another daemon's connection
            other.revoke_session(session.id, by="admin", reason="left the lab")
        after = await store.get_session(session.id)
        assert after is not None and after.revoked_at is not None


async def test_a_device_not_of_this_daemon_is_named_as_another_daemons_absent_or_unknown(
    site_store: Location,
) -> None:
    async with open_store(site_store) as store:
        a = SiteMembership(store, "room-a", ["printer-a"], source="room-a.toml", lease_s=60)
        b = SiteMembership(store, "room-b", ["printer-b"], source="room-b.toml", lease_s=60)
        await a.join()
        await b.join()
        assert a.is_leader and not b.is_leader
        elsewhere = await a.not_here("printer-b")
        assert isinstance(elsewhere, UnknownDevice)
        assert "is daemon 'room-b''s, not this daemon's ('room-a')" in elsewhere.message
        await b.leave()
        # room-c crashed: its lease is there, run out
        await store.acquire_leases(["device/printer-c"], daemon="room-c", instance="c", ttl_s=0.01)
        await asyncio.sleep(0.05)  # the lease's time passing is what is tested
        absent = await a.not_here("printer-c")
        assert isinstance(absent, DeviceAbsent) and "'room-c'" in absent.message
        unknown = await a.not_here("printer-z")
        assert isinstance(unknown, UnknownDevice)
        assert "devices of the site: printer-a, printer-c" in unknown.message
        assert [(d["daemon"], d["live"], d["leader"]) for d in await a.daemons()] == [  # type: ignore[index]
            ("room-a", True, True),
            ("room-c", False, False),
        ]
        await a.leave()


async def test_two_daemons_starting_at_once_never_both_own_a_device(site_store: Location) -> None:
    """The race the all-or-none transaction closes: each of 30 devices is claimed by two
    stores (two connections, two writer threads) at the same moment."""
    with open_database(site_store):
        pass
    async with open_store(site_store) as one, open_store(site_store) as two:
        for i in range(30):
            names = [f"device/p{i}", f"device/shared{i}"]
            first, second = await asyncio.gather(
                one.acquire_leases(names, daemon="room-a", instance=f"a{i}", ttl_s=60),
                two.acquire_leases(names, daemon="room-b", instance=f"b{i}", ttl_s=60),
            )
            assert sorted([first == [], second == []]) == [False, True], (i, first, second)
            holders = {x.daemon for x in await one.list_leases() if x.name in names}
            assert len(holders) == 1


async def test_a_daemon_whose_renewals_stall_stops_taking_requests_before_its_lease_runs_out(
    site_store: Location,
) -> None:
    request = Request(id="r1", reply_to="labdevices/s/clients/alice/c/reply")
    topic = "labdevices/s/printer-a/cmd/read"
    async with open_store(site_store) as store:
        a = SiteMembership(store, "room-a", ["printer-a"], source="room-a.toml", lease_s=5)
        await a.join()
        assert await a.takes(topic, request)
        lease = next(x for x in await store.list_leases() if x.name == "device/printer-a")
        # no renewal (a stalled daemon): past lease time minus the margin, not yet run out
        await asyncio.sleep(max(0.0, lease.expires_at - 0.8 - time.time()))
        assert not await a.takes(topic, request)
        assert lease.live()  # nobody else could have the device yet: no overlap
        await a.leave()

"""Issue #11's attacks, by a raw MQTT client against the real daemon on a real Mosquitto.

Each is refused, audited as ``request.refused`` (who, which topic, what was claimed, why),
and changes nothing: the printer's bed setpoint (``M140``) is the witness.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from labdevices.daemon import Daemon
from labdevices.sim.printer import SimPrinterConfig, SimulatedPrinter
from labdevices.store import SqliteDatabase
from labdevices.testing._auth import issue_session
from labdevices.testing._mqtt import MosquittoBroker

from .conftest import Attacker, Lab, attacker, envelope, make_config, sessions_for

WRITE = {"signal": "bed_temperature_setpoint", "value": 55.5}


@contextlib.asynccontextmanager
async def running_lab(
    broker: MosquittoBroker, site: str, tmp_path: Path
) -> AsyncIterator[tuple[Lab, Daemon]]:
    db = tmp_path / "lab.db"
    sessions = sessions_for(db, site)
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim:
        assert sim.port is not None
        async with Daemon(make_config(site, broker.url, db, sim.port)) as daemon:
            await daemon.slots["printer"].wait_ready()
            yield Lab(site, f"labdevices/{site}", db, sim, sessions), daemon


@contextlib.asynccontextmanager
async def mallory(broker: MosquittoBroker, lab: Lab, *inboxes: str) -> AsyncIterator[Attacker]:
    async with attacker(broker.host, broker.port, lab.root) as a:
        for topic in inboxes or (lab.inbox("alice"),):
            await a.client.subscribe(topic, qos=1)
        yield a


async def barrier(a: Attacker, lab: Lab) -> list[dict[str, Any]]:
    """Send a valid request as alice and wait for its reply: whatever the daemon did with the
    messages sent before it is done, and everything it published to the attacker's topics
    before that reply has arrived (one connection, in order). Returns those other messages."""
    request_id = uuid.uuid4().hex
    topic = f"{lab.root}/printer/cmd/describe"
    await a.publish(
        topic,
        envelope(topic, lab.inbox("alice"), session=lab.sessions["alice"], request_id=request_id),
    )
    others = []
    while True:
        message = await a.next_message()
        body = json.loads(message.payload)  # type: ignore[arg-type]
        if body.get("id") == request_id:
            assert body["ok"], body
            return others
        others.append({"topic": message.topic.value, **body})


async def test_a_request_without_a_session_is_refused_and_audited(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    async with running_lab(mqtt_broker, site, tmp_path) as (lab, _):
        anonymous = lab.inbox("anonymous", "m1")
        async with mallory(mqtt_broker, lab, anonymous, lab.inbox("alice")) as a:
            topic = f"{lab.root}/printer/cmd/write"
            # The old attack: a free-text actor, claiming to be the daemon, then a QA supervisor.
            for claim in ("daemon", "sam"):
                await a.publish(topic, envelope(topic, anonymous, WRITE, actor=claim))
                reply = await a.reply()
                assert reply["ok"] is False
                assert reply["error"]["code"] == "unauthenticated"
                assert "log in" in reply["error"]["message"]
            # Unproven, it cannot have even an error sent into a user's inbox.
            await a.publish(topic, envelope(topic, lab.inbox("alice"), WRITE, actor="alice"))
            assert await barrier(a, lab) == []
            assert lab.setpoint_writes() == []
    refused = lab.refusals()
    assert [(r["actor"], r["claimed_actor"], r["code"]) for r in refused] == [
        ("anonymous", "daemon", "unauthenticated"),
        ("anonymous", "sam", "unauthenticated"),
        ("anonymous", "alice", "unauthenticated"),
    ]
    assert all(r["topic"].endswith("/printer/cmd/write") for r in refused)
    assert not lab.records("setpoint.write")


async def test_a_user_cannot_act_as_another_whatever_the_payload_says(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    async with running_lab(mqtt_broker, site, tmp_path) as (lab, _), mallory(mqtt_broker, lab) as a:
        alice, sam = lab.sessions["alice"], lab.sessions["sam"]
        topic = f"{lab.root}/printer/cmd/write"
        # Logged in as alice, claiming to be sam.
        await a.publish(
            topic, envelope(topic, lab.inbox("alice"), WRITE, session=alice, actor="sam")
        )
        reply = await a.reply()
        assert reply["error"]["code"] == "forbidden"
        assert "claims to act as 'sam'" in reply["error"]["message"]
        # Sam's session id with a MAC made with alice's secret (she does not have sam's).
        await a.publish(
            topic,
            envelope(topic, lab.inbox("sam"), WRITE, session=sam, secret=alice.secret),
        )
        await a.publish(topic, envelope(topic, lab.inbox("alice"), WRITE, session=alice))
        reply = await a.reply()
        assert reply["ok"] is True  # her own write, as herself
        others = await barrier(a, lab)
        assert others == []
    assert lab.setpoint_writes() == ["M140 S55.5"]
    assert [r.actor for r in lab.records("setpoint.write")] == ["alice"]
    refused = lab.refusals()
    assert [(r["actor"], r["claimed_actor"], r["why"]) for r in refused] == [
        ("alice", "sam", "claimed another actor"),
        ("anonymous", None, "bad mac"),
    ]


async def test_expired_revoked_and_unknown_sessions_are_refused(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    async with running_lab(mqtt_broker, site, tmp_path) as (lab, _), mallory(mqtt_broker, lab) as a:
        topic = f"{lab.root}/printer/cmd/write"
        expired = issue_session(lab.db, "alice", site=site, lifetime_s=-1.0)
        revoked = issue_session(lab.db, "alice", site=site)
        with SqliteDatabase(lab.db) as store:
            store.revoke_session(revoked.id, by="alice", reason="logout")
        made_up = type(revoked)(
            id="not-a-session",
            secret=b"x" * 32,
            user="alice",
            site=site,
            expires_at=time.time() + 60,
        )
        await a.client.subscribe(lab.inbox("anonymous", "m1"), qos=1)
        for session, inbox in (
            (expired, lab.inbox("alice")),
            (revoked, lab.inbox("alice")),
            (made_up, lab.inbox("anonymous", "m1")),  # unproven: no reply to alice's inbox
        ):
            await a.publish(topic, envelope(topic, inbox, WRITE, session=session))
            reply = await a.reply()
            assert reply["error"]["code"] == "unauthenticated", reply
        assert lab.setpoint_writes() == []
    assert [r["why"] for r in lab.refusals()] == ["session expired", "session revoked", "bad mac"]


async def test_authority_is_checked_per_action_against_roles(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    async with (
        running_lab(mqtt_broker, site, tmp_path) as (lab, _),
        mallory(mqtt_broker, lab, lab.inbox("victor"), lab.inbox("alice")) as a,
    ):
        victor, alice = lab.sessions["victor"], lab.sessions["alice"]
        read = f"{lab.root}/printer/cmd/read"
        await a.publish(
            read,
            envelope(read, lab.inbox("victor"), {"signal": "nozzle_temperature"}, session=victor),
        )
        assert (await a.reply())["ok"] is True  # a viewer reads
        for topic, args in (
            (f"{lab.root}/printer/cmd/write", WRITE),
            (f"{lab.root}/jobs/submit", {"printer": "printer", "gcode": "G28\n"}),
            (f"{lab.root}/printer/cmd/cancel", {}),
            (f"{lab.root}/daemon/cmd/ack_alarm", {"alarm_id": 1}),
        ):
            await a.publish(topic, envelope(topic, lab.inbox("victor"), args, session=victor))
            reply = await a.reply()
            assert reply["error"]["code"] == "forbidden", (topic, reply)
            assert "victor" in reply["error"]["message"]
        # An operator may not release a job or sign a record (supervisor capabilities).
        for name in ("release", "sign"):
            topic = f"{lab.root}/daemon/cmd/{name}"
            await a.publish(
                topic, envelope(topic, lab.inbox("alice"), {"job_id": 1}, session=alice)
            )
            reply = await a.reply()
            assert reply["error"]["code"] == "forbidden", reply
        # Anyone authenticated may stop the printer.
        estop = f"{lab.root}/printer/cmd/estop"
        await a.publish(
            estop, envelope(estop, lab.inbox("victor"), {"reason": "drill"}, session=victor)
        )
        assert (await a.reply())["ok"] is True
        assert lab.setpoint_writes() == []
    refused = lab.refusals()
    assert [r["code"] for r in refused] == ["forbidden"] * 6
    assert {r["actor"] for r in refused} == {"victor", "alice"}
    assert [r.actor for r in lab.records("device.estop")] == ["victor"]
    assert not lab.records("job.create")


async def test_a_captured_request_cannot_be_replayed(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    async with running_lab(mqtt_broker, site, tmp_path) as (lab, _), mallory(mqtt_broker, lab) as a:
        topic = f"{lab.root}/printer/cmd/write"
        captured = envelope(topic, lab.inbox("alice"), WRITE, session=lab.sessions["alice"])
        await a.publish(topic, captured)
        assert (await a.reply())["ok"] is True
        for _ in range(3):
            await a.publish(topic, captured)
        # Issued long ago (outside the replay window), and before the daemon started.
        old = envelope(
            topic, lab.inbox("alice"), WRITE, session=lab.sessions["alice"], t=time.time() - 600
        )
        await a.publish(topic, old)
        replies = [await a.reply() for _ in range(4)]
        # A copy is not run again: at most the first reply is sent again (at-least-once delivery).
        first_id = json.loads(captured)["id"]
        assert sorted((r["id"] == first_id, r["ok"]) for r in replies) == [
            (False, False),
            (True, True),
            (True, True),
            (True, True),
        ]
        stale = next(r for r in replies if not r["ok"])
        assert stale["error"]["code"] == "unauthenticated"
        assert "replay window" in stale["error"]["message"]
        await barrier(a, lab)
    assert lab.setpoint_writes() == ["M140 S55.5"]  # once
    assert [r["why"] for r in lab.refusals()] == ["replay", "replay", "replay", "stale"]


async def test_a_retained_request_is_never_executed_and_is_cleared(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    sessions = sessions_for(db, site)
    root = f"labdevices/{site}"
    topic = f"{root}/printer/cmd/write"
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim:
        assert sim.port is not None
        config = make_config(site, mqtt_broker.url, db, sim.port)
        lab = Lab(site, root, db, sim, sessions)
        async with Daemon(config) as daemon, mallory(mqtt_broker, lab) as a:
            await daemon.slots["printer"].wait_ready()
            # Published live with the retain flag: run once (it is fresh and signed) ...
            await a.publish(
                topic,
                envelope(topic, lab.inbox("alice"), WRITE, session=sessions["alice"]),
                retain=True,
            )
            assert (await a.reply())["ok"] is True
        assert lab.setpoint_writes() == ["M140 S55.5"]
        # ... and at the next start the broker hands it over again, retained: refused, cleared.
        async with Daemon(config) as daemon, mallory(mqtt_broker, lab) as a:
            await daemon.slots["printer"].wait_ready()
            await barrier(a, lab)
            await a.client.subscribe(topic, qos=1)
            others = await barrier(a, lab)
        assert [o["topic"] for o in others] == []  # nothing retained on the request topic any more
        assert lab.setpoint_writes() == ["M140 S55.5"]
    assert [r["why"] for r in lab.refusals()] == ["retained"]


async def test_replies_go_only_to_the_requesting_user_s_own_inbox(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    async with running_lab(mqtt_broker, site, tmp_path) as (lab, _):
        bob_inbox = lab.inbox("bob", "phone")
        async with mallory(mqtt_broker, lab, lab.inbox("alice"), f"{lab.root}/clients/bob/#") as a:
            topic = f"{lab.root}/printer/cmd/read"
            args = {"signal": "nozzle_temperature"}
            await a.publish(topic, envelope(topic, bob_inbox, args, session=lab.sessions["alice"]))
            # A login whose reply (a session secret) would go to someone else's inbox.
            login = f"{lab.root}/daemon/cmd/login"
            await a.publish(
                login,
                envelope(login, bob_inbox, {"user": "alice", "password": "x" * 12}, t=time.time()),
            )
            assert await barrier(a, lab) == []  # not a byte into bob's inbox
    assert sorted((r["actor"], r["why"]) for r in lab.refusals()) == [
        ("alice", "reply_to of another"),
        ("anonymous", "reply_to of another"),
    ]


async def test_a_session_written_into_the_database_file_is_useless_without_the_key(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    """Someone who can write the store file adds a session for sam: without the daemon's key
    (outside the database) they cannot make the MAC its requests need."""
    async with running_lab(mqtt_broker, site, tmp_path) as (lab, _):
        forged = type(lab.sessions["sam"])(
            id="inserted-by-hand",
            secret=bytes(32),
            user="sam",
            site=site,
            expires_at=time.time() + 3600,
        )
        with SqliteDatabase(lab.db) as store, store._tx(durable=True) as db:
            db.execute(
                "INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (forged.id, "sam", time.time(), forged.expires_at),
            )
        async with mallory(mqtt_broker, lab, lab.inbox("anonymous", "m1")) as a:
            topic = f"{lab.root}/printer/cmd/write"
            await a.publish(
                topic, envelope(topic, lab.inbox("anonymous", "m1"), WRITE, session=forged)
            )
            reply = await a.reply()
            assert reply["error"]["code"] == "unauthenticated"
        assert lab.setpoint_writes() == []
    assert [r["why"] for r in lab.refusals()] == ["bad mac"]

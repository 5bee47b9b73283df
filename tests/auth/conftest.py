"""Fixtures of the attack tests: the real daemon on a real Mosquitto, users with sessions, and a
raw aiomqtt client that crafts whatever it likes (it is not ``LabClient``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from labdevices.auth import request_mac
from labdevices.client import Session
from labdevices.daemon import (
    BusConfig,
    DaemonConfig,
    DeviceConfig,
    LoadedConfig,
    StoreConfig,
    check_config,
)
from labdevices.sim.printer import SimulatedPrinter
from labdevices.store import AuditRecord, SqliteDatabase
from labdevices.testing._auth import issue_session

__all__ = ["USERS", "Attacker", "Lab", "attacker", "envelope", "make_config", "sessions_for"]


def make_config(site: str, url: str | None, db: Path, printer: str, **extra: Any) -> LoadedConfig:
    config = DaemonConfig(
        site=site,
        devices={
            "printer": DeviceConfig(
                profile="marlin-pneumatic", address=printer, poll_interval_s=0.2
            )
        },
        bus=BusConfig(url=url, client_id=f"daemon-{site}", **extra),
        store=StoreConfig(path=db, flush_interval_s=0.1),
        device_retry_min_s=0.05,
        device_retry_max_s=0.5,
    )
    return check_config(config, "test-config")


def envelope(
    topic: str,
    reply_to: str,
    args: dict[str, Any] | None = None,
    *,
    session: Session | None = None,
    secret: bytes | None = None,
    request_id: str | None = None,
    t: float | None = None,
    **fields: Any,
) -> bytes:
    """A request payload as a client would craft it, MAC'd with ``secret`` (default: the
    session's own) when a session is given."""
    body: dict[str, Any] = {
        "id": request_id or uuid.uuid4().hex,
        "reply_to": reply_to,
        "args": args or {},
        "deadline": time.time() + 30,
        **fields,
    }
    if session is None and t is not None:
        body["t"] = t
    if session is not None:
        body["session"] = session.id
        body["t"] = time.time() if t is None else t
        body["mac"] = request_mac(secret or session.secret, topic, body)
    return json.dumps(body).encode()


@dataclass
class Attacker:
    """A raw MQTT client: publishes crafted payloads, reads replies on the topics it subscribed."""

    client: aiomqtt.Client
    root: str
    received: list[aiomqtt.Message] = field(default_factory=list)

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        await self.client.publish(topic, payload, qos=1, retain=retain)

    async def next_message(self, timeout: float = 15.0) -> aiomqtt.Message:
        async with aiomqtt_timeout(timeout):
            return await anext(self.client.messages)

    async def reply(self, timeout: float = 15.0) -> dict[str, Any]:
        message = await self.next_message(timeout)
        assert isinstance(message.payload, bytes)
        return dict(json.loads(message.payload))


@contextlib.asynccontextmanager
async def aiomqtt_timeout(seconds: float) -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        pytest.fail(f"no message within {seconds} s")


@contextlib.asynccontextmanager
async def attacker(
    host: str, port: int, root: str, *, username: str | None = None, password: str | None = None
) -> AsyncIterator[Attacker]:
    async with aiomqtt.Client(
        host,
        port,
        identifier=f"mallory-{uuid.uuid4().hex[:8]}",
        username=username,
        password=password,
    ) as client:
        yield Attacker(client, root)


@dataclass
class Lab:
    """A running daemon with one simulated printer, its store and sessions of its users."""

    site: str
    root: str
    db: Path
    sim: SimulatedPrinter
    sessions: dict[str, Session]

    def inbox(self, user: str, client: str = "c1") -> str:
        return f"{self.root}/clients/{user}/{client}/reply"

    def records(self, action: str | None = None) -> list[AuditRecord]:
        with SqliteDatabase(self.db, readonly=True) as store:
            records = store.audit_records()
        return [r for r in records if action is None or r.action == action]

    def refusals(self) -> list[dict[str, Any]]:
        return [
            {"actor": r.actor, "reason": r.reason, **json.loads(r.new or "{}")}
            for r in self.records("request.refused")
        ]

    def setpoint_writes(self) -> list[str]:
        return [c for c in self.sim.executed if c.startswith("M140")]


USERS = {
    "alice": ("operator",),
    "bob": ("operator",),
    "victor": ("viewer",),
    "sam": ("supervisor",),
}


def sessions_for(db: Path, site: str) -> dict[str, Session]:
    return {user: issue_session(db, user, site=site, roles=roles) for user, roles in USERS.items()}


@pytest.fixture
def site() -> str:
    """A site per test, so retained messages of other tests stay out of its topics."""
    return f"lab-{uuid.uuid4().hex[:8]}"

"""Logging in over the bus: sessions, lock-out with its alarm, logout and deactivation revoking
sessions at once, and secrets kept out of logs, the audit trail and clear-text links."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from labdevices.client import LabClient, Session
from labdevices.daemon import Daemon, redact_url
from labdevices.errors import ConfigurationError, Unauthenticated
from labdevices.sim.printer import SimPrinterConfig, SimulatedPrinter
from labdevices.store import SqliteDatabase
from labdevices.testing._auth import TEST_PASSWORD, add_test_user, issue_session
from labdevices.testing._mqtt import MosquittoBroker

from .conftest import make_config


@contextlib.asynccontextmanager
async def running(broker: MosquittoBroker, site: str, db: Path) -> AsyncIterator[Daemon]:
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim:
        assert sim.port is not None
        async with Daemon(make_config(site, broker.url, db, sim.port)) as daemon:
            await daemon.slots["printer"].wait_ready()
            yield daemon


async def test_login_whoami_logout_and_a_session_after_logout(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "lab.db"
    add_test_user(db, "alice", ["operator"], password=TEST_PASSWORD, full_name="Alice Smith")
    async with running(mqtt_broker, site, db):
        async with LabClient(
            mqtt_broker.url, site=site, user="alice", password=TEST_PASSWORD
        ) as lab:
            assert lab.session is not None
            assert lab.session.roles == ("operator",)
            assert await lab.whoami() == {
                "user": "alice",
                "full_name": "Alice Smith",
                "roles": ["operator"],
                "expires_at": lab.session.expires_at,
            }
            session = lab.session
            await lab.logout()
        # The same session, after logout: refused.
        async with LabClient(mqtt_broker.url, site=site, session=session) as lab:
            with pytest.raises(Unauthenticated, match="revoked"):
                await lab.read("printer", "nozzle_temperature")
    with SqliteDatabase(db, readonly=True) as store:
        records = store.audit_records()
    actions = [(r.actor, r.action) for r in records if r.action.startswith("session.")]
    assert actions == [("alice", "session.create"), ("alice", "session.revoke")]
    everything = "\n".join(str(r) for r in records) + caplog.text
    assert TEST_PASSWORD not in everything
    assert session.secret.hex() not in everything


async def test_lockout_after_five_failures_raises_an_alarm_and_is_audited(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    add_test_user(db, "alice", ["operator"], password=TEST_PASSWORD)
    watcher = issue_session(db, "victor", site=site, roles=["viewer"])
    async with (
        running(mqtt_broker, site, db),
        LabClient(mqtt_broker.url, site=site, session=watcher) as observer,
        observer.alarm_events() as alarms,
    ):
        for attempt in range(1, 6):
            with pytest.raises(Unauthenticated) as refused:
                async with LabClient(
                    mqtt_broker.url, site=site, user="alice", password=f"guess number {attempt}"
                ):
                    pass
            if attempt < 5:
                assert "wrong user name or password" in str(refused.value)
            else:
                assert "locked after 5 failed attempts" in str(refused.value)
        alarm = await anext(alarms)
        assert (alarm.device, alarm.name, alarm.event) == ("auth", "account_locked", "raised")
        assert "alice" in (alarm.reason or "")
        # Locked: the right password is refused too.
        with pytest.raises(Unauthenticated, match="locked"):
            async with LabClient(mqtt_broker.url, site=site, user="alice", password=TEST_PASSWORD):
                pass
    with SqliteDatabase(db, readonly=True) as store:
        records = store.audit_records(object="user/alice")
        assert store.verify().ok
    assert [r.action for r in records] == [
        "user.add",
        *["user.login_failed"] * 4,
        "user.lock",
        "user.login_failed",
    ]
    assert all("guess number" not in (r.new or "") for r in records)


async def test_deactivating_a_user_revokes_their_live_session(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    session = issue_session(db, "bob", site=site)
    async with (
        running(mqtt_broker, site, db),
        LabClient(mqtt_broker.url, site=site, session=session) as lab,
    ):
        await lab.read("printer", "nozzle_temperature")
        with SqliteDatabase(db) as store:
            store.deactivate_user("bob", by="admin", reason="left the lab")
        with pytest.raises(Unauthenticated, match="revoked"):
            await lab.read("printer", "nozzle_temperature")


def test_passwords_never_cross_a_network_in_clear() -> None:
    with pytest.raises(ConfigurationError, match=r"use mqtts://10\.1\.2\.3"):
        LabClient("mqtt://10.1.2.3:1883", site="lab", user="alice", password=TEST_PASSWORD)
    with pytest.raises(ConfigurationError, match="in clear"):
        LabClient("mqtt://bob:hunter2hunter2@lab-broker.example:1883", site="lab")
    # TLS, or this machine: accepted (nothing is sent until entering).
    tls = LabClient("mqtts://lab-broker.example", site="lab", user="alice", password="x" * 12)
    assert tls.bus.broker.endswith(":8883")
    assert tls.bus._tls_context is not None
    LabClient("mqtt://127.0.0.1:1883", site="lab", user="alice", password="x" * 12)


def test_broker_passwords_are_redacted_from_urls() -> None:
    assert redact_url("mqtt://daemon:s3cret@broker:1883") == "mqtt://daemon:***@broker:1883"
    assert redact_url("mqtts://broker") == "mqtts://broker"


def test_a_session_file_is_private_and_holds_no_password(
    tmp_path: Path, lab_session: Callable[..., Session]
) -> None:
    session = lab_session("alice", site="lab")
    path = session.save(tmp_path / "sessions" / "lab.json")
    assert path.stat().st_mode & 0o777 == 0o600
    assert Session.load(path) == session
    assert session.secret.hex() not in repr(session)
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="readable by others"):
        Session.load(path)
    with pytest.raises(ConfigurationError, match="for site 'lab'"):
        LabClient(site="other", session=session)


async def test_a_session_revoked_from_another_process_is_refused_at_the_next_request(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    # ``devices`` writes nothing, so the daemon answers it from its session cache: the cache
    # must see a revocation committed by another connection (the CLI on the store file).
    db = tmp_path / "lab.db"
    session = issue_session(db, "bob", site=site)
    async with (
        running(mqtt_broker, site, db),
        LabClient(mqtt_broker.url, site=site, session=session) as lab,
    ):
        await lab.devices()
        await lab.devices()
        with SqliteDatabase(db) as store:
            store.revoke_session(session.id, by="admin", reason="lost laptop")
        with pytest.raises(Unauthenticated, match="revoked"):
            await lab.devices()

"""Users, passwords, lock-out, ageing and sessions in the store (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from labdevices.errors import BadRequest, Unauthenticated
from labdevices.store import (
    ARGON2_PARAMETERS,
    AccountLocked,
    AuthPolicy,
    PasswordRejected,
    SqliteDatabase,
    mosquitto_hash,
    mosquitto_verify,
    open_database,
    open_store,
)

from ._tamper import RAW_ERRORS

PW = "correct horse battery"


@pytest.fixture
def db(db_path: str | Path) -> Iterator[SqliteDatabase]:
    with open_database(db_path) as database:
        database.add_user(
            "admin", "Ada Admin", ["admin"], by="system-setup", reason="first admin", password=PW
        )
        yield database


def actions(db: SqliteDatabase, obj: str) -> list[str]:
    return [r.action for r in db.audit_records(object=obj)]


def test_add_user_is_audited_with_who_and_why_and_ids_are_never_reused(db: SqliteDatabase) -> None:
    user = db.add_user(
        "alice", "Alice Operator", ["operator"], by="admin", reason="new hire", password=PW
    )
    assert (user.id, user.full_name, user.roles, user.active) == (
        "alice",
        "Alice Operator",
        ("operator",),
        True,
    )
    rec = db.audit_records(object="user/alice")[-1]
    assert (rec.actor, rec.action, rec.reason) == ("admin", "user.add", "new hire")
    assert rec.row_sha256 is not None
    assert "argon2" not in (rec.new or "")  # no password material in the trail
    db.deactivate_user("alice", by="admin", reason="left the lab")
    with pytest.raises(BadRequest, match="never reused"):
        db.add_user("alice", "Alice Again", ["viewer"], by="admin", reason="rehire")
    with pytest.raises(RAW_ERRORS, match="deactivated, never deleted"):
        db._db.execute("DELETE FROM users WHERE id = 'alice'")


@pytest.mark.parametrize(
    "bad", ["Alice", "a", "al/ice", "al+ice", "al#", "daemon", "anonymous", ""]
)
def test_user_ids_must_be_safe_topic_levels_and_not_reserved(db: SqliteDatabase, bad: str) -> None:
    with pytest.raises(BadRequest, match="user id"):
        db.add_user(bad, "X Y", ["viewer"], by="admin", reason="r")


def test_roles_are_checked_and_changes_audited(db: SqliteDatabase) -> None:
    with pytest.raises(BadRequest, match="unknown role"):
        db.add_user("bob", "Bob", ["wizard"], by="admin", reason="r")
    db.add_user("bob", "Bob", ["viewer"], by="admin", reason="r")
    with pytest.raises(BadRequest, match="reason"):
        db.set_roles("bob", ["operator"], by="admin", reason="")
    user = db.set_roles("bob", ["operator", "supervisor"], by="admin", reason="promoted")
    assert user.roles == ("operator", "supervisor")
    rec = db.audit_records(object="user/bob")[-1]
    assert rec.action == "user.roles"
    assert json.loads(rec.old or "") == {"roles": ["viewer"]}


def test_password_is_argon2id_with_the_documented_parameters(db: SqliteDatabase) -> None:
    stored = db._db.execute("SELECT password_hash FROM users WHERE id = 'admin'").fetchone()[0]
    p = ARGON2_PARAMETERS
    assert stored.startswith(
        f"$argon2id$v=19$m={p['memory_cost_kib']},t={p['time_cost']},p={p['parallelism']}$"
    )
    assert PW not in stored
    assert db.check_password("admin", PW).id == "admin"


def test_weaker_hash_parameters_are_raised_at_login(db: SqliteDatabase) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PW)
    db._db.execute("UPDATE users SET password_hash = ? WHERE id = 'admin'", (weak,))
    db.check_password("admin", PW)
    stored = db._db.execute("SELECT password_hash FROM users WHERE id = 'admin'").fetchone()[0]
    assert "m=65536,t=3,p=4" in stored
    assert actions(db, "user/admin")[-1] == "user.login_ok"


@pytest.mark.parametrize(
    ("password", "why"),
    [("short", "at least 12"), ("xx-admin-password-xx", "user id"), ("x" * 2000, "too long")],
)
def test_password_policy(db: SqliteDatabase, password: str, why: str) -> None:
    before = db._db.execute("SELECT password_hash FROM users WHERE id = 'admin'").fetchone()[0]
    with pytest.raises(PasswordRejected, match=why):
        db.set_password("admin", password, by="admin", reason="change")
    after = db._db.execute("SELECT password_hash FROM users WHERE id = 'admin'").fetchone()[0]
    assert after == before


def test_the_last_five_passwords_cannot_be_reused(db: SqliteDatabase) -> None:
    passwords = [f"password number {i:02d}" for i in range(6)]
    db.set_password("admin", passwords[0], by="admin", reason="rotate")
    for new in passwords[1:5]:
        db.set_password("admin", new, by="admin", reason="rotate")
    for old in [PW, *passwords[1:5]]:
        if old == PW:
            continue  # six changes ago: out of the history
        with pytest.raises(PasswordRejected, match="last 5"):
            db.set_password("admin", old, by="admin", reason="rotate")
    db.set_password("admin", PW, by="admin", reason="old enough")  # 6 back: allowed
    assert db.check_password("admin", PW).id == "admin"


def test_wrong_unknown_and_deactivated_are_refused_alike_and_audited(db: SqliteDatabase) -> None:
    db.add_user("carol", "Carol", ["viewer"], by="admin", reason="r", password=PW)
    with pytest.raises(Unauthenticated, match="wrong user name or password"):
        db.check_password("carol", "not the password")
    with pytest.raises(Unauthenticated, match="wrong user name or password"):
        db.check_password("nobody", PW)
    db.deactivate_user("carol", by="admin", reason="left")
    with pytest.raises(Unauthenticated, match="wrong user name or password"):
        db.check_password("carol", PW)
    assert actions(db, "user/nobody") == ["user.login_failed"]
    assert actions(db, "user/carol").count("user.login_failed") == 2


def test_lockout_after_n_failures_raises_an_alarm_and_refuses_even_the_right_password(
    db_path: str | Path,
) -> None:
    policy = AuthPolicy(lockout_threshold=3, lockout_minutes=10)
    with open_database(db_path, auth_policy=policy) as db:
        db.add_user("dave", "Dave", ["operator"], by="admin", reason="r", password=PW)
        for _ in range(2):
            with pytest.raises(Unauthenticated):
                db.check_password("dave", "wrong password!!")
        with pytest.raises(AccountLocked) as locked:
            db.check_password("dave", "wrong password!!")
        alarm = locked.value.alarm
        assert alarm is not None
        assert (alarm.device, alarm.name) == ("auth", "account_locked")
        assert db.list_alarms(active_only=True)[0].id == alarm.id
        assert "user.lock" in actions(db, "user/dave")
        with pytest.raises(AccountLocked, match="locked"):
            db.check_password("dave", PW)
        user = db.get_user("dave")
        assert user.locked_until is not None
        assert user.locked_until > time.time() + 9 * 60
        # an admin's reset unlocks
        db.set_password("dave", "a brand new password", by="admin", reason="unlock")
        assert db.check_password("dave", "a brand new password").failed_logins == 0
        assert db.verify().ok


def test_success_resets_the_failure_count(db: SqliteDatabase) -> None:
    with pytest.raises(Unauthenticated):
        db.check_password("admin", "wrong password!!")
    assert db.get_user("admin").failed_logins == 1
    assert db.check_password("admin", PW).failed_logins == 0


def test_passwords_age_but_service_accounts_do_not(db_path: str | Path) -> None:
    policy = AuthPolicy(max_age_days=90)
    with open_database(db_path, auth_policy=policy) as db:
        db.add_user("erin", "Erin", ["operator"], by="admin", reason="r", password=PW)
        db.add_user(
            "ci-bot", "CI pipeline", ["operator"], by="admin", reason="r", password=PW, service=True
        )
        long_ago = time.time() - 91 * 86400
        db._db.execute("UPDATE users SET password_set_at = ?", (long_ago,))
        with pytest.raises(Unauthenticated, match="expired"):
            db.check_password("erin", PW)
        assert db.check_password("ci-bot", PW).id == "ci-bot"
        # the user may still change an expired password, proving the old one
        db.change_password("erin", PW, "a fresh password 1")
        assert db.check_password("erin", "a fresh password 1").id == "erin"


def test_sessions_expire_and_are_revoked_by_logout_deactivation_and_reset(
    db: SqliteDatabase,
) -> None:
    db.add_user("frank", "Frank", ["operator"], by="admin", reason="r", password=PW)
    _, session = db.login("frank", PW)
    assert session.user_id == "frank"
    assert session.roles == ("operator",)
    assert session.expires_at == pytest.approx(time.time() + 8 * 3600, abs=5)
    got = db.get_session(session.id)
    assert got is not None
    assert got.valid_at(time.time())
    assert not got.valid_at(session.expires_at + 1)
    db.revoke_session(session.id, by="frank", reason="logout")
    got = db.get_session(session.id)
    assert got is not None
    assert not got.valid_at(time.time())

    _, s2 = db.login("frank", PW)
    db.set_password("frank", "another password", by="admin", reason="reset")
    got = db.get_session(s2.id)
    assert got is not None
    assert got.revoked_at is not None

    _, s3 = db.login("frank", "another password")
    db.deactivate_user("frank", by="admin", reason="left")
    got = db.get_session(s3.id)
    assert got is not None
    assert not got.valid_at(time.time())
    assert db.get_session("no-such-session") is None
    assert db.verify().ok


def test_the_database_holds_no_session_secret(db: SqliteDatabase) -> None:
    _, session = db.login("admin", PW)
    if db.dialect.name == "postgresql":
        cols = [
            r[0]
            for r in db._db.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'sessions'"
                " AND table_schema = current_schema() ORDER BY ordinal_position"
            )
        ]
    else:
        cols = [r[1] for r in db._db.execute("PRAGMA table_info(sessions)")]
    assert cols == ["id", "user_id", "created_at", "expires_at", "revoked_at"]
    assert session.id


def test_mosquitto_hash_is_accepted_by_mosquitto_passwd_format(tmp_path: Path) -> None:
    stored = mosquitto_hash(PW)
    assert stored.startswith("$7$210000$")
    assert mosquitto_verify(stored, PW)
    assert not mosquitto_verify(stored, PW + "x")
    # and a hash written by mosquitto_passwd itself verifies here
    pwfile = tmp_path / "passwd"
    try:
        subprocess.run(["mosquitto_passwd", "-c", "-b", str(pwfile), "alice", PW], check=True)
    except FileNotFoundError:
        pytest.skip("mosquitto_passwd is not installed")
    theirs = pwfile.read_text().strip().split(":", 1)[1]
    assert mosquitto_verify(theirs, PW)


async def test_async_store_wraps_the_identity_api(db_path: str | Path) -> None:
    async with open_store(db_path) as store:
        await store.add_user(
            "gina", "Gina", ["supervisor"], by="system-setup", reason="r", password=PW
        )
        user = await store.check_password("gina", PW)
        assert user.roles == ("supervisor",)
        with pytest.raises(Unauthenticated):
            await store.check_password("gina", "nope nope nope")
        session = await store.create_session("gina")
        got = await store.get_session(session.id)
        assert got is not None
        assert got.user_id == "gina"


def test_documented_parameters_are_the_hasher_s() -> None:
    from labdevices.store._identity import _HASHER

    p = ARGON2_PARAMETERS
    assert (_HASHER.time_cost, _HASHER.memory_cost, _HASHER.parallelism) == (
        p["time_cost"],
        p["memory_cost_kib"],
        p["parallelism"],
    )
    assert (_HASHER.hash_len, _HASHER.salt_len, _HASHER.type.name) == (32, 16, "ID")

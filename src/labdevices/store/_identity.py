"""Users, passwords and login sessions in the store (21 CFR 11.10(d), 11.100, 11.300).

User ids are unique and never reused: a user is deactivated, never deleted. Passwords
are hashed with Argon2id (argon2-cffi, parameters recorded in each hash and raised on
login when they change) under a policy (length, not the user id, not one of the last
few), expire after a maximum age (service accounts excepted), and an account is locked
for a while after too many failed attempts — each failure, lock and change audited.
A login session is a random id with an expiry; its secret is derived from the daemon's
key by the daemon and never stored here, so this file alone cannot act as anyone.

``IdentityMethods`` is mixed into ``SqliteDatabase``; the async ``SqliteStore`` wraps it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from argon2 import PasswordHasher
from argon2 import exceptions as argon2_errors

from ..auth._roles import validate_roles
from ..errors import BadRequest, Unauthenticated
from ._dialect import Connection
from ._errors import StoreError
from ._mixin import DatabaseMixin
from ._models import AlarmRecord
from ._rows import object_of

__all__ = [
    "ARGON2_PARAMETERS",
    "RESERVED_USER_IDS",
    "AccountLocked",
    "AuthPolicy",
    "IdentityMethods",
    "PasswordRejected",
    "SessionRecord",
    "UserRecord",
    "mosquitto_hash",
    "mosquitto_verify",
    "validate_user_id",
    "verify_password",
]

#: Argon2id as argon2-cffi's default (RFC 9106 "second recommended" profile): 3 passes over
#: 64 MiB with 4 lanes, 16-byte salt, 32-byte tag. Recorded in every hash (``$argon2id$v=19$
#: m=65536,t=3,p=4$...``); a login with a hash made under other parameters re-hashes it.
ARGON2_PARAMETERS: dict[str, str | int] = {
    "type": "argon2id",
    "time_cost": 3,
    "memory_cost_kib": 65536,
    "parallelism": 4,
    "hash_len": 32,
    "salt_len": 16,
}
_HASHER = PasswordHasher(
    time_cost=3, memory_cost=65536, parallelism=4, hash_len=32, salt_len=16
)  # = ARGON2_PARAMETERS (a test holds them equal)
# Verified against when the user does not exist, so a wrong user name costs what a wrong
# password costs and the time of a refusal does not tell which one it was.
_DUMMY_HASH = _HASHER.hash("labdevices: no such user")

#: Mosquitto's password-file format ``$7$``: PBKDF2-HMAC-SHA512, 12-byte salt, 64-byte key
MOSQUITTO_ITERATIONS = 210_000

#: ids that name the system itself in the audit trail, never a person
RESERVED_USER_IDS = frozenset({"daemon", "anonymous", "system", "root", "labdevices-daemon"})
# Safe as an MQTT topic level and a Mosquitto user name: no '/', '+', '#', ':' or spaces.
_USER_ID = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
_MAX_PASSWORD = 1024


class PasswordRejected(BadRequest):
    """A new password does not meet the policy; nothing was changed."""


class AccountLocked(Unauthenticated):
    """Too many failed attempts: the account is locked until ``locked_until``.

    ``alarm`` is the alarm raised when this attempt locked it (None if it already was).
    """

    def __init__(
        self, message: str, *, locked_until: float, alarm: AlarmRecord | None = None
    ) -> None:
        self.locked_until = locked_until
        self.alarm = alarm
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class AuthPolicy:
    """The password, lock-out and session policy (config ``[auth]``)."""

    min_length: int = 12
    #: a new password may not equal any of this many previous ones
    history: int = 5
    #: days a password stays valid; 0 = never expires. Service accounts are exempt.
    max_age_days: float = 90.0
    #: consecutive failed attempts that lock an account
    lockout_threshold: int = 5
    lockout_minutes: float = 15.0
    session_hours: float = 8.0


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user as stored (without any password material)."""

    id: str
    full_name: str
    roles: tuple[str, ...]
    active: bool
    service: bool
    has_password: bool
    password_set_at: float | None
    failed_logins: int
    locked_until: float | None
    created_at: float
    deactivated_at: float | None

    def password_expires_at(self, policy: AuthPolicy) -> float | None:
        """When the current password expires (None: never, or no password)."""
        if self.service or policy.max_age_days <= 0 or self.password_set_at is None:
            return None
        return self.password_set_at + policy.max_age_days * 86400.0


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A login session; its secret is derived by the daemon, never stored."""

    id: str
    user_id: str
    created_at: float
    expires_at: float
    revoked_at: float | None = None
    roles: tuple[str, ...] = field(default=())

    def valid_at(self, t: float) -> bool:
        return self.revoked_at is None and t < self.expires_at


def validate_user_id(user_id: str) -> str:
    if not isinstance(user_id, str) or not _USER_ID.match(user_id):
        raise BadRequest(
            f"user id {user_id!r} is not valid: 2-64 characters, lower-case letters, digits, "
            "'.', '_' or '-', starting with a letter"
        )
    if user_id in RESERVED_USER_IDS:
        raise BadRequest(f"user id {user_id!r} is reserved for the system")
    return user_id


def mosquitto_hash(password: str, *, iterations: int = MOSQUITTO_ITERATIONS) -> str:
    """The password in Mosquitto's ``$7$`` password-file format (as ``mosquitto_passwd`` writes)."""
    salt = secrets.token_bytes(12)
    key = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def mosquitto_verify(stored: str, password: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash (the embedded broker checks with this)."""
    try:
        _, kind, iterations, salt, key = stored.split("$")
        if kind != "7":
            return False
        got = hashlib.pbkdf2_hmac(
            "sha512", password.encode("utf-8"), base64.b64decode(salt), int(iterations)
        )
        return hmac.compare_digest(got, base64.b64decode(key))
    except (ValueError, TypeError):
        return False


_USER_COLUMNS = (
    "id, full_name, roles, active, service, password_hash IS NOT NULL, password_set_at,"
    " failed_logins, locked_until, created_at, deactivated_at"
)


def _user(row: Sequence[Any]) -> UserRecord:
    return UserRecord(
        id=row[0],
        full_name=row[1],
        roles=tuple(json.loads(row[2])),
        active=bool(row[3]),
        service=bool(row[4]),
        has_password=bool(row[5]),
        password_set_at=row[6],
        failed_logins=int(row[7]),
        locked_until=row[8],
        created_at=row[9],
        deactivated_at=row[10],
    )


def _require_reason(reason: str | None) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise BadRequest("a reason is required for every change to a user")
    return reason


class IdentityMethods(DatabaseMixin):
    """Users, passwords and sessions: methods of ``SqliteDatabase``."""

    auth_policy: AuthPolicy

    # -- users -----------------------------------------------------------------

    def add_user(
        self,
        user_id: str,
        full_name: str,
        roles: Iterable[str],
        *,
        by: str,
        reason: str,
        password: str | None = None,
        service: bool = False,
    ) -> UserRecord:
        """Register a new user (audited ``user.add`` by ``by``); ids are never reused.

        ``service`` marks an account for scripts: its password does not age (document
        who holds it). ``password`` (optional) must meet the policy.
        """
        validate_user_id(user_id)
        if not full_name or not full_name.strip():
            raise BadRequest(
                f"user {user_id!r}: a full name is required (it is printed on signatures)"
            )
        try:
            role_list = validate_roles(roles)
        except ValueError as exc:
            raise BadRequest(f"user {user_id!r}: {exc}") from None
        _require_reason(reason)
        hashes = None if password is None else self._new_hashes(user_id, password, [])
        now = time.time()
        with self._tx(durable=True) as db:
            if db.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone():
                raise BadRequest(f"user id {user_id!r} exists (user ids are never reused)")
            db.execute(
                "INSERT INTO users (id, full_name, roles, service, password_hash, password_set_at,"
                " broker_hash, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    user_id,
                    full_name.strip(),
                    json.dumps(list(role_list)),
                    int(service),
                    None if hashes is None else hashes[0],
                    None if hashes is None else now,
                    None if hashes is None else hashes[1],
                    now,
                ),
            )
            self._append_audit(
                db,
                t=now,
                actor=by,
                action="user.add",
                object=object_of("users", user_id),
                old=None,
                new={
                    "full_name": full_name.strip(),
                    "roles": list(role_list),
                    "service": service,
                    "password": hashes is not None,
                },
                reason=reason,
                row=("users", user_id),
            )
            return self._get_user(db, user_id)

    def get_user(self, user_id: str) -> UserRecord:
        """A user; ``StoreError`` naming the id if there is none."""
        with self._errors():
            return self._get_user(self._db, user_id)

    def find_user(self, user_id: str) -> UserRecord | None:
        with self._errors():
            row = self._db.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,)
            ).fetchone()
        return None if row is None else _user(row)

    def list_users(self, *, include_inactive: bool = True) -> list[UserRecord]:
        where = "" if include_inactive else "WHERE active = 1"
        with self._errors():
            return [
                _user(r)
                for r in self._db.execute(f"SELECT {_USER_COLUMNS} FROM users {where} ORDER BY id")
            ]

    def broker_credentials(self) -> list[tuple[str, str]]:
        """(user id, Mosquitto ``$7$`` hash) of every active user with a password."""
        with self._errors():
            return [
                (r[0], r[1])
                for r in self._db.execute(
                    "SELECT id, broker_hash FROM users WHERE active = 1 AND broker_hash IS NOT NULL"
                    " ORDER BY id"
                )
            ]

    def deactivate_user(self, user_id: str, *, by: str, reason: str) -> UserRecord:
        """Deactivate a user for good (``user.deactivate``): no more logins; sessions revoked."""
        _require_reason(reason)
        now = time.time()
        with self._tx(durable=True) as db:
            user = self._get_user(db, user_id)
            if not user.active:
                raise BadRequest(f"user {user_id!r} is already deactivated")
            db.execute(
                "UPDATE users SET active = 0, deactivated_at = ? WHERE id = ?", (now, user_id)
            )
            self._append_audit(
                db,
                t=now,
                actor=by,
                action="user.deactivate",
                object=object_of("users", user_id),
                old={"active": True},
                new={"active": False},
                reason=reason,
                row=("users", user_id),
            )
            self._revoke_user_sessions(db, user_id, now, by=by, reason="user deactivated")
            return self._get_user(db, user_id)

    def set_roles(self, user_id: str, roles: Iterable[str], *, by: str, reason: str) -> UserRecord:
        """Replace a user's roles (``user.roles``, old and new roles recorded)."""
        try:
            role_list = validate_roles(roles)
        except ValueError as exc:
            raise BadRequest(f"user {user_id!r}: {exc}") from None
        _require_reason(reason)
        now = time.time()
        with self._tx(durable=True) as db:
            user = self._get_user(db, user_id)
            if not user.active:
                raise BadRequest(f"user {user_id!r} is deactivated")
            db.execute(
                "UPDATE users SET roles = ? WHERE id = ?", (json.dumps(list(role_list)), user_id)
            )
            self._append_audit(
                db,
                t=now,
                actor=by,
                action="user.roles",
                object=object_of("users", user_id),
                old={"roles": list(user.roles)},
                new={"roles": list(role_list)},
                reason=reason,
                row=("users", user_id),
            )
            return self._get_user(db, user_id)

    def set_password(self, user_id: str, password: str, *, by: str, reason: str) -> UserRecord:
        """Set (or, by an admin, reset) a password: policy checked, history kept, lock-out
        cleared, every session of the user revoked; audited ``user.password`` (no hash in it)."""
        _require_reason(reason)
        with self._errors():
            row = self._db.execute(
                "SELECT password_hash, password_history FROM users WHERE id = ?", (user_id,)
            ).fetchone()
        if row is None:
            raise StoreError(f"no user {user_id!r}", file=self.label)
        previous = [h for h in [row[0], *json.loads(row[1])] if h]
        password_hash, broker_hash = self._new_hashes(user_id, password, previous)
        history = previous[: max(self.auth_policy.history - 1, 0)]
        now = time.time()
        with self._tx(durable=True) as db:
            user = self._get_user(db, user_id)
            if not user.active:
                raise BadRequest(f"user {user_id!r} is deactivated")
            db.execute(
                "UPDATE users SET password_hash = ?, broker_hash = ?, password_set_at = ?,"
                " password_history = ?, failed_logins = 0, locked_until = NULL WHERE id = ?",
                (password_hash, broker_hash, now, json.dumps(history), user_id),
            )
            self._append_audit(
                db,
                t=now,
                actor=by,
                action="user.password",
                object=object_of("users", user_id),
                old=None,
                new={"reset_by_other": by != user_id},
                reason=reason,
                row=("users", user_id),
            )
            self._revoke_user_sessions(db, user_id, now, by=by, reason="password changed")
            return self._get_user(db, user_id)

    def change_password(self, user_id: str, old_password: str, new_password: str) -> UserRecord:
        """A user changes their own password, proving the old one (accepted even if expired)."""
        self._check(user_id, old_password, allow_expired=True)
        return self.set_password(user_id, new_password, by=user_id, reason="changed by the user")

    def check_password(self, user_id: str, password: str) -> UserRecord:
        """The user, if ``password`` is theirs and they may log in now; else ``Unauthenticated``.

        Unknown user, wrong password, deactivated, locked and expired all refuse. Every
        failure is audited (``user.login_failed``) and, for a known user, counted: the
        ``lockout_threshold``-th consecutive failure locks the account (``user.lock``)
        and raises an alarm (``AccountLocked.alarm``). Electronic signatures
        re-authenticate with exactly this call.
        """
        return self._check(user_id, password, allow_expired=False)

    def _check(self, user_id: str, password: str, *, allow_expired: bool) -> UserRecord:
        stored = self.password_hash(user_id)
        ok = verify_password(stored, password)
        return self.record_check(user_id, password, stored, ok, allow_expired=allow_expired)

    def password_hash(self, user_id: str) -> str | None:
        """The stored Argon2id hash (None: no such user, or no password)."""
        with self._errors():
            row = self._db.execute(
                "SELECT password_hash FROM users WHERE id = ?", (user_id,)
            ).fetchone()
        return None if row is None else row[0]

    def record_check(
        self,
        user_id: str,
        password: str,
        stored: str | None,
        ok: bool,
        *,
        allow_expired: bool = False,
    ) -> UserRecord:
        """Second half of ``check_password``: ``ok`` is ``verify_password(stored, password)``,
        computed off the writer (the async store verifies on another thread). Records the
        outcome; raises ``Unauthenticated`` for every refusal."""
        policy = self.auth_policy
        now = time.time()
        with self._tx(durable=True) as db:
            user = (
                self._get_user(db, user_id)
                if db.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone()
                else None
            )
            current = db.execute(
                "SELECT password_hash FROM users WHERE id = ?", (user_id,)
            ).fetchone()
            if current is not None and current[0] != stored:
                ok = False  # the password changed while this one was being verified
            if user is None:
                self._append_audit(
                    db,
                    t=now,
                    actor="anonymous",
                    action="user.login_failed",
                    object=f"user/{user_id}"[:300],
                    old=None,
                    new={"why": "unknown user"},
                    reason=None,
                )
                failure: Unauthenticated | None = Unauthenticated("wrong user name or password")
            elif user.locked_until is not None and user.locked_until > now:
                self._append_audit(
                    db,
                    t=now,
                    actor="anonymous",
                    action="user.login_failed",
                    object=object_of("users", user_id),
                    old=None,
                    new={"why": "locked"},
                    reason=None,
                )
                failure = AccountLocked(
                    f"account {user_id!r} is locked after too many failed attempts; "
                    f"try again after {_hhmm(user.locked_until)} UTC or ask an admin to reset it",
                    locked_until=user.locked_until,
                )
            elif not ok or not user.active:
                failure = self._count_failure(
                    db, user, now, "deactivated" if ok and not user.active else "wrong password"
                )
            else:
                expires = user.password_expires_at(policy)
                if expires is not None and now >= expires and not allow_expired:
                    self._append_audit(
                        db,
                        t=now,
                        actor="anonymous",
                        action="user.login_failed",
                        object=object_of("users", user_id),
                        old=None,
                        new={"why": "password expired"},
                        reason=None,
                    )
                    failure = Unauthenticated(
                        f"the password of {user_id!r} expired on {_hhmm(expires)} UTC; "
                        "change it (labdevices passwd) or ask an admin to reset it"
                    )
                else:
                    failure = None
                    self._on_success(db, user, stored or "", password, now)
                    user = self._get_user(db, user_id)
        if failure is not None:
            raise failure
        assert user is not None
        return user

    def _count_failure(
        self, db: Connection, user: UserRecord, now: float, why: str
    ) -> Unauthenticated:
        policy = self.auth_policy
        failed = user.failed_logins + 1
        lock = policy.lockout_threshold > 0 and failed >= policy.lockout_threshold
        locked_until = now + policy.lockout_minutes * 60.0 if lock else None
        db.execute(
            "UPDATE users SET failed_logins = ?, locked_until = ? WHERE id = ?",
            (0 if lock else failed, locked_until, user.id),
        )
        self._append_audit(
            db,
            t=now,
            actor="anonymous",
            action="user.lock" if lock else "user.login_failed",
            object=object_of("users", user.id),
            old={"failed_logins": user.failed_logins},
            new={"why": why, "failed_logins": failed, "locked": lock},
            reason=None,
            row=("users", user.id),
        )
        if not lock:
            return Unauthenticated("wrong user name or password")
        assert locked_until is not None
        alarm = self._raise_lockout_alarm(db, user.id, failed, now)
        return AccountLocked(
            f"account {user.id!r} is locked after {failed} failed attempts; try again after "
            f"{_hhmm(locked_until)} UTC or ask an admin to reset it",
            locked_until=locked_until,
            alarm=alarm,
        )

    def _raise_lockout_alarm(
        self, db: Connection, user_id: str, failed: int, now: float
    ) -> AlarmRecord:
        reason = f"user {user_id!r} locked out after {failed} failed login attempts"
        cur = db.execute(
            "INSERT INTO alarms (device, name, severity, raised_at, reason)"
            " VALUES (?, ?, ?, ?, ?) RETURNING id",
            ("auth", "account_locked", "warning", now, reason),
        )
        alarm_id = int(cur.fetchone()[0])
        self._append_audit(
            db,
            t=now,
            actor="daemon",
            action="alarm.raise",
            object=object_of("alarms", alarm_id),
            old=None,
            new={"device": "auth", "name": "account_locked", "severity": "warning"},
            reason=reason,
            row=("alarms", alarm_id),
        )
        row = db.execute(
            "SELECT id, device, name, severity, raised_at, cleared_at, acknowledged_at,"
            " acknowledged_by, reason FROM alarms WHERE id = ?",
            (alarm_id,),
        ).fetchone()
        return AlarmRecord(*row)

    def _on_success(
        self, db: Connection, user: UserRecord, stored: str, password: str, now: float
    ) -> None:
        rehash = _HASHER.check_needs_rehash(stored)
        if user.failed_logins == 0 and user.locked_until is None and not rehash:
            return
        new_hash = _HASHER.hash(password) if rehash else stored
        db.execute(
            "UPDATE users SET failed_logins = 0, locked_until = NULL, password_hash = ? WHERE id = ?",
            (new_hash, user.id),
        )
        self._append_audit(
            db,
            t=now,
            actor=user.id,
            action="user.login_ok",
            object=object_of("users", user.id),
            old={"failed_logins": user.failed_logins},
            new={"failed_logins": 0, "rehashed": rehash},
            reason=None,
            row=("users", user.id),
        )

    def _new_hashes(self, user_id: str, password: str, previous: list[str]) -> tuple[str, str]:
        """(Argon2id hash, Mosquitto hash) of a new password that meets the policy."""
        policy = self.auth_policy
        if not isinstance(password, str):
            raise PasswordRejected(f"user {user_id!r}: the password must be text")
        if len(password) < policy.min_length:
            raise PasswordRejected(
                f"user {user_id!r}: the password must be at least {policy.min_length} characters"
            )
        if len(password) > _MAX_PASSWORD:
            raise PasswordRejected(
                f"user {user_id!r}: the password is too long (max {_MAX_PASSWORD})"
            )
        if user_id.lower() in password.lower():
            raise PasswordRejected(f"user {user_id!r}: the password must not contain the user id")
        for old in previous[: policy.history]:
            try:
                if _HASHER.verify(old, password):
                    raise PasswordRejected(
                        f"user {user_id!r}: the password must differ from the last "
                        f"{policy.history} passwords"
                    )
            except (argon2_errors.VerificationError, argon2_errors.InvalidHashError):
                pass
        return _HASHER.hash(password), mosquitto_hash(password)

    def _get_user(self, db: Connection, user_id: str) -> UserRecord:
        row = db.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,)).fetchone()
        if row is None:
            raise StoreError(f"no user {user_id!r}", file=self.label)
        return _user(row)

    # -- sessions --------------------------------------------------------------

    def create_session(self, user_id: str, *, lifetime_s: float | None = None) -> SessionRecord:
        """A new session for an (already authenticated) active user; audited ``session.create``."""
        lifetime = self.auth_policy.session_hours * 3600.0 if lifetime_s is None else lifetime_s
        session_id = secrets.token_urlsafe(24)
        now = time.time()
        with self._tx(durable=True) as db:
            user = self._get_user(db, user_id)
            if not user.active:
                raise Unauthenticated(f"user {user_id!r} is deactivated")
            db.execute(
                "INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (session_id, user_id, now, now + lifetime),
            )
            self._append_audit(
                db,
                t=now,
                actor=user_id,
                action="session.create",
                object=f"session/{session_id}",
                old=None,
                new={"user": user_id, "expires_at": now + lifetime},
                reason=None,
            )
        return SessionRecord(session_id, user_id, now, now + lifetime, None, user.roles)

    def login(self, user_id: str, password: str) -> tuple[UserRecord, SessionRecord]:
        """``check_password`` then ``create_session``."""
        user = self.check_password(user_id, password)
        return user, self.create_session(user.id)

    def get_session(self, session_id: str) -> SessionRecord | None:
        """A session with its user's current roles (None if unknown; check ``valid_at``).

        A session of a deactivated user comes back revoked.
        """
        with self._errors():
            row = self._db.execute(
                "SELECT s.id, s.user_id, s.created_at, s.expires_at, s.revoked_at, u.roles,"
                " u.active, u.deactivated_at FROM sessions s JOIN users u ON u.id = s.user_id"
                " WHERE s.id = ?",
                (session_id,),
            ).fetchone()
        if row is None:
            return None
        revoked = row[4] if row[6] else (row[4] or row[7] or row[2])
        return SessionRecord(row[0], row[1], row[2], row[3], revoked, tuple(json.loads(row[5])))

    def revoke_session(self, session_id: str, *, by: str, reason: str) -> SessionRecord:
        """End a session (logout, or an admin); audited ``session.revoke``."""
        now = time.time()
        with self._tx(durable=True) as db:
            row = db.execute(
                "SELECT user_id, revoked_at FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
            if row is None:
                raise StoreError(f"no session {session_id!r}", file=self.label)
            if row[1] is None:
                db.execute("UPDATE sessions SET revoked_at = ? WHERE id = ?", (now, session_id))
                self._append_audit(
                    db,
                    t=now,
                    actor=by,
                    action="session.revoke",
                    object=f"session/{session_id}",
                    old=None,
                    new={"user": row[0]},
                    reason=reason,
                )
        session = self.get_session(session_id)
        assert session is not None
        return session

    def _revoke_user_sessions(
        self, db: Connection, user_id: str, now: float, *, by: str, reason: str
    ) -> None:
        ids = [
            r[0]
            for r in db.execute(
                "SELECT id FROM sessions WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ?",
                (user_id, now),
            )
        ]
        for session_id in ids:
            db.execute("UPDATE sessions SET revoked_at = ? WHERE id = ?", (now, session_id))
            self._append_audit(
                db,
                t=now,
                actor=by,
                action="session.revoke",
                object=f"session/{session_id}",
                old=None,
                new={"user": user_id},
                reason=reason,
            )


def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches an Argon2id hash; an unknown user (``stored`` None) costs
    the same time as a wrong password. CPU-bound (~50-100 ms): keep it off the event loop."""
    if not isinstance(password, str) or len(password) > _MAX_PASSWORD:
        return False
    try:
        return bool(_HASHER.verify(stored or _DUMMY_HASH, password)) and stored is not None
    except (argon2_errors.VerificationError, argon2_errors.InvalidHashError):
        return False


def _hhmm(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))

"""Who acts, decided by the daemon: the request guard, and the login, logout and whoami commands.

Every request to the daemon passes ``RequestGuard.admit`` before any handler runs. It
refuses (audited as ``request.refused``, nothing changed) a request that

- was delivered with the MQTT retain flag (and clears that retained message);
- carries no session, an unknown, expired or revoked one, or a MAC that does not verify;
- was issued (``t``) before the daemon started or outside the replay window, or repeats a
  (session, id) already admitted (a replay: not run again);
- asks for its reply outside the user's own inboxes ``clients/{user}/``;
- claims an ``actor`` other than the session's user;
- needs a capability the user's roles do not grant (``auth/_roles.py``).

What it admits reaches the handler with ``actor`` = the session's user.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NoReturn

from pydantic import JsonValue

from ..auth import (
    DEFAULT_DAEMON_ACCOUNT,
    broker_token,
    capabilities_of,
    capability_for,
    session_secret,
    verify_mac,
)
from ..bus import BusClient, BusMessage, Request, RequestRefused
from ..errors import BadRequest, Forbidden, LabDeviceError, Unauthenticated
from ..store import AccountLocked, Store, mosquitto_verify

__all__ = [
    "AuthCommands",
    "BrokerLogin",
    "NotPermitted",
    "RequestGuard",
    "audit_refusal",
    "authorise",
    "request_scope",
]

log = logging.getLogger("labdevices.daemon.auth")

#: how long a request may travel (seconds, either way) before it counts as a possible replay
DEFAULT_REPLAY_WINDOW_S = 120.0


def request_scope(topic: str) -> tuple[str, str, str]:
    """(scope, command, audit object) of a request topic: ``device``/``daemon``/``jobs``."""
    parts = topic.split("/")
    if len(parts) >= 4 and parts[-2] == "cmd":
        device = parts[-3]
        if device == "daemon":
            return "daemon", parts[-1], "daemon"
        return "device", parts[-1], f"device/{device}"
    if parts[-2:] == ["jobs", "submit"]:
        return "jobs", "submit", "jobs"
    return "unknown", parts[-1], "daemon"


class NotPermitted(Forbidden):
    """The user's roles do not grant what the command needs; ``why`` is the audited reason."""

    def __init__(self, message: str, *, why: str) -> None:
        self.why = why
        super().__init__(message)


def authorise(
    user: str,
    roles: Iterable[str],
    scope: str,
    name: str,
    known: Callable[[str, str], bool],
) -> None:
    """The one authority check of every request, from MQTT or the web: ``NotPermitted`` unless
    ``user``'s roles grant the capability ``(scope, name)`` needs (``auth/_roles.py``). A command
    a handler serves (``known``) but the roles table does not name is refused (fail closed)."""
    roles = tuple(roles)
    capability = capability_for(scope, name)
    if capability is None:
        if known(scope, name):
            raise NotPermitted(
                f"command {name!r} has no capability in the roles table", why="no capability"
            )
        capability = "session"  # unknown: the handler answers unknown_command
    if capability not in capabilities_of(roles):
        shown = ", ".join(roles) or "none"
        raise NotPermitted(
            f"user {user!r} (roles: {shown}) may not {scope} {name}: "
            f"it needs the {capability!r} capability",
            why="role",
        )


async def audit_refusal(
    store: Store,
    user: str | None,
    obj: str,
    *,
    topic: str,
    request_id: str,
    code: str,
    why: str,
    message: str | None = None,
    claimed: str | None = None,
    session: str | None = None,
    via: str | None = None,
) -> None:
    """Audit a request refused before any handler ran (``request.refused``), as MQTT and the web
    both do; a store failure is logged, never raised over the refusal."""
    new: dict[str, JsonValue] = {
        "topic": topic,
        "request_id": request_id,
        "claimed_actor": claimed,
        "session": session,
        "code": code,
        "why": why,
    }
    if via is not None:
        new["via"] = via
    try:
        await store.audit(
            user or "anonymous", "request.refused", obj, new=new, reason=message or why
        )
    except LabDeviceError as exc:
        log.error("refused request not audited: %s", exc)


class RequestGuard:
    """Authenticates and authorises each request (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        bus: BusClient,
        session_key: bytes,
        *,
        known: Callable[[str, str], bool],
        window_s: float = DEFAULT_REPLAY_WINDOW_S,
        started_at: float | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self._session_key = session_key
        self._known = known
        self.window_s = window_s
        self.started_at = time.time() if started_at is None else started_at
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self.clients_root = bus.topics.clients_prefix()

    async def admit(self, request: Request, message: BusMessage) -> Request:
        topic = message.topic
        scope, name, obj = request_scope(topic)
        if message.retain:
            # Delivered from the broker's retained store (at subscribe): not a live request.
            # Cleared so that it cannot come back at the next start.
            self.bus.post(topic, b"", retain=True)
            await self._refuse(
                request,
                topic,
                obj,
                None,
                Unauthenticated(
                    f"a retained request is never executed (on {topic}); it was cleared"
                ),
                why="retained",
                reply=False,
            )
        if scope == "daemon" and name == "login":
            return await self._admit_login(request, topic, obj)

        if request.session is None or request.mac is None or request.t is None:
            await self._refuse(
                request,
                topic,
                obj,
                None,
                Unauthenticated(
                    "no session: log in first (labdevices login, or LabClient(user=...))"
                ),
                why="no session",
            )
        secret = session_secret(self._session_key, request.session)
        if not verify_mac(secret, topic, request.signed_fields(), request.mac):
            await self._refuse(
                request,
                topic,
                obj,
                None,
                Unauthenticated(
                    "the request's MAC does not verify (unknown session or altered request)"
                ),
                why="bad mac",
            )
        session = await self.store.get_session(request.session)
        now = time.time()
        if session is None or not session.valid_at(now):
            state = (
                "unknown"
                if session is None
                else "revoked"
                if session.revoked_at is not None
                else "expired"
            )
            await self._refuse(
                request,
                topic,
                obj,
                session.user_id if session else None,
                Unauthenticated(f"the session is {state}: log in again"),
                why=f"session {state}",
            )
        user = session.user_id
        if not self._fresh(request.t, now):
            await self._refuse(
                request,
                topic,
                obj,
                user,
                Unauthenticated(
                    f"request {request.id} was issued at {request.t:.3f}, outside the replay "
                    f"window ({self.window_s:g} s, and not before the daemon started); not executed"
                ),
                why="stale",
            )
        key = (session.id, request.id)
        if key in self._seen:
            await self._audit(request, topic, obj, user, "unauthenticated", "replay")
            raise RequestRefused(duplicate=True)
        self._remember(key, request.t, now)

        inbox = f"{self.clients_root}{user}/"
        if not request.reply_to.startswith(inbox):
            # Never publish into someone else's inbox: no reply at all.
            await self._refuse(
                request,
                topic,
                obj,
                user,
                Forbidden(f"reply_to must be one of {user!r}'s own inboxes ({inbox}...)"),
                why="reply_to of another",
                reply=False,
            )
        if "actor" in request.model_fields_set and request.actor != user:
            await self._refuse(
                request,
                topic,
                obj,
                user,
                Forbidden(f"logged in as {user!r}, the request claims to act as {request.actor!r}"),
                why="claimed another actor",
            )
        try:
            authorise(user, session.roles, scope, name, self._known)
        except NotPermitted as exc:
            await self._refuse(request, topic, obj, user, exc, why=exc.why)
        return request.model_copy(update={"actor": user})

    async def _admit_login(self, request: Request, topic: str, obj: str) -> Request:
        claimed = request.args.get("user")
        if not isinstance(claimed, str) or not claimed or "/" in claimed:
            await self._refuse(
                request, topic, obj, None, BadRequest("args.user is required"), why="no user"
            )
        inbox = f"{self.clients_root}{claimed}/"
        if not request.reply_to.startswith(inbox):
            # The reply carries the session secret: only to the claimed user's inbox.
            await self._refuse(
                request,
                topic,
                obj,
                None,
                Forbidden(f"a login reply goes only to the user's own inbox ({inbox}...)"),
                why="reply_to of another",
                reply=False,
            )
        now = time.time()
        if request.t is None or not self._fresh(request.t, now):
            await self._refuse(
                request,
                topic,
                obj,
                None,
                Unauthenticated("a login request must carry a fresh issue time (t)"),
                why="stale",
                inbox=inbox,
            )
        key = ("login:" + claimed, request.id)
        if key in self._seen:
            await self._audit(request, topic, obj, None, "unauthenticated", "replay")
            raise RequestRefused(duplicate=True)
        self._remember(key, request.t, now)
        if "actor" in request.model_fields_set and request.actor != claimed:
            await self._refuse(
                request,
                topic,
                obj,
                None,
                Forbidden(f"login as {claimed!r} claims to act as {request.actor!r}"),
                why="claimed another actor",
                inbox=inbox,
            )
        return request.model_copy(update={"actor": "anonymous"})

    def _fresh(self, t: float, now: float) -> bool:
        return t >= self.started_at and abs(now - t) <= self.window_s

    def _remember(self, key: tuple[str, str], t: float, now: float) -> None:
        self._seen[key] = t
        # Entries older than the window can go: such a request is refused as stale anyway.
        while self._seen:
            oldest_key, oldest_t = next(iter(self._seen.items()))
            if oldest_t >= now - self.window_s - 1.0:
                break
            del self._seen[oldest_key]

    async def _refuse(
        self,
        request: Request,
        topic: str,
        obj: str,
        user: str | None,
        error: LabDeviceError,
        *,
        why: str,
        reply: bool = True,
        inbox: str | None = None,
    ) -> NoReturn:
        """Audit and refuse. The error is replied only into an inbox of whoever is proven to
        have sent the request (``user``, by the MAC of their session) — or, for a login, of the
        user it names; an unproven sender gets it only under ``clients/anonymous/``. So no one
        can make the daemon publish into another user's inbox."""
        if inbox is None:
            inbox = f"{self.clients_root}{user or 'anonymous'}/"
        reply_to = request.reply_to if reply and request.reply_to.startswith(inbox) else None
        await self._audit(request, topic, obj, user, error.code, why, message=error.message)
        raise RequestRefused(error, reply_to=reply_to)

    async def _audit(
        self,
        request: Request,
        topic: str,
        obj: str,
        user: str | None,
        code: str,
        why: str,
        *,
        message: str | None = None,
    ) -> None:
        claimed = request.actor if "actor" in request.model_fields_set else None
        await audit_refusal(
            self.store,
            user,
            obj,
            topic=topic,
            request_id=request.id,
            code=code,
            why=why,
            message=message,
            claimed=claimed,
            session=request.session,
        )
        log.warning(
            "refused request %s on %s (user %s, claimed %s): %s",
            request.id,
            topic,
            user or "anonymous",
            claimed,
            why,
        )


class AuthCommands:
    """``daemon/cmd/login``, ``logout`` and ``whoami``."""

    def __init__(
        self,
        store: Store,
        bus: BusClient,
        session_key: bytes,
        on_alarm: Callable[[Any], None],
    ) -> None:
        self.store = store
        self.bus = bus
        self._session_key = session_key
        self._on_alarm = on_alarm

    def commands(self) -> dict[str, Callable[[Request], Awaitable[JsonValue]]]:
        return {"login": self.login, "logout": self.logout, "whoami": self.whoami}

    async def login(self, request: Request) -> JsonValue:
        """args ``user``, ``password`` → a session: id, secret (hex), expiry, user, roles."""
        user_id = request.args.get("user")
        password = request.args.get("password")
        if not isinstance(user_id, str) or not isinstance(password, str):
            raise BadRequest("login needs args.user and args.password (text)")
        try:
            user, session = await self.store.login(user_id, password)
        except AccountLocked as exc:
            if exc.alarm is not None:
                self._on_alarm(exc.alarm)
            raise
        secret = session_secret(self._session_key, session.id)
        return {
            "session": session.id,
            "secret": secret.hex(),
            "expires_at": session.expires_at,
            "user": user.id,
            "full_name": user.full_name,
            "roles": list(user.roles),
        }

    async def logout(self, request: Request) -> JsonValue:
        assert request.session is not None
        session = await self.store.revoke_session(
            request.session, by=request.actor, reason="logout"
        )
        return {"session": session.id, "revoked_at": session.revoked_at}

    async def whoami(self, request: Request) -> JsonValue:
        user = await self.store.get_user(request.actor)
        session = await self.store.get_session(request.session or "")
        return {
            "user": user.id,
            "full_name": user.full_name,
            "roles": list(user.roles),
            "expires_at": session.expires_at if session else None,
        }


class BrokerLogin:
    """Who may connect to the embedded broker: the daemon's own account (a password that lives
    only in this process), a user with their password (the same ``$7$`` hash Mosquitto's
    password file gets), or a user with a broker token of a valid session of theirs."""

    def __init__(self, store: Store, session_key: bytes, daemon: str = DEFAULT_DAEMON_ACCOUNT):
        self.store = store
        self._session_key = session_key
        self.daemon = daemon
        self.daemon_password = secrets.token_urlsafe(32)

    async def __call__(self, username: str | None, password: str | None) -> bool:
        if not username or not password:
            return False
        if username == self.daemon:
            return hmac.compare_digest(password, self.daemon_password)
        if password.startswith("session:"):
            _, _, rest = password.partition(":")
            session_id, _, _proof = rest.rpartition(":")
            secret = session_secret(self._session_key, session_id)
            if hmac.compare_digest(password, broker_token(session_id, secret)):
                session = await self.store.get_session(session_id)
                return (
                    session is not None
                    and session.user_id == username
                    and session.valid_at(time.time())
                )
            # else: perhaps a password that happens to start so
        hashes = dict(await self.store.broker_credentials())
        stored = hashes.get(username)
        if stored is None:
            return False
        return await asyncio.to_thread(mosquitto_verify, stored, password)

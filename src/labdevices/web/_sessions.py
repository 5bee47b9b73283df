"""Browser sessions: the store's login sessions carried in an HttpOnly, SameSite=Strict cookie,
a CSRF token derived from the session's secret, and an idle timeout.

The cookie is ``{session id}.{session secret}``: the secret is derived from the daemon's key
(never stored), so neither the database alone nor a guessed id opens a session.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import time
from dataclasses import dataclass

from ..auth import session_secret
from ..errors import LabDeviceError
from ..store import Store

__all__ = ["COOKIE", "LOGIN_COOKIE", "WebSessions", "WebUser"]

COOKIE = "labdevices_session"
#: the login form's CSRF cookie: a random nonce; the form carries its HMAC under the daemon's key
LOGIN_COOKIE = "labdevices_login"


@dataclass(frozen=True)
class WebUser:
    """Who a browser request acts as."""

    id: str
    full_name: str
    roles: tuple[str, ...]
    session_id: str
    csrf: str

    def may(self, capability: str) -> bool:
        from ..auth import capabilities_of

        return capability in capabilities_of(self.roles)


class WebSessions:
    """Opens, checks and ends browser sessions."""

    def __init__(self, store: Store, session_key: bytes, *, idle_s: float) -> None:
        self.store = store
        self._key = session_key
        self.idle_s = idle_s
        self._last_seen: dict[str, float] = {}

    def _secret(self, session_id: str) -> bytes:
        return session_secret(self._key, session_id)

    def cookie_value(self, session_id: str) -> str:
        return f"{session_id}.{self._secret(session_id).hex()}"

    def login_csrf(self, nonce: str) -> str:
        """The login form's CSRF token for the browser's login cookie ``nonce`` (there is no
        session yet: the token is bound to that cookie, which a cross-site POST does not carry)."""
        return hmac.new(self._key, b"login-csrf:" + nonce.encode(), hashlib.sha256).hexdigest()

    def login_csrf_ok(self, nonce: str | None, token: object) -> bool:
        if not nonce or not isinstance(token, str):
            return False
        return hmac.compare_digest(token, self.login_csrf(nonce))

    async def login(self, user_id: str, password: str) -> str:
        """The cookie value of a new session; the store's errors (bad password, locked) as they are."""
        _, session = await self.store.login(user_id, password)
        self._last_seen[session.id] = time.monotonic()
        return self.cookie_value(session.id)

    async def user(self, cookie: str | None, *, touch: bool = True) -> WebUser | None:
        """The user of a valid, not idle, session cookie (None otherwise). ``touch``: this request
        is the user's doing (a page, an action), so it restarts the idle clock."""
        if not cookie:
            return None
        session_id, _, proof = cookie.partition(".")
        if not session_id or not hmac.compare_digest(proof, self._secret(session_id).hex()):
            return None
        session = await self.store.get_session(session_id)
        if session is None or not session.valid_at(time.time()):
            self._last_seen.pop(session_id, None)
            return None
        now = time.monotonic()
        last = self._last_seen.get(session_id, now)
        if now - last > self.idle_s:
            await self.logout(session_id, session.user_id, reason="idle timeout (web)")
            return None
        if touch or session_id not in self._last_seen:
            self._last_seen[session_id] = now
        user = await self.store.get_user(session.user_id)
        csrf = hmac.new(self._secret(session_id), b"csrf", hashlib.sha256).hexdigest()
        return WebUser(user.id, user.full_name, tuple(session.roles), session_id, csrf)

    async def logout(self, session_id: str, user_id: str, *, reason: str = "logout (web)") -> None:
        self._last_seen.pop(session_id, None)
        # Already revoked or gone: the browser is logged out either way.
        with contextlib.suppress(LabDeviceError):
            await self.store.revoke_session(session_id, by=user_id, reason=reason)

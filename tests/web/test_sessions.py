"""Browser sessions on the store: cookie proof, idle timeout (revoking the session) and logout."""

from __future__ import annotations

from pathlib import Path

import pytest

from labdevices.errors import Unauthenticated
from labdevices.store import open_store
from labdevices.testing._auth import TEST_PASSWORD, add_test_user
from labdevices.web import WebSessions

KEY = b"k" * 32


async def test_an_idle_session_is_logged_out_and_revoked(tmp_path: Path) -> None:
    db = tmp_path / "lab.db"
    add_test_user(db, "olivia", ["operator"], password=TEST_PASSWORD)
    async with open_store(db) as store:
        sessions = WebSessions(store, KEY, idle_s=3600.0)
        cookie = await sessions.login("olivia", TEST_PASSWORD)
        user = await sessions.user(cookie)
        assert user is not None and (user.id, user.roles) == ("olivia", ("operator",))
        assert len(user.csrf) == 64

        # a tampered proof, or another session's id with this proof, opens nothing
        session_id, _, proof = cookie.partition(".")
        assert await sessions.user(f"{session_id}.{'0' * len(proof)}") is None
        assert await sessions.user(f"x{session_id}.{proof}") is None

        idle = WebSessions(store, KEY, idle_s=0.0)  # any pause is too long
        cookie = await idle.login("olivia", TEST_PASSWORD)
        assert await idle.user(cookie) is None
        session = await store.get_session(cookie.partition(".")[0])
        assert session is not None and session.revoked_at is not None
        # revoked in the store: no other server (or a restart) takes it back
        assert await sessions.user(cookie) is None
        records = await store.audit_records()
        assert any("idle timeout" in (r.reason or "") for r in records)


async def test_a_wrong_password_opens_no_session(tmp_path: Path) -> None:
    db = tmp_path / "lab.db"
    add_test_user(db, "olivia", ["operator"], password=TEST_PASSWORD)
    async with open_store(db) as store:
        sessions = WebSessions(store, KEY, idle_s=60.0)
        with pytest.raises(Unauthenticated):
            await sessions.login("olivia", "not her password")
        assert await sessions.user(None) is None

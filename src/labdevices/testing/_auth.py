"""Users and logged-in sessions for tests: no password round trip, so no Argon2 cost per test.

``issue_session(db, "bob", site=site)`` registers ``bob`` in the store (if new) with the
given roles and opens a session for him exactly as a login would (the secret derived from
the daemon's key beside the store), for ``LabClient(url, site=site, session=...)``.
The ``lab_session`` fixture does the same for a test's ``tmp_path`` store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ..client import Session

# The store, client and crypto modules are imported when a function runs, not when pytest
# loads the plugin: a users' suite that never asks for a session pays nothing for them.

__all__ = ["TEST_PASSWORD", "add_test_user", "issue_session", "lab_session"]

#: a password that meets the default policy, for tests that log in with one
TEST_PASSWORD = "test password 2024!"


def add_test_user(
    db_path: str | Path,
    user: str,
    roles: Iterable[str] = ("operator",),
    *,
    password: str | None = None,
    full_name: str | None = None,
    service: bool = False,
) -> None:
    """Register ``user`` in the store at ``db_path`` (a file or a URL; nothing if it exists)."""
    from ..store import open_database

    with open_database(db_path) as db:
        if db.find_user(user) is None:
            db.add_user(
                user,
                full_name or user.replace("-", " ").title(),
                list(roles),
                by="test-setup",
                reason="test user",
                password=password,
                service=service,
            )


def issue_session(
    db_path: str | Path,
    user: str,
    *,
    site: str,
    roles: Iterable[str] = ("operator",),
    lifetime_s: float | None = None,
) -> Session:
    """A session for ``user`` (registered with ``roles`` if new), as ``login`` would give."""
    from ..auth import SESSION_PURPOSE, session_secret
    from ..client import Session
    from ..store import default_key_path, derive_key, load_or_create_signing_key, open_database

    add_test_user(db_path, user, roles)
    with open_database(db_path) as db:
        record = db.create_session(user, lifetime_s=lifetime_s)
        full_name = db.get_user(user).full_name
    key = derive_key(load_or_create_signing_key(default_key_path(db_path)), SESSION_PURPOSE)
    return Session(
        id=record.id,
        secret=session_secret(key, record.id),
        user=user,
        site=site,
        expires_at=record.expires_at,
        roles=record.roles,
        full_name=full_name,
    )


@pytest.fixture
def lab_session(tmp_path: Path) -> Callable[..., Session]:
    """``lab_session("bob", site=site, roles=["operator"])``: a session in ``tmp_path/"lab.db"``."""

    def make(user: str, *, site: str, roles: Iterable[str] = ("operator",)) -> Session:
        return issue_session(tmp_path / "lab.db", user, site=site, roles=roles)

    return make

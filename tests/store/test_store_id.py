"""Each store has a random id, made once and kept: job ids restart in a new store, the id does not."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from labdevices.store import SqliteDatabase, SqliteStore, StoreError
from labdevices.store._schema import MIGRATIONS


async def test_a_store_keeps_its_id_and_another_store_has_another(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "a.db") as a:
        first = await a.store_id()
    async with SqliteStore(tmp_path / "a.db") as again, SqliteStore(tmp_path / "b.db") as b:
        assert await again.store_id() == first
        other = await b.store_id()
    assert first is not None and len(first) == 32 and int(first, 16) >= 0
    assert other is not None and other != first
    with SqliteDatabase(tmp_path / "a.db", readonly=True) as ro:
        assert ro.store_id == first
    conn = sqlite3.connect(tmp_path / "a.db")
    with pytest.raises(sqlite3.DatabaseError, match="the store id never changes"):
        conn.execute("UPDATE store_meta SET value = 'x' WHERE key = 'store_id'")
    conn.close()


def test_a_version_2_store_gets_an_id_when_migrated_and_reads_as_none_before(
    tmp_path: Path,
) -> None:
    db = tmp_path / "v2.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL,"
        " applied_at TEXT NOT NULL)"
    )
    for version, _, statements in MIGRATIONS[:2]:
        for statement in statements:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (?, 'v', 'x')", (version,))
    conn.close()
    with SqliteDatabase(db, readonly=True) as ro:
        assert ro.store_id is None
    with SqliteDatabase(db) as store:
        made = store.store_id
        assert made is not None
        assert store.verify().ok
    with SqliteDatabase(db) as store:
        assert store.store_id == made


def test_a_closed_store_has_no_id_to_give(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not open"):
        _ = SqliteDatabase(tmp_path / "x.db").store_id

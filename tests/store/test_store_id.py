"""Each store has a random id, made once and kept: job ids restart in a new store, the id does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from labdevices.store import StoreError, open_database, open_store
from labdevices.store._dialect import POSTGRESQL, SQLITE
from labdevices.store._schema import MIGRATIONS

from ._tamper import RAW_ERRORS, is_postgres, raw


async def test_a_store_keeps_its_id_and_another_store_has_another(
    db_path: str | Path, other_db_path: str | Path
) -> None:
    async with open_store(db_path) as a:
        first = await a.store_id()
    async with open_store(db_path) as again, open_store(other_db_path) as b:
        assert await again.store_id() == first
        other = await b.store_id()
    assert first is not None and len(first) == 32 and int(first, 16) >= 0
    assert other is not None and other != first
    with open_database(db_path, readonly=True) as ro:
        assert ro.store_id == first
    with raw(db_path) as conn, pytest.raises(RAW_ERRORS, match="the store id never changes"):
        conn.execute("UPDATE store_meta SET value = 'x' WHERE key = 'store_id'")


def test_a_version_2_store_gets_an_id_when_migrated_and_reads_as_none_before(
    db_path: str | Path,
) -> None:
    dialect = POSTGRESQL if is_postgres(db_path) else SQLITE
    with raw(db_path) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
            " description TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        for version, _, statements in MIGRATIONS[:2]:
            for statement in statements:
                if sql := dialect.ddl(statement):
                    conn.execute(sql)
            conn.execute("INSERT INTO schema_migrations VALUES (?, 'v', 'x')", (version,))
    with open_database(db_path, readonly=True) as ro:
        assert ro.store_id is None
    with open_database(db_path) as store:
        made = store.store_id
        assert made is not None
        assert store.verify().ok
    with open_database(db_path) as store:
        assert store.store_id == made


def test_a_closed_store_has_no_id_to_give(db_path: str | Path) -> None:
    with pytest.raises(StoreError, match="not open"):
        _ = open_database(db_path).store_id

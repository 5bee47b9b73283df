"""Every migration applies on both databases, one at a time, to a store holding records of the
versions before it; the result opens, verifies and takes new records."""

from __future__ import annotations

import pytest

from labdevices.store import open_database
from labdevices.store._dialect import POSTGRESQL, SQLITE, Both, pg_trigger
from labdevices.store._schema import MIGRATIONS, SCHEMA_VERSION

from ._tamper import is_postgres, raw
from .conftest import Location


def test_versions_are_consecutive_and_described() -> None:
    assert [v for v, _, _ in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert MIGRATIONS[-1][0] == SCHEMA_VERSION
    for _, description, statements in MIGRATIONS:
        assert description and statements


@pytest.mark.parametrize("upto", range(1, len(MIGRATIONS) + 1))
def test_each_migration_applies_after_the_ones_before(db_path: Location, upto: int) -> None:
    """Stop at version ``upto``, write a job there, then let the store migrate the rest."""
    dialect = POSTGRESQL if is_postgres(db_path) else SQLITE
    with raw(db_path) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
            " description TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        for version, _, statements in MIGRATIONS[:upto]:
            for statement in statements:
                if sql := dialect.ddl(statement):
                    conn.execute(sql)
            conn.execute("INSERT INTO schema_migrations VALUES (?, 'v', 'x')", (version,))
        conn.execute(
            "INSERT INTO jobs (printer, state, lines_total, created_at)"
            " VALUES ('p1', 'completed', 3, 1.0)"
        )
    with open_database(db_path) as db:
        assert db.schema_version == MIGRATIONS[-1][0]
        assert db.get_job(1).printer == "p1"
        job = db.create_job("p2", actor="alice", gcode="G28\n")
        assert job.id == 2  # the id sequence went on past the migrated rows
        assert db.verify().ok


def test_every_statement_has_a_postgresql_spelling() -> None:
    """Untranslatable SQLite (an untyped column, PRAGMA, AUTOINCREMENT left over) must be
    written for both with ``Both``; triggers must be the append-only form the translator knows."""
    for version, _, statements in MIGRATIONS:
        for statement in statements:
            sql = POSTGRESQL.ddl(statement)
            text = " ".join(sql.split()).upper()
            where = f"migration {version}: {sql[:60]!r}"
            assert "AUTOINCREMENT" not in text and "PRAGMA" not in text, where
            assert "RANDOMBLOB" not in text, where
            raw_sqlite = statement.sqlite if isinstance(statement, Both) else statement
            if "CREATE TRIGGER" in raw_sqlite.upper():
                assert pg_trigger(raw_sqlite) is not None, where


def test_the_sqlite_spelling_is_the_text_as_written() -> None:
    for _, _, statements in MIGRATIONS:
        for statement in statements:
            if isinstance(statement, str):
                assert SQLITE.ddl(statement) == statement

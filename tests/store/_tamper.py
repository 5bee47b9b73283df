"""Helpers for tests that edit a store by hand, as someone with the file (SQLite) or with SQL
rights on the database (PostgreSQL: psql as a superuser) could."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from labdevices.store._postgres import PgConnection

#: what the database raises when a guard (trigger, constraint) refuses a statement
RAW_ERRORS = (sqlite3.DatabaseError, psycopg.Error)

GUARDS = (
    "audit_no_update",
    "audit_no_delete",
    "signatures_no_update",
    "signatures_no_delete",
    "checkpoints_no_update",
    "checkpoints_no_delete",
    "users_no_delete",
)


class Row(tuple[Any, ...]):
    """A row readable by index and by column name, like ``sqlite3.Row``."""

    _names: tuple[str, ...] = ()

    def keys(self) -> tuple[str, ...]:
        return self._names

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names.index(key))
        return tuple.__getitem__(self, key)


def _pg_rows(cursor: Any) -> Any:
    names = tuple(c.name for c in cursor.description or ())

    def make(values: Any) -> Row:
        row = Row(values)
        row._names = names
        return row

    return make


def is_postgres(db: str | Path) -> bool:
    return isinstance(db, str) and db.startswith("postgresql://")


@contextmanager
def raw(db: str | Path, *, guards_off: tuple[str, ...] = ()) -> Iterator[Any]:
    """A plain connection (no labdevices code) in autocommit mode that takes ``?`` parameters;
    rows read by index or name. ``guards_off``: these append-only triggers dropped (SQLite);
    on PostgreSQL no trigger fires in this session (``session_replication_role = replica``)."""
    if is_postgres(db):
        pg = psycopg.connect(str(db), autocommit=True, row_factory=_pg_rows)
        conn: Any = PgConnection(pg)
        if guards_off:
            conn.execute("SET session_replication_role = replica")
    else:
        conn = sqlite3.connect(db, isolation_level=None)
        conn.row_factory = sqlite3.Row
        if guards_off:
            for trigger in guards_off:
                conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    try:
        yield conn
    finally:
        conn.close()


def tamper(db: str | Path, *statements: str) -> None:
    """Run SQL on the store in one transaction, the audit table's guards off."""
    with raw(db, guards_off=GUARDS[:2]) as conn:
        conn.execute("BEGIN")
        for sql in statements:
            conn.execute(sql)
        conn.execute("COMMIT")


def _admin_url(url: str) -> tuple[str, str]:
    base, _, name = url.rpartition("/")
    return f"{base}/postgres", name


def save_copy(db: str | Path, tag: str) -> None:
    """Keep a copy of the whole store as it is now (an old backup, for a rollback)."""
    if is_postgres(db):
        admin, name = _admin_url(str(db))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}_{tag} TEMPLATE {name}")
    else:
        import shutil

        shutil.copy(db, Path(db).with_name(f"{Path(db).name}.{tag}"))


def put_back(db: str | Path, tag: str) -> None:
    """Replace the store with the copy ``save_copy`` kept (a rollback)."""
    if is_postgres(db):
        admin, name = _admin_url(str(db))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
            conn.execute(f"ALTER DATABASE {name}_{tag} RENAME TO {name}")
    else:
        import shutil

        path = Path(db)
        shutil.copy(path.with_name(f"{path.name}.{tag}"), path)
        for suffix in ("-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)

"""The store on PostgreSQL: ``SqliteDatabase``'s logic on a psycopg connection.

Only the connection differs: a thin adapter gives psycopg the ``?`` placeholders and
``in_transaction`` of ``sqlite3``, and ``PostgresDatabase`` overrides how the store
connects, begins a write and reports errors. Every write transaction first takes one
advisory lock (``pg_advisory_xact_lock``), so that all writers - several daemons and the
CLI - append to one audit chain in one total order, as SQLite's ``BEGIN IMMEDIATE`` does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.types.json import Json

from ._checkpoints import Checkpoint, CheckpointSigner
from ._dialect import POSTGRESQL, Cursor, Dialect, pg_placeholders
from ._errors import StoreError, StoreUnavailable
from ._identity import AuthPolicy
from ._paths import local_stand_in, redact_url
from ._sqlite import SqliteDatabase

__all__ = ["PgConnection", "PostgresDatabase", "connect_postgres"]

#: the advisory lock every write transaction holds (one per database: "labdev" in ASCII)
WRITE_LOCK = 0x6C6162646576

#: the advisory lock a telemetry retention run holds, so that the daemons sharing a store
#: do not plan and archive the same blocks at once ("labret" in ASCII)
RETENTION_LOCK = 0x6C6162726574

_CONNECT_TIMEOUT_S = 10


class _PgCursor:
    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self._cur = cur

    @property
    def description(self) -> list[tuple[str]] | None:
        d = self._cur.description
        return None if d is None else [(c.name,) for c in d]

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()

    def fetchmany(self, size: int = 1) -> list[Any]:
        return self._cur.fetchmany(size)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cur)


class PgConnection:
    """A psycopg connection (autocommit: transactions are explicit, as with ``sqlite3``)
    that speaks the store's ``?`` placeholders."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor:
        cur = self.conn.cursor()
        if parameters:
            cur.execute(pg_placeholders(sql, True), parameters)
        else:
            cur.execute(sql)
        return _PgCursor(cur)

    def executemany(self, sql: str, parameters: Any, /) -> Cursor:
        cur = self.conn.cursor()
        cur.executemany(pg_placeholders(sql, True), parameters)
        return _PgCursor(cur)

    @property
    def in_transaction(self) -> bool:
        status = self.conn.info.transaction_status
        return status in (TransactionStatus.INTRANS, TransactionStatus.INERROR)

    @property
    def broken(self) -> bool:
        return self.conn.broken or self.conn.closed

    def close(self) -> None:
        self.conn.close()


def connect_postgres(url: str, *, readonly: bool = False) -> PgConnection:
    """A connection to the store at ``url``; ``StoreError`` (password hidden) if it fails."""
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S)
    except psycopg.Error as exc:
        raise StoreUnavailable(
            f"cannot connect: {_clean(exc, url)}", file=redact_url(url)
        ) from None
    if readonly:
        conn.execute("SET default_transaction_read_only = on")
    return PgConnection(conn)


def _clean(exc: BaseException, url: str) -> str:
    text = " ".join(str(exc).split())
    # libpq does not echo the password, but make sure no message ever carries it
    from urllib.parse import urlsplit

    password = urlsplit(url).password
    return text.replace(password, "***") if password else text


def json_value(value: Any) -> str:
    """A telemetry value as JSON text. PostgreSQL's json type keeps the text as given, so a
    float comes back a float and an int an int; JSON has no infinity, but 1e999 reads back
    as one in Python."""
    if isinstance(value, float) and math.isinf(value):
        return "1e999" if value > 0 else "-1e999"
    return json.dumps(value, ensure_ascii=False)


class PostgresDatabase(SqliteDatabase):
    """A labdevices store in a PostgreSQL database (``postgresql://user@host:port/dbname``).

    Same methods, records and proof as ``SqliteDatabase``; several processes may write it
    at once. The key and witness default to files named after the URL in the per-user data
    folder (``local_stand_in``); daemons that share a store share one key file (the site key).
    A lost connection fails the call in progress with ``StoreError`` (nothing of it was
    committed) and is made again by the next call.
    """

    dialect: Dialect = POSTGRESQL

    def __init__(
        self,
        url: str,
        *,
        readonly: bool = False,
        auth_policy: AuthPolicy | None = None,
        signer: CheckpointSigner | None = None,
        witness: str | Path | None = None,
        checkpoint_every_records: int = 256,
        checkpoint_every_s: float = 10.0,
        on_checkpoint: Callable[[int, Checkpoint], None] | None = None,
    ) -> None:
        super().__init__(
            local_stand_in(url),
            readonly=readonly,
            auth_policy=auth_policy,
            signer=signer,
            witness=witness,
            checkpoint_every_records=checkpoint_every_records,
            checkpoint_every_s=checkpoint_every_s,
            on_checkpoint=on_checkpoint,
        )
        self.url = url
        self.label = redact_url(url)
        self.location = url

    def _open(self) -> None:
        self._conn = connect_postgres(self.url, readonly=self.readonly)
        with self._errors():
            if self.readonly:
                self._check_schema()
            else:
                self._migrate()
                if self.signer is not None:
                    self._start_checkpoints()

    @property
    def _db(self) -> PgConnection:
        conn = self._conn
        if conn is None:
            raise StoreError("store is not open", file=self.label)
        assert isinstance(conn, PgConnection)
        if conn.broken:  # lost (server restarted): connect again for this call
            conn.close()
            self._conn = conn = connect_postgres(self.url, readonly=self.readonly)
        return conn

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """psycopg failures become ``StoreError`` naming the store (password hidden)."""
        try:
            yield
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(
                f"database connection failed: {_clean(exc, self.url)}", file=self.label
            ) from None
        except psycopg.Error as exc:
            raise StoreError(_clean(exc, self.url), file=self.label) from None

    def _begin_write(self, db: Any, *, durable: bool) -> None:
        # Durable writes return only once the commit is flushed to the server's WAL;
        # bulk writes (telemetry, progress) may lose their last moments if the server
        # crashes, like SQLite's synchronous=NORMAL, and the next durable commit flushes them.
        sync = "on" if durable else "off"
        db.execute(
            f"BEGIN; SET LOCAL synchronous_commit TO {sync}; "
            f"SELECT pg_advisory_xact_lock({WRITE_LOCK})"
        )

    def _rollback(self) -> None:
        conn = self._conn
        if isinstance(conn, PgConnection) and not conn.broken and conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error:
                conn.close()  # made again by the next call

    def _insert_samples(self, db: Any, block: int, rows: list[tuple[Any, ...]]) -> None:
        # COPY: one stream instead of a statement per row
        with db.conn.cursor().copy(
            "COPY telemetry (device, signal, t, value, unit, quality, block) FROM STDIN"
        ) as copy:
            for device, signal, t, value, unit, quality in rows:
                stored = None if value is None else Json(value, dumps=json_value)
                copy.write_row((device, signal, t, stored, unit, quality, block))

    def _lock_retention(self) -> bool:
        # a session lock: released when the run's connection closes
        row = self._db.execute(f"SELECT pg_try_advisory_lock({RETENTION_LOCK})").fetchone()
        return bool(row[0])

    def _has_table(self, name: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_name = ?",
            (name,),
        ).fetchone()
        return row is not None

"""``labdevices archive``: records up to a date, with the checkpoints that prove them, in one file.

The archive is itself a labdevices store file (same schema, read with the same code):
the audit chain up to the last checkpoint before the cut, those checkpoints, and the
rows of every covered table whose last audit record lies inside that chain, with their
job events, G-code, telemetry and (for retention's removals) roll-ups. ``audit verify --archive FILE --key PUB`` proves it
alone. Rows that changed after the cut are not archived (their current state is not the
one the archived chain recorded); they are listed in ``archive_meta.omitted`` and belong
to a later archive. Nothing is ever deleted from the live store.

A PostgreSQL store is first copied whole, in one snapshot, into a temporary SQLite store
(same schema, same rows, so the same hashes), which is then archived the same way.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ._checkpoints import parse_checkpoint
from ._dialect import POSTGRESQL, Connection
from ._errors import StoreError
from ._keys import fingerprint
from ._paths import is_postgres_url, redact_url
from ._rows import COVERED
from ._sqlite import SqliteDatabase, _iso

__all__ = ["ArchiveSummary", "write_archive", "write_telemetry_archive"]


@dataclass(frozen=True, slots=True)
class ArchiveSummary:
    path: str
    before: str
    checkpoint: int
    records: int
    rows: dict[str, int]
    omitted: list[str]


def _last_changes(src: str, prefix: str) -> str:
    return (
        f"SELECT object, MIN(seq) AS f, MAX(seq) AS m FROM {src}.audit WHERE row_sha256 IS NOT NULL"
        f" AND object >= '{prefix}/' AND object < '{prefix}0' GROUP BY object"
    )


def write_archive(
    db_path: str | Path,
    out: str | Path,
    *,
    before: str,
    public_key: Ed25519PublicKey,
    progress: Callable[[str, int, int], None] | None = None,
    source: str | None = None,
) -> ArchiveSummary:
    """Write the records up to ``before`` (ISO UTC time) of the store at ``db_path`` (a file or
    a PostgreSQL URL) to ``out``.

    The cut is the last checkpoint dated before ``before`` that verifies with ``public_key``.
    """
    tick = progress or (lambda stage, done, total: None)
    if is_postgres_url(db_path):
        with tempfile.TemporaryDirectory(prefix="labdevices-archive-") as tmp:
            snapshot = Path(tmp) / "store.db"
            _copy_postgres(str(db_path), snapshot, tick)
            return write_archive(
                snapshot, out, before=before, public_key=public_key, progress=progress,
                source=redact_url(str(db_path)),
            )  # fmt: skip
    src_path, out_path = Path(db_path), Path(out)
    if out_path.exists():
        raise StoreError("the archive file exists already; choose a new name", file=str(out_path))
    with SqliteDatabase(src_path, readonly=True) as live:
        cut = None
        for number, cp in live.checkpoints():
            if cp.time < before:
                cut = (number, cp)
    if cut is None:
        raise StoreError(f"no checkpoint before {before}: nothing to archive", file=str(src_path))
    number, cp = cut
    parse_checkpoint(cp.note, public_key)  # refuses a cut the key did not sign
    size = cp.size
    with SqliteDatabase(out_path):
        pass  # creates the file with the current schema and its append-only guards
    conn = sqlite3.connect(out_path, isolation_level=None, uri=True)
    try:
        conn.execute("ATTACH DATABASE ? AS src", (f"{src_path.resolve().as_uri()}?mode=ro",))
        conn.execute("BEGIN IMMEDIATE")
        rows: dict[str, int] = {}

        def copy(table: str, where: str, args: tuple[object, ...] = ()) -> None:
            cur = conn.execute(f"INSERT INTO main.{table} SELECT * FROM src.{table} {where}", args)
            rows[table] = rows.get(table, 0) + cur.rowcount
            tick(table, rows[table], 0)

        copy("audit", "WHERE seq <= ?", (size,))
        conn.execute("UPDATE main.audit_head SET seq = ?, hash = ? WHERE id = 1", (size, cp.head))
        copy("checkpoints", "WHERE id <= ?", (number,))
        omitted: list[str] = []
        for table, cov in COVERED.items():
            last = _last_changes("src", cov.prefix)
            copy(
                table,
                f"WHERE '{cov.prefix}/' || {cov.key} IN (SELECT object FROM ({last}) WHERE m <= ?)",
                (size,),
            )
            omitted += [
                r[0]
                for r in conn.execute(
                    f"SELECT object FROM ({last}) WHERE f <= ? AND m > ?", (size, size)
                )
            ]
        copy("job_events", "WHERE job_id IN (SELECT id FROM main.jobs) ORDER BY id")
        copy("job_gcode", "WHERE job_id IN (SELECT id FROM main.jobs)")
        copy("telemetry", "WHERE block IN (SELECT id FROM main.telemetry_blocks) ORDER BY rowid")
        copy(
            "telemetry_rollups",
            "WHERE removal IN (SELECT id FROM main.telemetry_removals) ORDER BY id",
        )
        conn.execute("CREATE TABLE archive_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        meta = {
            "created": _iso(time.time()),
            "before": before,
            "checkpoint": str(number),
            "size": str(size),
            "key_fingerprint": fingerprint(public_key),
            "source": source or str(src_path.resolve()),
            "omitted": json.dumps(omitted),
        }
        conn.executemany("INSERT INTO archive_meta (key, value) VALUES (?, ?)", meta.items())
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE src")
        conn.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()
        out_path.unlink(missing_ok=True)
        raise
    conn.close()
    return ArchiveSummary(str(out_path), before, number, size, rows, omitted)


def _copy_postgres(url: str, out: Path, tick: Callable[[str, int, int], None]) -> None:
    """Every table of the PostgreSQL store at ``url`` into a new SQLite store at ``out``."""
    from ._postgres import connect_postgres

    with SqliteDatabase(out):
        pass  # the schema
    src = connect_postgres(url, readonly=True)
    dst = sqlite3.connect(out, isolation_level=None)
    try:
        src.execute(POSTGRESQL.snapshot)  # one snapshot
        dst.execute("BEGIN IMMEDIATE")
        # The new file's own rows: its head and store id become the source's.
        dst.execute("DELETE FROM audit_head")
        dst.execute("DELETE FROM store_meta")
        tables = [r[0] for r in dst.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            if table == "schema_migrations" or table.startswith("sqlite_"):
                continue
            order = "rowid" if table == "telemetry" else "1"
            _copy_rows(src, dst, table, f"ORDER BY {order}", (), tick)
        dst.execute("COMMIT")
        src.execute("COMMIT")
    finally:
        src.close()
        dst.close()


def _copy_rows(
    src: Connection,
    dst: sqlite3.Connection,
    table: str,
    where: str,
    args: tuple[object, ...],
    tick: Callable[[str, int, int], None] = lambda stage, done, total: None,
) -> None:
    """The rows of ``table`` in PostgreSQL that ``where`` picks, into the SQLite file's table
    of that name, column by column name (their order differs: PostgreSQL's ``telemetry`` has
    its ``rowid`` as a column). Values come back as the store wrote them, so hashes match."""
    columns = [r[1] for r in dst.execute(f"PRAGMA main.table_info({table})")]
    names = ", ".join(columns)
    cur = src.execute(f"SELECT {names} FROM {table} {where}", args)
    insert = f"INSERT INTO main.{table} ({names}) VALUES ({', '.join('?' * len(columns))})"
    n = 0
    while batch := cur.fetchmany(8192):
        dst.executemany(insert, batch)
        n += len(batch)
        tick(f"copy {table}", n, 0)


def write_telemetry_archive(
    db_path: str | Path, out: str | Path, *, blocks: list[int], first_seq: int, checkpoint: int
) -> Path:
    """The telemetry blocks ``blocks`` of the store at ``db_path`` (a file or a PostgreSQL URL;
    rows as they are now) with the segment of the audit chain from ``first_seq`` to checkpoint
    ``checkpoint``, which must cover their last records: ``audit verify --archive`` proves it
    alone (retention). The archive is an SQLite store file either way.

    Read-only on the live store; the file is written whole or not at all.
    """
    out_path = Path(out)
    if out_path.exists():
        raise StoreError("the archive file exists already", file=str(out_path))
    with SqliteDatabase(out_path):
        pass  # creates the file with the current schema and its append-only guards
    conn = sqlite3.connect(out_path, isolation_level=None, uri=True)
    pg: Connection | None = None
    src: Connection
    picked: tuple[object, ...]
    try:
        conn.execute("PRAGMA main.cache_size = -1024")  # beside the daemon: keep it small
        for index in ("telemetry_by_signal", "telemetry_by_block"):  # half the file; verify
            conn.execute(f"DROP INDEX main.{index}")  # reads the rows in order, not by index
        if is_postgres_url(db_path):
            from ._postgres import connect_postgres

            pg = connect_postgres(str(db_path), readonly=True)
            pg.execute(POSTGRESQL.snapshot)
            source = redact_url(str(db_path))
            src, pick, picked = pg, "= ANY(?)", (blocks,)

            def copy(table: str, where: str, args: tuple[object, ...]) -> None:
                assert pg is not None
                _copy_rows(pg, conn, table, where, args)

        else:
            src_path = Path(db_path)
            source = str(src_path.resolve())
            conn.execute("ATTACH DATABASE ? AS src", (f"{src_path.resolve().as_uri()}?mode=ro",))
            conn.execute("PRAGMA src.cache_size = -1024")
            src, pick, picked = conn, "IN (SELECT id FROM temp.pick)", ()

            def copy(table: str, where: str, args: tuple[object, ...]) -> None:
                conn.execute(f"INSERT INTO main.{table} SELECT * FROM src.{table} {where}", args)

        conn.execute("BEGIN IMMEDIATE")
        if pg is None:
            conn.execute("CREATE TEMP TABLE pick (id INTEGER PRIMARY KEY)")
            conn.executemany("INSERT INTO temp.pick (id) VALUES (?)", [(b,) for b in blocks])
        prefix = "" if pg is not None else "src."
        size, head = src.execute(
            f"SELECT size, head FROM {prefix}checkpoints WHERE id = ?", (checkpoint,)
        ).fetchone()
        copy("audit", "WHERE seq >= ? AND seq <= ? ORDER BY seq", (first_seq, size))
        conn.execute("UPDATE main.audit_head SET seq = ?, hash = ? WHERE id = 1", (size, head))
        copy("checkpoints", "WHERE id = ?", (checkpoint,))
        copy("telemetry_blocks", f"WHERE id {pick} ORDER BY id", picked)
        copy("telemetry", f"WHERE block {pick} ORDER BY block, rowid", picked)
        if pg is not None:
            pg.execute("COMMIT")
        conn.execute("CREATE TABLE archive_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        meta = {
            "created": _iso(time.time()),
            "kind": "telemetry",
            "first_seq": str(first_seq),
            "checkpoint": str(checkpoint),
            "size": str(size),
            "source": source,
            "blocks": json.dumps(blocks),
            "omitted": "[]",
        }
        conn.executemany("INSERT INTO archive_meta (key, value) VALUES (?, ?)", meta.items())
        conn.execute("COMMIT")
        if pg is None:
            conn.execute("DETACH DATABASE src")
        conn.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()
        out_path.unlink(missing_ok=True)
        raise
    finally:
        if pg is not None:
            pg.close()
    conn.close()
    return out_path

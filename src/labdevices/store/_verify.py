"""``audit verify``: prove a store (file or PostgreSQL URL) against the daemon's public key and a witness.

Checks, reporting every problem found (table, row, what), not only the first:

- the audit chain: each record's hash, its link to the one before, no gaps, ``audit_head``;
- the checkpoints: signature by the given key, numbering, ``prev`` links, the chain's hash
  at each checkpoint's size equal to the head it signed;
- the witness file: every checkpoint it holds is in the store, unchanged, and the chain
  reaches it (so a store rolled back, cut or wiped shows even if consistent in itself);
- every covered table (jobs, alarms, users, signatures, telemetry blocks): each row's hash
  equals the ``row_sha256`` of the last audit record about it; rows without one were
  inserted outside the store, recorded rows that are gone were deleted;
- job events against ``jobs.events_sha256``, telemetry rows against their block's digest,
  stored G-code against ``jobs.gcode_sha256``, and the append-only triggers.

Records after the last checkpoint are "not yet anchored": verified as a chain but not
against a signature. Rows are streamed, so a large store verifies in bounded memory.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ._audit import GENESIS_HASH
from ._checkpoints import CheckpointError, note_sha256, parse_checkpoint, read_witness
from ._dialect import POSTGRESQL, SQLITE, Connection, Dialect, pg_trigger
from ._errors import StoreError
from ._keys import fingerprint
from ._paths import is_postgres_url, redact_url
from ._rows import COVERED, event_link
from ._schema import MIGRATIONS

__all__ = [
    "EXIT_TAMPERED",
    "EXIT_UNANCHORED",
    "EXIT_VERIFIED",
    "Finding",
    "Progress",
    "StoreReport",
    "verify_store",
]

#: ``audit verify`` exit codes
EXIT_VERIFIED = 0
EXIT_TAMPERED = 1
EXIT_UNANCHORED = 3

#: (stage, done, total) — total 0 when unknown
Progress = Callable[[str, int, int], None]

_MAX_PER_KIND = 50  # findings of one kind listed one by one; the rest are counted

# The encoders of ``canonical_json`` and ``telemetry_digest``, built once (verify calls them
# millions of times); the tests compare their output with those functions'.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
_SAMPLE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: the table and row (or seq range) it is in, and what is wrong."""

    table: str
    row: str
    what: str

    def __str__(self) -> str:
        return f"{self.table} {self.row}: {self.what}"


@dataclass
class StoreReport:
    """What ``verify_store`` found. ``exit_code``: 0 verified, 1 tampered, 3 verified but with
    records not yet anchored by a checkpoint."""

    path: str
    records: int = 0
    head_seq: int = 0
    checkpoints: int = 0
    witnessed: int = 0
    anchored_seq: int = 0
    key_fingerprint: str | None = None
    problems: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    suppressed: dict[str, int] = field(default_factory=dict)
    rows_checked: dict[str, int] = field(default_factory=dict)
    _listed: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def unanchored(self) -> int:
        return max(0, self.head_seq - self.anchored_seq)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.suppressed

    @property
    def exit_code(self) -> int:
        if self.problems:
            return EXIT_TAMPERED
        return EXIT_UNANCHORED if self.unanchored else EXIT_VERIFIED

    def add(self, table: str, row: object, what: str) -> None:
        listed = self._listed.get(table, 0)
        if listed >= _MAX_PER_KIND:
            self.suppressed[table] = self.suppressed.get(table, 0) + 1
            return
        self._listed[table] = listed + 1
        self.problems.append(Finding(table, str(row), what))

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "records": self.records,
            "head_seq": self.head_seq,
            "checkpoints": self.checkpoints,
            "witnessed": self.witnessed,
            "anchored_seq": self.anchored_seq,
            "unanchored": self.unanchored,
            "key_fingerprint": self.key_fingerprint,
            "rows_checked": self.rows_checked,
            "problems": [{"table": p.table, "row": p.row, "what": p.what} for p in self.problems],
            "more_problems": self.suppressed,
            "notes": self.notes,
        }


def _expected_triggers() -> dict[str, str]:
    out: dict[str, str] = {}
    for _, _, statements in MIGRATIONS:
        for sql in statements:
            if not isinstance(sql, str):
                continue
            text = " ".join(sql.split())
            if text.upper().startswith("CREATE TRIGGER"):
                out[text.split()[2]] = text
    return out


def _fast_record_hash(row: tuple[Any, ...]) -> str:
    """``record_hash`` for a raw audit row (same canonical JSON, without the model object)."""
    seq, time, actor, action, obj, old, new, reason, prev_hash, _, row_hash = row
    body: dict[str, Any] = {
        "seq": seq,
        "time": time,
        "actor": actor,
        "action": action,
        "object": obj,
        "old": old,
        "new": new,
        "reason": reason,
        "prev_hash": prev_hash,
    }
    if row_hash is not None:
        body["row_sha256"] = row_hash
    return hashlib.sha256(_CANONICAL.encode(body).encode("utf-8")).hexdigest()


def _fast_row_hash(table: str, row: dict[str, Any], exclude: tuple[str, ...]) -> str:
    """``row_sha256`` without its checks: a row holding NaN or infinity gives "" (no match)."""
    for name in exclude:
        row.pop(name, None)
    try:
        text = _CANONICAL.encode({"table": table, "row": row})
    except ValueError:
        return ""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class _Anchor:
    size: int
    head: str
    label: str  # "checkpoint 4" or "witness checkpoint 4"


def verify_store(
    db_path: str | Path,
    *,
    public_key: Ed25519PublicKey | None,
    witness: str | Path | None = None,
    progress: Progress | None = None,
    archive: bool = False,
) -> StoreReport:
    """Verify everything in the store file at ``db_path`` (read-only; safe beside the daemon).

    ``public_key`` must come from outside the database; without it, checkpoints are not
    trusted and every record counts as not yet anchored. ``archive``: the file is an
    archive (``labdevices archive``): rows that changed after its cut are absent by design.
    """
    if is_postgres_url(db_path):
        return _verify_postgres(
            str(db_path), public_key=public_key, witness=witness, progress=progress
        )
    path = Path(db_path)
    if not path.is_file():
        raise StoreError("no store here (file not found)", file=str(path))
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open: {exc}", file=str(path)) from exc
    try:
        conn.execute("BEGIN")  # one snapshot, even while the daemon appends
        try:
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                "not a labdevices store (the file is not an SQLite database)", file=str(path)
            ) from exc
        report = _verify(
            conn, SQLITE, str(path), tables, public_key, witness, progress, archive=archive
        )
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read: {exc}", file=str(path)) from exc
    finally:
        conn.close()
    return report


def _verify_postgres(
    url: str,
    *,
    public_key: Ed25519PublicKey | None,
    witness: str | Path | None,
    progress: Progress | None,
) -> StoreReport:
    import psycopg

    from ._postgres import connect_postgres

    label = redact_url(url)
    conn = connect_postgres(url, readonly=True)
    try:
        conn.execute(POSTGRESQL.snapshot)  # one snapshot, even while daemons append
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema()"
            )
        }
        report = _verify(conn, POSTGRESQL, label, tables, public_key, witness, progress)
        conn.execute("COMMIT")
    except psycopg.Error as exc:
        raise StoreError(f"cannot read: {' '.join(str(exc).split())}", file=label) from None
    finally:
        conn.close()
    return report


def _verify(
    conn: Connection,
    dialect: Dialect,
    label: str,
    tables: set[str],
    public_key: Ed25519PublicKey | None,
    witness: str | Path | None,
    progress: Progress | None,
    *,
    archive: bool = False,
) -> StoreReport:
    report = StoreReport(label)
    if public_key is not None:
        report.key_fingerprint = fingerprint(public_key)
    tick = progress or (lambda stage, done, total: None)
    needed = {"audit", "audit_head", "checkpoints", *COVERED, "job_events", "telemetry"}
    if "schema_migrations" not in tables:
        raise StoreError("not a labdevices store (no schema_migrations table)", file=label)
    version = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
    if (version or 0) < 4:  # before retention (schema 4): no removals, no roll-ups
        needed.discard("telemetry_removals")
    else:
        needed.add("telemetry_rollups")
    missing = sorted(needed - tables)
    for table in missing:
        report.add(table, "(table)", "the table is missing (dropped)")
    if missing:
        return report
    omitted: set[str] = set()
    segment = None
    if archive:
        omitted, segment = _archive_omitted(conn, report, tables)
    if dialect is SQLITE:
        _check_triggers(conn, report)
    else:
        _check_pg_triggers(conn, report)
    anchors, last_closed = _check_checkpoints(conn, report, public_key, segment is not None)
    if witness is not None:
        anchors += _check_witness(conn, report, public_key, Path(witness))
    _check_chain(conn, report, anchors, last_closed, public_key is not None, tick, segment)
    removed = _Removed(conn, report) if "telemetry_removals" in tables else None
    for table in COVERED:
        if table in tables:
            _check_covered(
                conn,
                dialect,
                report,
                table,
                tick,
                omitted=omitted,
                segment=segment,
                removed=removed,
            )
    if removed is not None:
        removed.finish()
        _check_rollups(conn, report, tick)
    if segment is not None:
        _check_archived_blocks(conn, report, segment)
    _check_events(conn, report, tick)
    _check_telemetry(conn, report, tick)
    _check_gcode(conn, dialect, report)
    if public_key is None:
        report.notes.append(
            "no public key given: checkpoints not checked, every record counts as unanchored"
        )
    return report


# -- the pieces --------------------------------------------------------------------------------


def _check_triggers(conn: Connection, report: StoreReport) -> None:
    have = {
        name: " ".join((sql or "").split())
        for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
    }
    for name, sql in _expected_triggers().items():
        table = sql.split(" ON ")[1].split()[0]
        if name not in have:
            report.add(
                "sqlite_master", f"trigger {name}", f"the append-only guard on {table} was dropped"
            )
        elif have[name] != sql:
            report.add(
                "sqlite_master", f"trigger {name}", f"the append-only guard on {table} was changed"
            )


def _check_pg_triggers(conn: Connection, report: StoreReport) -> None:
    """The append-only guards as PostgreSQL holds them: each trigger present, enabled, on its
    table, calling its function, which still raises."""
    have = {
        name: (table, enabled, function, " ".join(str(src).split()))
        for name, table, enabled, function, src in conn.execute(
            "SELECT t.tgname, c.relname, t.tgenabled, p.proname, p.prosrc FROM pg_trigger t"
            " JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid"
            " WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace"
        )
    }
    for sql in _expected_triggers().values():
        guard = pg_trigger(sql)
        assert guard is not None
        names = [guard.name] + ([f"{guard.name}_truncate"] if guard.event == "DELETE" else [])
        for name in names:
            got = have.get(name)
            if got is None:
                what = "dropped"
            elif got[0] != guard.table or got[2] != guard.function:
                what = "changed"
            elif got[1] != "O":
                what = "disabled"
            elif got[3] != " ".join(guard.body.split()):
                what = "changed (its function no longer refuses)"
            else:
                continue
            report.add(
                "pg_trigger",
                f"trigger {name}",
                f"the append-only guard on {guard.table} was {what}",
            )


def _check_checkpoints(
    conn: Connection,
    report: StoreReport,
    public: Ed25519PublicKey | None,
    segment: bool = False,
) -> tuple[list[_Anchor], tuple[int, int] | None]:
    """Anchors from the store's own checkpoints, and (number, size) of the last if ``closed``.

    ``segment``: a retention archive, whose checkpoints start at its cut, not at 1."""
    anchors: list[_Anchor] = []
    prev_note: str | None = None
    prev_size = 0
    expected = 1
    origin: str | None = None
    last_closed: tuple[int, int] | None = None
    rows = conn.execute(
        "SELECT id, size, head, time, prev, note FROM checkpoints ORDER BY id"
    ).fetchall()
    if segment and rows:
        expected = rows[0][0]
    for number, size, head, time, prev, note in rows:
        report.checkpoints += 1
        where = f"row {number}"
        if number != expected:
            report.add(
                "checkpoints",
                where,
                f"checkpoints {expected}–{number - 1} are missing (deleted)"
                if number > expected
                else "out of sequence",
            )
        expected = number + 1
        try:
            cp = parse_checkpoint(note, public)
        except CheckpointError as exc:
            report.add("checkpoints", where, f"invalid checkpoint: {exc.message}")
            prev_note = note
            continue
        if (cp.size, cp.head, cp.time, cp.prev) != (size, head, time, prev):
            report.add("checkpoints", where, "its columns differ from the signed note")
        if origin is not None and cp.origin != origin:
            report.add("checkpoints", where, f"origin {cp.origin!r} differs from {origin!r}")
        origin = origin or cp.origin
        want_prev = GENESIS_HASH if prev_note is None else note_sha256(prev_note)
        if cp.prev != want_prev and not (segment and prev_note is None):
            report.add(
                "checkpoints", where, "does not follow the checkpoint before it (prev link broken)"
            )
        if cp.size < prev_size:
            report.add("checkpoints", where, f"size {cp.size} goes back from {prev_size}")
        prev_note, prev_size = note, cp.size
        if public is not None:
            anchors.append(_Anchor(cp.size, cp.head, f"checkpoint {number}"))
        last_closed = (number, cp.size) if cp.state == "closed" else None
    if rows and public is None:
        last_closed = None  # unsigned claims prove nothing either way
    return anchors, last_closed


def _check_witness(
    conn: Connection, report: StoreReport, public: Ed25519PublicKey | None, path: Path
) -> list[_Anchor]:
    anchors: list[_Anchor] = []
    stored = dict(conn.execute("SELECT id, note FROM checkpoints").fetchall())
    prev_note: str | None = None
    last_n = 0
    for n, note in read_witness(path):
        report.witnessed += 1
        try:
            cp = parse_checkpoint(note, public)
        except CheckpointError as exc:
            report.notes.append(f"witness {path}: checkpoint {n} ignored: {exc.message}")
            continue
        if n <= last_n or (
            prev_note is not None and n == last_n + 1 and cp.prev != note_sha256(prev_note)
        ):
            report.notes.append(f"witness {path}: checkpoint {n} does not extend the one before it")
        prev_note, last_n = note, n
        mine = stored.get(n)
        if mine is None:
            report.add(
                "checkpoints",
                f"row {n}",
                f"missing: the witness holds checkpoint {n} (size {cp.size}, {cp.time}) — the store "
                "was rolled back, cut or wiped",
            )
        elif mine != note:
            report.add(
                "checkpoints",
                f"row {n}",
                f"differs from the witness's checkpoint {n} (size {cp.size}, {cp.time})",
            )
        if public is not None:
            anchors.append(_Anchor(cp.size, cp.head, f"witness checkpoint {n}"))
    if report.witnessed == 0:
        report.notes.append(f"witness {path} holds no checkpoints")
    return anchors


def _check_chain(
    conn: Connection,
    report: StoreReport,
    anchors: list[_Anchor],
    last_closed: tuple[int, int] | None,
    keyed: bool,
    tick: Progress,
    segment: int | None = None,
) -> None:
    """``segment``: the chain starts at that seq (a retention archive), from its stored prev_hash;
    the checkpoint at its end proves the records in between."""
    by_size: dict[int, list[_Anchor]] = {}
    for a in anchors:
        by_size.setdefault(a.size, []).append(a)
    total = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM audit").fetchone()[0]
    prev_hash = GENESIS_HASH
    expected = 1
    if segment is not None:
        first = conn.execute("SELECT prev_hash FROM audit WHERE seq = ?", (segment,)).fetchone()
        if first is None:
            report.add("audit", f"seq {segment}", "deleted: the archive's first record is missing")
        else:
            prev_hash, expected = first[0], segment
    last_good_anchor = 0
    mismatch_start: tuple[int, _Anchor] | None = None  # first anchor the chain failed
    mismatched: set[int] = set()  # sizes of the signed heads the chain does not match
    good_anchored = 0
    count = 0
    cur = conn.execute(
        "SELECT seq, time, actor, action, object, old_value, new_value, reason, prev_hash, hash,"
        " row_sha256 FROM audit ORDER BY seq"
    )
    while True:
        batch = cur.fetchmany(4096)
        if not batch:
            break
        for row in batch:
            seq, rec_hash, rec_prev = row[0], row[9], row[8]
            count += 1
            if seq != expected:
                if seq > expected:
                    span = f"{expected}" if seq == expected + 1 else f"{expected}–{seq - 1}"
                    report.add("audit", f"seq {span}", "deleted: the chain jumps over it")
                expected = seq
            if _fast_record_hash(row) != rec_hash:
                report.add(
                    "audit",
                    f"seq {seq}",
                    f"edited: its content no longer matches its hash ({row[3]} on {row[4]} "
                    f"by {row[2]})",
                )
            elif rec_prev != prev_hash:
                report.add(
                    "audit",
                    f"seq {seq}",
                    f"does not follow seq {seq - 1} (prev_hash differs): inserted, moved, or "
                    f"seq {seq - 1} rewritten",
                )
            for anchor in by_size.get(seq, ()):
                if anchor.head == rec_hash:
                    last_good_anchor = max(last_good_anchor, seq)
                    good_anchored = max(good_anchored, seq)
                else:
                    mismatched.add(seq)
                    if mismatch_start is None:
                        mismatch_start = (last_good_anchor, anchor)
            prev_hash = rec_hash
            expected = seq + 1
        tick("audit chain", count, total)
    last_seq = expected - 1
    report.records = count
    report.head_seq = last_seq
    if segment is not None and last_seq >= segment:
        report.notes.append(f"audit records {segment}–{last_seq} (a segment of the chain)")
    if mismatch_start is not None:
        after, anchor = mismatch_start
        later = len(mismatched) - 1
        more = f" (and {later} later checkpoint(s) do not match either)" if later else ""
        report.add(
            "audit",
            f"seq {after + 1}–{anchor.size}",
            f"rewritten: the chain's hash at seq {anchor.size} is not the head signed by "
            f"{anchor.label}; a record in this range was edited, deleted or inserted and the "
            f"hashes after it recomputed{more}",
        )
    beyond = [a for a in anchors if a.size > last_seq]
    if beyond:
        top = max(beyond, key=lambda a: a.size)
        report.add(
            "audit",
            f"seq {last_seq + 1}–{top.size}",
            f"deleted: {top.label} signed {top.size} records but the chain ends at seq {last_seq}",
        )
    if 0 in by_size and any(a.head != GENESIS_HASH for a in by_size[0]):
        report.add("checkpoints", "size 0", "head of an empty chain is not the genesis hash")
    head = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
    if head is None:
        report.add("audit_head", "row 1", "deleted")
    elif (head[0], head[1]) != (last_seq, prev_hash):
        report.add(
            "audit_head",
            "row 1",
            f"names seq {head[0]} but the chain ends at seq {last_seq}"
            if head[0] != last_seq
            else f"hash differs from that of seq {last_seq}",
        )
    report.anchored_seq = min(good_anchored, last_seq) if keyed else 0
    if last_closed is not None and last_seq > last_closed[1]:
        number, size = last_closed
        report.add(
            "audit",
            f"seq {size + 1}–{last_seq}",
            f"appended after the store was closed (checkpoint {number}): not written by labdevices",
        )


def _archive_omitted(
    conn: Connection, report: StoreReport, tables: set[str]
) -> tuple[set[str], int | None]:
    """Objects the archive left out on purpose (changed after its cut), and the first seq of
    its chain if it holds a segment (a retention archive of telemetry blocks)."""
    if "archive_meta" not in tables:
        report.add("archive_meta", "(table)", "missing: not a labdevices archive")
        return set(), None
    meta = dict(conn.execute("SELECT key, value FROM archive_meta").fetchall())
    segment = None
    if meta.get("kind") == "telemetry":
        try:
            segment = int(meta["first_seq"])
        except (KeyError, ValueError):
            report.add("archive_meta", "first_seq", "missing or not a number")
            segment = 1
        report.notes.append(
            f"retention archive of telemetry blocks (audit records {segment}–{meta.get('size')}, "
            f"checkpoint {meta.get('checkpoint')})"
        )
    else:
        report.notes.append(
            f"archive of records before {meta.get('before')} (checkpoint "
            f"{meta.get('checkpoint')}, {meta.get('size')} records, key "
            f"{meta.get('key_fingerprint')})"
        )
    try:
        return set(json.loads(meta.get("omitted", "[]"))), segment
    except ValueError:
        report.add("archive_meta", "omitted", "not a JSON list")
        return set(), segment


def _check_archived_blocks(conn: Connection, report: StoreReport, segment: int) -> None:
    """A retention archive holds every block its meta lists (each verified like any block)."""
    text = conn.execute("SELECT value FROM archive_meta WHERE key = 'blocks'").fetchone()
    try:
        listed = set(json.loads(text[0])) if text is not None else set()
    except ValueError:
        report.add("archive_meta", "blocks", "not a JSON list")
        return
    have = {r[0] for r in conn.execute("SELECT id FROM telemetry_blocks")}
    for block in sorted(listed - have):
        report.add("telemetry_blocks", f"row {block}", "deleted: the archive lists it")
    for block in sorted(have - listed):
        report.add("telemetry_blocks", f"row {block}", "not listed in archive_meta.blocks")


def _check_covered(
    conn: Connection,
    dialect: Dialect,
    report: StoreReport,
    table: str,
    tick: Progress,
    *,
    omitted: set[str],
    segment: int | None = None,
    removed: _Removed | None = None,
) -> None:
    """Each row against the last audit record about it: a merge of two sorted streams (the
    table by key, the last record per object by key), so memory does not grow with the table.

    A telemetry block a retention step removed is gone legitimately (``removed``); a segment
    archive holds only some of the rows its records are about."""
    cov = COVERED[table]
    prefix = cov.prefix + "/"
    numeric = table != "users"  # every other covered table has an INTEGER PRIMARY KEY
    key_sql = f"substr(m.object, {len(prefix) + 1})"
    if numeric:
        key_sql = dialect.integer(key_sql)
    recorded = conn.execute(
        f"SELECT {key_sql} AS k, a.row_sha256, a.seq FROM (SELECT object, MAX(seq) AS seq"
        " FROM audit WHERE row_sha256 IS NOT NULL AND object >= ? AND object < ?"
        " GROUP BY object) m JOIN audit a ON a.seq = m.seq ORDER BY k",
        (prefix, cov.prefix + "0"),
    )
    rec = recorded.fetchone()
    cur = conn.execute(f"SELECT * FROM {table} ORDER BY {cov.key}")
    names = [d[0] for d in cur.description]
    key_at = names.index(cov.key)

    blocks = removed if table == "telemetry_blocks" else None

    def deleted(r: tuple[Any, str, int]) -> None:
        if segment is not None or f"{prefix}{r[0]}" in omitted:
            return
        if blocks is not None and blocks.gone(r[0], r[1]):
            return
        report.add(table, f"row {r[0]}", f"deleted: audit record seq {r[2]} recorded it")

    n = 0
    while True:
        batch = cur.fetchmany(2048)
        if not batch:
            break
        for values in batch:
            n += 1
            key = values[key_at]
            while rec is not None and rec[0] < key:
                deleted(rec)
                rec = recorded.fetchone()
            if rec is None or rec[0] != key:
                report.add(table, f"row {key}", "has no audit record: inserted outside the store")
                continue
            if blocks is not None and blocks.removal_of(key) is not None:
                report.add(
                    table,
                    f"row {key}",
                    f"telemetry-removal/{blocks.removal_of(key)} records it as removed, yet it "
                    "is here (put back?)",
                )
            actual = _fast_row_hash(table, dict(zip(names, values, strict=True)), cov.exclude)
            if actual != rec[1]:
                report.add(
                    table,
                    f"row {key}",
                    f"changed: it no longer matches its last audit record (seq {rec[2]})",
                )
            rec = recorded.fetchone()
        tick(table, n, 0)
    while rec is not None:
        deleted(rec)
        rec = recorded.fetchone()
    report.rows_checked[table] = n


class _Removed:
    """The telemetry blocks retention removed (id ranges per removal), and each removal's
    ``blocks_sha256`` recomputed from the row hashes the chain last recorded for them."""

    def __init__(self, conn: Connection, report: StoreReport) -> None:
        self._report = report
        self._ranges: list[tuple[int, int, int]] = []  # (first, last, removal)
        self._want: dict[int, str] = {}
        self._hash: dict[int, Any] = {}
        for removal, text, want in conn.execute(
            "SELECT id, blocks, blocks_sha256 FROM telemetry_removals ORDER BY id"
        ):
            self._want[removal] = want
            self._hash[removal] = hashlib.sha256()
            try:
                spans = json.loads(text)
                self._ranges += [(int(a), int(b), removal) for a, b in spans]
            except (ValueError, TypeError):
                report.add("telemetry_removals", f"row {removal}", "blocks is not a list of ranges")
        self._ranges.sort()
        self._starts = [r[0] for r in self._ranges]

    def removal_of(self, block: int) -> int | None:
        i = bisect.bisect_right(self._starts, block) - 1
        if i >= 0 and self._ranges[i][0] <= block <= self._ranges[i][1]:
            return self._ranges[i][2]
        return None

    def gone(self, block: int, recorded: str) -> bool:
        """True if a removal names ``block`` (blocks arrive in id order, as they were hashed)."""
        removal = self.removal_of(block)
        if removal is None:
            return False
        self._hash[removal].update(f"{block} {recorded}\n".encode())
        return True

    def finish(self) -> None:
        for removal, want in self._want.items():
            if self._hash[removal].hexdigest() != want:
                self._report.add(
                    "telemetry_removals",
                    f"row {removal}",
                    "the blocks it names are not those it removed (their recorded hashes differ "
                    "from blocks_sha256): a block was deleted outside retention or put back",
                )


def _check_rollups(conn: Connection, report: StoreReport, tick: Progress) -> None:
    """Each removal's roll-up rows against its ``rollups_sha256`` (and rows of no removal)."""
    want = dict(conn.execute("SELECT id, rollups_sha256 FROM telemetry_removals").fetchall())
    cur = conn.execute(
        "SELECT removal, device, signal, minute, unit, count, numeric, min, mean, max, t_first,"
        " t_last FROM telemetry_rollups ORDER BY removal, id"
    )
    hashes: dict[int, Any] = {}
    n = 0
    for removal, *row in cur:
        n += 1
        h = hashes.get(removal)
        if h is None:
            h = hashes[removal] = hashlib.sha256()
        h.update(_SAMPLE.encode(row).encode() + b"\n")
    report.rows_checked["telemetry_rollups"] = n
    empty = hashlib.sha256().hexdigest()
    for removal, digest in want.items():
        got = hashes.pop(removal, None)
        if (got.hexdigest() if got is not None else empty) != digest:
            report.add(
                "telemetry_rollups",
                f"removal {removal}",
                "roll-up rows were edited, deleted or inserted (their digest differs from "
                "telemetry_removals.rollups_sha256)",
            )
    for removal in sorted(hashes):
        report.add(
            "telemetry_rollups", f"removal {removal}", "roll-ups of a removal that does not exist"
        )
    tick("telemetry roll-ups", n, n)


def _check_events(conn: Connection, report: StoreReport, tick: Progress) -> None:
    stored = dict(conn.execute("SELECT id, events_sha256 FROM jobs").fetchall())
    computed: dict[int, str] = {}
    cur = conn.execute("SELECT job_id, t, kind, payload FROM job_events ORDER BY job_id, id")
    n = 0
    for job_id, t, kind, payload in cur:
        n += 1
        computed[job_id] = event_link(computed.get(job_id, GENESIS_HASH), job_id, t, kind, payload)
    report.rows_checked["job_events"] = n
    for job_id, want in stored.items():
        if computed.pop(job_id, GENESIS_HASH) != want:
            report.add(
                "job_events",
                f"job {job_id}",
                "the job's events were edited, deleted or inserted (their running hash differs "
                "from jobs.events_sha256)",
            )
    for job_id in sorted(computed):
        report.add("job_events", f"job {job_id}", "events of a job that does not exist")
    tick("job events", n, n)


def _runs(conn: Connection, report: StoreReport) -> Iterator[tuple[int, str, int]]:
    """(block, digest, rows) of each contiguous run of telemetry rows, in rowid order."""
    cur = conn.execute(
        "SELECT rowid, block, device, signal, t, value, unit, quality FROM telemetry ORDER BY rowid"
    )
    block: int | None = None
    h = hashlib.sha256()
    rows = 0
    done: set[int] = set()
    while True:
        batch = cur.fetchmany(8192)
        if not batch:
            break
        for rowid, b, *sample in batch:
            if b is None:
                report.add(
                    "telemetry", f"rowid {rowid}", "belongs to no block: inserted outside the store"
                )
                continue
            if b != block:
                if block is not None:
                    done.add(block)
                    yield block, h.hexdigest(), rows
                if b in done:
                    report.add(
                        "telemetry",
                        f"rowid {rowid}",
                        f"row of block {b} out of place (moved or inserted)",
                    )
                block, h, rows = b, hashlib.sha256(), 0
            h.update(_SAMPLE.encode(sample).encode() + b"\n")
            rows += 1
    if block is not None:
        yield block, h.hexdigest(), rows


def _check_telemetry(conn: Connection, report: StoreReport, tick: Progress) -> None:
    blocks = conn.execute("SELECT id, sha256 FROM telemetry_blocks ORDER BY id")
    total = conn.execute("SELECT COUNT(*) FROM telemetry_blocks").fetchone()[0]
    runs = _runs(conn, report)
    run = next(runs, None)
    n = 0
    for block_id, digest in blocks:
        n += 1
        while run is not None and run[0] < block_id:
            report.add(
                "telemetry", f"block {run[0]}", f"{run[2]} rows of a block that does not exist"
            )
            run = next(runs, None)
        if run is not None and run[0] == block_id:
            if run[1] != digest:
                report.add(
                    "telemetry",
                    f"block {block_id}",
                    "rows were edited, deleted or inserted (their digest differs from "
                    "telemetry_blocks.sha256)",
                )
            run = next(runs, None)
        else:
            empty = hashlib.sha256().hexdigest()
            if digest != empty:
                report.add("telemetry", f"block {block_id}", "every row of the block was deleted")
        if n % 4096 == 0:
            tick("telemetry", n, total)
    while run is not None:
        report.add("telemetry", f"block {run[0]}", f"{run[2]} rows of a block that does not exist")
        run = next(runs, None)
    tick("telemetry", n, total)


def _check_gcode(conn: Connection, dialect: Dialect, report: StoreReport) -> None:
    for job_id, gcode, want in conn.execute(
        "SELECT g.job_id, g.gcode, j.gcode_sha256 FROM job_gcode g LEFT JOIN jobs j ON j.id = g.job_id"
    ):
        if hashlib.sha256(str(gcode).encode("utf-8")).hexdigest() != want:
            report.add(
                "job_gcode", f"row {job_id}", "the G-code differs from jobs.gcode_sha256 of its job"
            )
    # Jobs whose (hash-chained) creation event says their G-code was stored with them.
    for (job_id,) in conn.execute(
        "SELECT e.job_id FROM job_events e LEFT JOIN job_gcode g ON g.job_id = e.job_id"
        f" WHERE e.kind = 'created' AND {dialect.json_true('e.payload', 'gcode_stored')}"
        " AND g.job_id IS NULL ORDER BY e.job_id"
    ):
        report.add(
            "job_gcode", f"row {job_id}", "deleted: the job was created with its G-code stored"
        )

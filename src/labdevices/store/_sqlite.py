"""The synchronous SQLite store: one connection, explicit transactions, the audit chain.

``SqliteStore`` runs it on one writer thread for the daemon; the CLI and scripts
use it directly. Every audited change is written in the same transaction as its
audit record, so either both are on disk or neither is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from ..errors import JobRejected, LabDeviceError
from ._audit import GENESIS_HASH, VerifyResult, canonical_json, record_hash, verify_chain
from ._checkpoints import (
    Checkpoint,
    CheckpointError,
    CheckpointSigner,
    CheckpointState,
    append_witness,
    default_witness_path,
    note_sha256,
    parse_checkpoint,
    read_witness,
)
from ._dialect import SQLITE, Connection, Dialect
from ._errors import InvalidTransition, StoreError
from ._identity import AuthPolicy, IdentityMethods
from ._leases import LeaseMethods
from ._models import (
    TERMINAL_STATES,
    TRANSITIONS,
    AlarmRecord,
    AuditRecord,
    JobEvent,
    JobRecord,
    JobState,
    SampleLike,
    Severity,
    TelemetryPoint,
)
from ._rows import (
    event_link,
    job_content_sha256,
    object_of,
    read_row,
    row_sha256,
    telemetry_digest,
)
from ._schema import MIGRATIONS, SCHEMA_VERSION
from ._signatures import SignatureRecord, SignatureResult, add_signature, list_signatures

__all__ = ["RollupPoint", "SignalSummary", "SqliteDatabase", "verify_audit"]

log = logging.getLogger("labdevices.store")

_SEVERITIES = ("info", "warning", "critical")
_JOB_COLUMNS = (
    "id, printer, state, batch_id, patient_id, bioinks, gcode_sha256, lines_total,"
    " last_ack_line, created_at, started_at, ended_at, error, name, submitted_by, profile,"
    " spec, content_sha256, release_required, events_sha256"
)
_ALARM_COLUMNS = (
    "id, device, name, severity, raised_at, cleared_at, acknowledged_at, acknowledged_by, reason"
)
_AUDIT_COLUMNS = (
    "seq, time, actor, action, object, old_value, new_value, reason, prev_hash, hash, row_sha256"
)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class SignalSummary:
    """Statistics of one signal over a time range (``min``/``max``/``mean`` of numeric values)."""

    device: str
    signal: str
    unit: str
    count: int
    first_t: float
    last_t: float
    min: float | None
    max: float | None
    mean: float | None


class SqliteDatabase(IdentityMethods, LeaseMethods):
    """A labdevices store in one SQLite file (WAL mode).

    Use as a context manager. ``readonly=True`` opens an existing store without
    creating, migrating or writing anything (``labdevices audit verify``, ``jobs``).
    Not thread-safe: one thread owns an instance.

    Its code is the store's logic for both databases: ``PostgresDatabase`` (``_postgres.py``)
    overrides only how it connects, opens transactions and reports errors, and ``dialect``
    spells the few expressions that differ.

    With a ``signer`` (the daemon's key), the store writes signed checkpoints of the
    audit chain: one when it opens (``open``), then whenever ``checkpoint_every_records``
    records or ``checkpoint_every_s`` seconds have passed since the last (checked after
    each commit), whenever ``checkpoint()`` is called (at every job end), and one when it
    closes (``closed``). Each is its own durable transaction, signing the head as
    committed, then appended to the ``witness`` file (default ``<db>.witness``) and
    handed to ``on_checkpoint``.
    """

    dialect: Dialect = SQLITE

    def __init__(
        self,
        path: str | Path,
        *,
        readonly: bool = False,
        auth_policy: AuthPolicy | None = None,
        signer: CheckpointSigner | None = None,
        witness: str | Path | None = None,
        checkpoint_every_records: int = 256,
        checkpoint_every_s: float = 10.0,
        on_checkpoint: Callable[[int, Checkpoint], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.label = str(self.path)  # names the store in errors
        self.location: str | Path = self.path  # what open_database/verify_store take
        self.readonly = readonly
        self.auth_policy = auth_policy or AuthPolicy()
        self._conn: Connection | None = None
        self._synchronous = ""
        if signer is not None and readonly:
            raise StoreError("a read-only store cannot write checkpoints", file=self.label)
        if checkpoint_every_records < 1 or checkpoint_every_s <= 0:
            raise StoreError("checkpoint cadence must be >= 1 record and > 0 s")
        self.signer = signer
        self.witness = Path(witness) if witness is not None else default_witness_path(self.path)
        self.checkpoint_every_records = checkpoint_every_records
        self.checkpoint_every_s = checkpoint_every_s
        self.on_checkpoint = on_checkpoint
        self._head_seq: int | None = None  # as of the last commit (None: read it again)
        self._anchored_seq = 0  # size of the last checkpoint
        self._anchored_at = 0.0  # time.monotonic() of the last checkpoint
        self._checkpointing = False
        self._checkpoints_on = False  # set once the store's checkpoints were found sound

    # -- lifecycle -------------------------------------------------------------

    def open(self) -> Self:
        if self._conn is not None:
            raise StoreError("store is already open", file=self.label)
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def _open(self) -> None:
        with self._errors():
            if self.readonly:
                if not self.path.is_file():
                    raise StoreError("no store here (file not found)", file=self.label)
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                self._conn = sqlite3.connect(uri, uri=True, isolation_level=None)
                self._check_schema()
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(self.path, isolation_level=None)
                self._configure()
                self._migrate()
                # After migrating: a migration may rebuild a table that others reference.
                self._conn.execute("PRAGMA foreign_keys=ON")
                if self.signer is not None:
                    self._start_checkpoints()

    def close(self) -> None:
        if self._conn is not None:
            if self._checkpoints_on and not self._conn.in_transaction:
                try:
                    self.checkpoint(state="closed", force=True)
                except Exception as exc:  # the store still closes; the tail stays unanchored
                    log.error("%s: no closing checkpoint: %s", self.label, exc)
            self._checkpoints_on = False
            conn, self._conn = self._conn, None
            conn.close()

    def __enter__(self) -> Self:
        try:
            return self.open()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def _db(self) -> Connection:
        if self._conn is None:
            raise StoreError("store is not open", file=self.label)
        return self._conn

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """SQLite failures become ``StoreError`` naming the file."""
        try:
            yield
        except sqlite3.Error as exc:
            reason = str(exc)
            if "not a database" in reason:
                reason = "not a labdevices store (the file is not an SQLite database)"
            raise StoreError(reason, file=self.label) from exc
        except OSError as exc:
            raise StoreError(f"cannot open: {exc}", file=self.label) from exc

    def _configure(self) -> None:
        db = self._db
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"cannot switch to WAL mode (got {mode!r})", file=self.label)
        db.execute("PRAGMA busy_timeout=5000")

    def _migrate(self) -> None:
        db = self._db
        with self._tx(durable=True):
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            current = db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"
            ).fetchone()[0]
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"schema version {current} is newer than this labdevices understands "
                    f"({SCHEMA_VERSION}); upgrade labdevices",
                    file=self.label,
                )
            for version, description, statements in MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    if sql := self.dialect.ddl(statement):
                        db.execute(sql)
                db.execute(
                    "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                    (version, description, _iso(time.time())),
                )

    def _lock_retention(self) -> bool:
        """Whether this connection may run telemetry retention now. SQLite: yes (each step is
        checked under its own write lock); PostgreSQL: unless another run holds it."""
        return True

    def _has_table(self, name: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return row is not None

    def _check_schema(self) -> None:
        if not self._has_table("schema_migrations"):
            raise StoreError("not a labdevices store (no schema_migrations table)", file=self.label)
        version = self._db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
        if version is None or version > SCHEMA_VERSION:
            raise StoreError(
                f"schema version {version} is not one this labdevices understands ({SCHEMA_VERSION})",
                file=self.label,
            )
        # Read-only, not migrated: queries find no roll-ups (a temporary table). PostgreSQL
        # stores begin at schema 5 (a read-only transaction there cannot create one anyway).
        if version < 4 and self.dialect.name == "sqlite":
            ddl = next(
                q
                for v, _, qs in MIGRATIONS
                if v == 4
                for q in qs
                if isinstance(q, str) and "telemetry_rollups (" in q
            )
            temp = ddl.replace("CREATE TABLE", "CREATE TEMP TABLE", 1)
            self._db.execute(self.dialect.ddl(temp))

    @property
    def schema_version(self) -> int:
        with self._errors():
            return int(self._db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0])

    @property
    def store_id(self) -> str | None:
        """The store's random id, made when it was created (None: a store older than schema 3,
        opened read-only). Job ids restart in a new store; this id tells them apart."""
        with self._errors():
            if not self._has_table("store_meta"):
                return None
            row = self._db.execute("SELECT value FROM store_meta WHERE key = 'store_id'").fetchone()
        return None if row is None else str(row[0])

    @contextmanager
    def _tx(self, *, durable: bool) -> Iterator[Connection]:
        """One write transaction, taken with the write lock up front so the audit chain cannot fork.

        ``durable`` writes (audit records, job and alarm changes) commit with
        ``synchronous=FULL``: the WAL is fsynced before COMMIT returns, so anything
        acknowledged survives a power cut. Bulk writes (telemetry, progress lines)
        use ``NORMAL``, which in WAL mode is still safe against a killed process and
        never corrupts the file; a power cut may lose their last moments, and the
        next durable commit's fsync covers them as well.
        """
        if self.readonly:
            raise StoreError("store was opened read-only", file=self.label)
        with self._errors():
            db = self._db
            self._begin_write(db, durable=durable)
        try:
            with self._errors():
                yield db
        except BaseException:
            self._head_seq = None
            self._rollback()
            raise
        with self._errors():
            db.execute("COMMIT")
        if self._checkpoints_on and not self._checkpointing:
            self._checkpoint_if_due()

    def _begin_write(self, db: Connection, *, durable: bool) -> None:
        want = "FULL" if durable else "NORMAL"
        if self._synchronous != want:
            db.execute(f"PRAGMA synchronous={want}")
            self._synchronous = want
        db.execute("BEGIN IMMEDIATE")

    def _rollback(self) -> None:
        if self._conn is not None and self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    # -- checkpoints -------------------------------------------------------------

    def _start_checkpoints(self) -> None:
        """Check the last checkpoint against our key and the chain, bring the witness file up to
        date, and write the ``open`` checkpoint."""
        assert self.signer is not None
        db = self._db
        with self._errors():
            last = db.execute(
                "SELECT id, size, head, note FROM checkpoints ORDER BY id DESC LIMIT 1"
            ).fetchone()
            head_seq = db.execute("SELECT seq FROM audit_head WHERE id = 1").fetchone()[0]
        if last is not None:
            number, size, head, note = last
            try:
                cp = parse_checkpoint(note, self.signer.public)
            except CheckpointError as exc:
                raise StoreError(
                    f"checkpoint {number} was not signed by this daemon's key ({exc.message}); "
                    "the key file is not the one that signed this store",
                    file=self.label,
                ) from None
            at = db.execute("SELECT hash FROM audit WHERE seq = ?", (size,)).fetchone()
            if size > 0 and (at is None or at[0] != head or cp.head != head):
                raise StoreError(
                    f"the audit chain does not match checkpoint {number} (record {size}); "
                    "run `labdevices audit verify`",
                    file=self.label,
                )
            if cp.state == "closed" and head_seq > size:
                raise StoreError(
                    f"audit records {size + 1}–{head_seq} were added after the store was closed, "
                    "not by labdevices; run `labdevices audit verify`",
                    file=self.label,
                )
            self._anchored_seq = size
        self._sync_witness()
        self._checkpoints_on = True
        self.checkpoint(state="open", force=True)

    def _sync_witness(self) -> None:
        """Append the checkpoints the witness file lacks (a crash between the two writes);
        refuse a store whose checkpoints are behind the witness's (rolled back)."""
        have: dict[int, str] = {}
        if self.witness.exists():
            have = dict(read_witness(self.witness))
        top = max(have, default=0)
        db = self._db
        with self._errors():
            mine = db.execute("SELECT COALESCE(MAX(id), 0) FROM checkpoints").fetchone()[0]
            if top > mine:
                raise StoreError(
                    f"the witness file {self.witness} holds checkpoint {top} but the store has "
                    f"only {mine}: the store was rolled back or replaced; run `labdevices audit "
                    "verify --witness`",
                    file=self.label,
                )
            if top:
                row = db.execute("SELECT note FROM checkpoints WHERE id = ?", (top,)).fetchone()
                if row is None or row[0] != have[top]:
                    raise StoreError(
                        f"checkpoint {top} differs from the witness file {self.witness}",
                        file=self.label,
                    )
            missing = db.execute(
                "SELECT id, note FROM checkpoints WHERE id > ? ORDER BY id", (top,)
            ).fetchall()
        for number, note in missing:
            append_witness(self.witness, number, parse_checkpoint(note, None))

    def _checkpoint_if_due(self) -> None:
        if self._head_seq is None:
            with self._errors():
                self._head_seq = self._db.execute(
                    "SELECT seq FROM audit_head WHERE id = 1"
                ).fetchone()[0]
        pending = self._head_seq - self._anchored_seq
        if pending <= 0:
            return
        if (
            pending >= self.checkpoint_every_records
            or time.monotonic() - self._anchored_at >= self.checkpoint_every_s
        ):
            try:
                self.checkpoint()
            except LabDeviceError as exc:  # the write it follows is committed: keep it acknowledged
                log.error("%s: checkpoint failed: %s", self.label, exc)

    def checkpoint(
        self, *, state: CheckpointState = "running", force: bool = False
    ) -> Checkpoint | None:
        """Sign the committed head of the audit chain, store the checkpoint, append it to the
        witness file; None (nothing written) if the last checkpoint already covers the head
        (with ``force``: covers it and has the same ``state``). Needs a ``signer``."""
        if self.signer is None:
            raise StoreError("no signing key: this store writes no checkpoints", file=self.label)
        self._checkpointing = True
        try:
            with self._tx(durable=True) as db:
                head_seq, head_hash = db.execute(
                    "SELECT seq, hash FROM audit_head WHERE id = 1"
                ).fetchone()
                last = db.execute(
                    "SELECT id, size, note FROM checkpoints ORDER BY id DESC LIMIT 1"
                ).fetchone()
                if state == "closed" and self._others_live(db):
                    # Another daemon of the site still writes to this store: closed it is not.
                    state = "running"
                if (
                    last is not None
                    and last[1] == head_seq
                    and (not force or parse_checkpoint(last[2], None).state == state)
                ):
                    # Anchored already (perhaps by another daemon sharing the store).
                    self._head_seq = self._anchored_seq = head_seq
                    self._anchored_at = time.monotonic()
                    return None
                number = 1 if last is None else last[0] + 1
                cp = self.signer.sign(
                    size=head_seq,
                    head=head_hash,
                    time=_iso(time.time()),
                    prev=GENESIS_HASH if last is None else note_sha256(last[2]),
                    state=state,
                )
                db.execute(
                    "INSERT INTO checkpoints (id, size, head, time, prev, note)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (number, cp.size, cp.head, cp.time, cp.prev, cp.note),
                )
        finally:
            self._checkpointing = False
        self._head_seq = self._anchored_seq = head_seq
        self._anchored_at = time.monotonic()
        append_witness(self.witness, number, cp)
        if self.on_checkpoint is not None:
            self.on_checkpoint(number, cp)
        return cp

    def checkpoints(self, *, start: int = 1) -> list[tuple[int, Checkpoint]]:
        """Stored checkpoints from number ``start`` on (parsed, not verified)."""
        with self._errors():
            rows = self._db.execute(
                "SELECT id, note FROM checkpoints WHERE id >= ? ORDER BY id", (start,)
            ).fetchall()
        return [(n, parse_checkpoint(note, None)) for n, note in rows]

    # -- audit -----------------------------------------------------------------

    def _append_audit(
        self,
        db: Connection,
        *,
        t: float,
        actor: str,
        action: str,
        object: str,
        old: Any,
        new: Any,
        reason: str | None,
        row: tuple[str, Any] | None = None,
    ) -> AuditRecord:
        """Append one record inside the caller's transaction.

        ``row`` = (table, key) names the covered row this action produced, as it is now
        (written earlier in the same transaction): its hash goes into the record.
        """
        row_hash = None
        if row is not None:
            table, key = row
            current = read_row(db, table, key)
            if current is None:
                raise StoreError(f"audit: no {table} row {key!r} to record", file=self.label)
            row_hash = row_sha256(table, current)
        head_seq, head_hash = db.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        fields: dict[str, Any] = {
            "seq": head_seq + 1,
            "time": _iso(t),
            "actor": actor,
            "action": action,
            "object": object,
            "old": None if old is None else canonical_json(old),
            "new": None if new is None else canonical_json(new),
            "reason": reason,
            "prev_hash": head_hash,
            "row_sha256": row_hash,
        }
        rec = AuditRecord(**fields, hash=record_hash(**fields))
        db.execute(
            f"INSERT INTO audit ({_AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                rec.seq,
                rec.time,
                rec.actor,
                rec.action,
                rec.object,
                rec.old,
                rec.new,
                rec.reason,
                rec.prev_hash,
                rec.hash,
                rec.row_sha256,
            ),
        )
        db.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (rec.seq, rec.hash))
        self._head_seq = rec.seq
        return rec

    def audit(
        self,
        actor: str,
        action: str,
        object: str,
        *,
        old: Any = None,
        new: Any = None,
        reason: str | None = None,
    ) -> AuditRecord:
        """Append one audit record (a command, a setpoint change...) and return it once on disk.

        ``old`` and ``new`` are any JSON values; ``None`` means "no value".
        """
        _require_text(actor=actor, action=action, object=object)
        with self._tx(durable=True) as db:
            return self._append_audit(
                db,
                t=time.time(),
                actor=actor,
                action=action,
                object=object,
                old=old,
                new=new,
                reason=reason,
            )

    def record_config_load(
        self, path: str | Path, sha256: str, *, actor: str = "daemon"
    ) -> AuditRecord:
        """Audit that a configuration file was loaded, identified by the SHA-256 of its bytes."""
        return self.audit(actor, "config.load", f"config/{Path(path)}", new={"sha256": sha256})

    def audit_records(
        self, *, start_seq: int = 1, object: str | None = None, limit: int | None = None
    ) -> list[AuditRecord]:
        """Audit records from ``start_seq`` on, optionally only those about ``object``."""
        sql = f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE seq >= ?"
        args: list[Any] = [start_seq]
        if object is not None:
            sql += " AND object = ?"
            args.append(object)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._errors():
            return [AuditRecord(*row) for row in self._db.execute(sql, args)]

    def verify(self) -> VerifyResult:
        """Prove the audit chain from its first record (see ``verify_audit``)."""
        db = self._db
        with self._errors():
            db.execute(self.dialect.snapshot)  # one snapshot, even while the daemon appends
            try:
                head = db.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
                max_seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM audit").fetchone()[0]
                rows = db.execute(f"SELECT {_AUDIT_COLUMNS} FROM audit ORDER BY seq")
                result = verify_chain(
                    (AuditRecord(*row) for row in rows),
                    expected_head=(head[0], head[1]) if head else None,
                    max_seq=max_seq,
                )
            finally:
                db.execute("COMMIT")
        if head is None and result.ok:
            return VerifyResult(
                False,
                result.records,
                result.head_seq,
                result.head_hash,
                None,
                "deleted",
                "the store's record of its last audit append (table audit_head) was deleted",
            )
        return result

    # -- jobs ------------------------------------------------------------------

    def create_job(
        self,
        printer: str,
        *,
        actor: str,
        batch_id: str | None = None,
        patient_id: str | None = None,
        bioinks: Sequence[Any] = (),
        gcode_sha256: str | None = None,
        lines_total: int = 0,
        reason: str | None = None,
        gcode: str | None = None,
        name: str | None = None,
        profile: str | None = None,
        spec: Any = None,
        release_required: bool = False,
    ) -> JobRecord:
        """Store a new job, ``queued`` (or ``held`` until released when ``release_required``);
        audited as ``job.create`` by ``actor``, who is recorded as its submitter.

        ``gcode`` (the program itself) is kept for the record; its SHA-256 must then equal
        ``gcode_sha256`` (computed when not given). ``content_sha256`` — what a signature on
        the job signs — is computed here (``job_content_sha256``).
        """
        _require_text(printer=printer, actor=actor)
        if gcode is not None:
            actual = hashlib.sha256(gcode.encode("utf-8")).hexdigest()
            if gcode_sha256 is None:
                gcode_sha256 = actual
            elif gcode_sha256 != actual:
                raise JobRejected(
                    "gcode_sha256 does not match the G-code given with the job", device=printer
                )
        if lines_total < 0:
            raise JobRejected(f"lines_total must be >= 0, got {lines_total}", device=printer)
        if gcode_sha256 is not None and (
            len(gcode_sha256) != 64 or any(c not in "0123456789abcdef" for c in gcode_sha256)
        ):
            raise JobRejected(
                f"gcode_sha256 must be 64 lowercase hex digits, got {gcode_sha256!r}",
                device=printer,
            )
        bioinks_json = canonical_json(list(bioinks))
        spec_json = None if spec is None else canonical_json(spec)
        content_sha256 = job_content_sha256(
            printer=printer,
            profile=profile,
            batch_id=batch_id,
            patient_id=patient_id,
            bioinks=list(bioinks),
            gcode_sha256=gcode_sha256,
            lines_total=lines_total,
            spec=spec_json,
        )
        state = JobState.HELD if release_required else JobState.QUEUED
        now = time.time()
        with self._tx(durable=True) as db:
            cur = db.execute(
                "INSERT INTO jobs (printer, state, batch_id, patient_id, bioinks, gcode_sha256,"
                " lines_total, created_at, name, submitted_by, profile, spec, content_sha256,"
                " release_required) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    printer,
                    state.value,
                    batch_id,
                    patient_id,
                    bioinks_json,
                    gcode_sha256,
                    lines_total,
                    now,
                    name,
                    actor,
                    profile,
                    spec_json,
                    content_sha256,
                    int(release_required),
                ),
            )
            job_id = int(cur.fetchone()[0])
            if gcode is not None:
                db.execute("INSERT INTO job_gcode (job_id, gcode) VALUES (?, ?)", (job_id, gcode))
            summary = {
                "printer": printer,
                "batch_id": batch_id,
                "patient_id": patient_id,
                "bioinks": list(bioinks),
                "gcode_sha256": gcode_sha256,
                "lines_total": lines_total,
                "state": state.value,
                "content_sha256": content_sha256,
                # the event chain covers this: a stored program cannot vanish unseen
                "gcode_stored": gcode is not None,
            }
            self._add_event(db, job_id, now, "created", summary)
            self._append_audit(
                db,
                t=now,
                actor=actor,
                action="job.create",
                object=object_of("jobs", job_id),
                old=None,
                new=summary,
                reason=reason,
                row=("jobs", job_id),
            )
            return self._get_job(db, job_id, events=False)

    def transition_job(
        self,
        job_id: int,
        new_state: JobState | str,
        *,
        actor: str,
        reason: str | None = None,
        error: str | None = None,
    ) -> JobRecord:
        """Move a job to ``new_state`` if its state machine allows it; audited as ``job.transition``.

        Raises ``InvalidTransition`` (nothing written) otherwise.
        """
        target = _parse_state(new_state)
        _require_text(actor=actor)
        with self._tx(durable=True) as db:
            return self._transition(db, job_id, target, actor=actor, reason=reason, error=error)

    def _transition(
        self,
        db: Connection,
        job_id: int,
        target: JobState,
        *,
        actor: str,
        reason: str | None,
        error: str | None,
    ) -> JobRecord:
        job = self._get_job(db, job_id, events=False)
        if target not in TRANSITIONS[job.state]:
            raise InvalidTransition(job_id, job.state, target, sorted(TRANSITIONS[job.state]))
        now = time.time()
        started = job.started_at
        if target is JobState.RUNNING and started is None:
            started = now
        ended = now if target in TERMINAL_STATES else None
        db.execute(
            "UPDATE jobs SET state = ?, started_at = ?, ended_at = ?, error = COALESCE(?, error)"
            " WHERE id = ?",
            (target.value, started, ended, error, job_id),
        )
        payload: dict[str, Any] = {
            "from": job.state.value,
            "to": target.value,
            "line": job.last_ack_line,
        }
        if reason is not None:
            payload["reason"] = reason
        if error is not None:
            payload["error"] = error
        self._add_event(db, job_id, now, "state", payload)
        self._append_audit(
            db,
            t=now,
            actor=actor,
            action="job.transition",
            object=object_of("jobs", job_id),
            row=("jobs", job_id),
            old={"state": job.state.value},
            new={
                "state": target.value,
                "line": job.last_ack_line,
                **({"error": error} if error else {}),
            },
            reason=reason,
        )
        return self._get_job(db, job_id, events=False)

    def record_progress(self, job_id: int, line: int) -> None:
        """Record the last line the printer acknowledged. Cheap and frequent: not audited."""
        if line < 0:
            raise JobRejected(f"job {job_id}: acknowledged line must be >= 0, got {line}")
        with self._tx(durable=False) as db:
            cur = db.execute(
                "UPDATE jobs SET last_ack_line = ? WHERE id = ? AND state IN ('running', 'paused')"
                " AND (lines_total = 0 OR ? <= lines_total)",
                (line, job_id, line),
            )
            if cur.rowcount == 0:
                job = self._get_job(db, job_id, events=False)
                if job.state not in (JobState.RUNNING, JobState.PAUSED):
                    raise JobRejected(
                        f"job {job_id} is {job.state.value}: progress is only recorded while it runs",
                        device=job.printer,
                    )
                raise JobRejected(
                    f"job {job_id}: acknowledged line {line} is past its last line {job.lines_total}",
                    device=job.printer,
                )

    def add_job_event(
        self, job_id: int, kind: str, payload: dict[str, Any], *, actor: str = "daemon"
    ) -> JobEvent:
        """Attach a free-form event to a job; audited as ``job.event`` (events are records)."""
        _require_text(kind=kind, actor=actor)
        now = time.time()
        with self._tx(durable=True) as db:
            self._get_job(db, job_id, events=False)
            event = self._add_event(db, job_id, now, kind, payload)
            self._append_audit(
                db,
                t=now,
                actor=actor,
                action="job.event",
                object=object_of("jobs", job_id),
                old=None,
                new={"kind": kind},
                reason=None,
                row=("jobs", job_id),
            )
            return event

    def job_gcode(self, job_id: int) -> str | None:
        """The G-code stored with a job (None for jobs stored without it)."""
        with self._errors():
            row = self._db.execute(
                "SELECT gcode FROM job_gcode WHERE job_id = ?", (job_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def recover_interrupted(
        self, *, actor: str = "daemon", printers: Iterable[str] | None = None
    ) -> list[JobRecord]:
        """On daemon start: every job left running or paused becomes ``interrupted``, at its last
        acknowledged line. Such jobs are never resumed silently. With ``printers``, only the
        jobs of those printers (the starting daemon's: another daemon's job is its own)."""
        sql = "SELECT id FROM jobs WHERE state IN ('running', 'paused')"
        args: list[Any] = []
        if printers is not None:
            mine = sorted(set(printers))
            if not mine:  # a daemon without printers (``IN ()`` is an error on PostgreSQL)
                return []
            sql += f" AND printer IN ({', '.join('?' * len(mine))})"
            args.extend(mine)
        with self._tx(durable=True) as db:
            ids = [row[0] for row in db.execute(sql + " ORDER BY id", args)]
            out = []
            for job_id in ids:
                job = self._get_job(db, job_id, events=False)
                message = (
                    f"the daemon stopped while the job was {job.state.value}; "
                    f"last acknowledged line {job.last_ack_line} of {job.lines_total}"
                )
                out.append(
                    self._transition(
                        db,
                        job_id,
                        JobState.INTERRUPTED,
                        actor=actor,
                        reason="startup recovery",
                        error=message,
                    )
                )
            return out

    def get_job(self, job_id: int, *, events: bool = True) -> JobRecord:
        """A job and (by default) its events; ``StoreError`` if there is no such job."""
        with self._errors():
            return self._get_job(self._db, job_id, events=events)

    def list_jobs(
        self, *, state: JobState | str | None = None, printer: str | None = None, limit: int = 100
    ) -> list[JobRecord]:
        """Jobs, newest first."""
        sql = f"SELECT {_JOB_COLUMNS} FROM jobs WHERE 1 = 1"
        args: list[Any] = []
        if state is not None:
            sql += " AND state = ?"
            args.append(_parse_state(state).value)
        if printer is not None:
            sql += " AND printer = ?"
            args.append(printer)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        with self._errors():
            return [_job(row) for row in self._db.execute(sql, args)]

    def _get_job(self, db: Connection, job_id: int, *, events: bool) -> JobRecord:
        row = db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise StoreError(f"no job with id {job_id}", file=self.label)
        if not events:
            return _job(row)
        evs = [
            JobEvent(job_id, t, kind, json.loads(payload))
            for t, kind, payload in db.execute(
                "SELECT t, kind, payload FROM job_events WHERE job_id = ? ORDER BY id", (job_id,)
            )
        ]
        return _job(row, evs)

    def _add_event(
        self, db: Connection, job_id: int, t: float, kind: str, payload: dict[str, Any]
    ) -> JobEvent:
        """Insert an event and advance the job's running event hash (the caller audits the row)."""
        text = canonical_json(payload)
        prev = db.execute("SELECT events_sha256 FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
        db.execute(
            "INSERT INTO job_events (job_id, t, kind, payload) VALUES (?, ?, ?, ?)",
            (job_id, t, kind, text),
        )
        db.execute(
            "UPDATE jobs SET events_sha256 = ? WHERE id = ?",
            (event_link(prev, job_id, t, kind, text), job_id),
        )
        return JobEvent(job_id, t, kind, payload)

    # -- signatures ------------------------------------------------------------

    def add_signature(
        self,
        object: str,
        user_id: str,
        meaning: str,
        comment: str | None,
        content_sha256: str,
    ) -> SignatureResult:
        """Sign ``object`` (``job/ID``) as an already re-authenticated user; see ``add_signature``."""
        return add_signature(self, object, user_id, meaning, comment, content_sha256)

    def list_signatures(self, object: str) -> list[SignatureRecord]:
        """The signatures of ``object`` (``job/ID``), oldest first."""
        return list_signatures(self, object)

    # -- alarms ----------------------------------------------------------------

    def raise_alarm(
        self,
        device: str,
        name: str,
        severity: Severity,
        *,
        reason: str | None = None,
        actor: str = "daemon",
    ) -> AlarmRecord:
        """Record a new active alarm; audited as ``alarm.raise``."""
        _require_text(device=device, name=name, actor=actor)
        if severity not in _SEVERITIES:
            raise StoreError(
                f"alarm severity must be one of {', '.join(_SEVERITIES)}, got {severity!r}"
            )
        now = time.time()
        with self._tx(durable=True) as db:
            cur = db.execute(
                "INSERT INTO alarms (device, name, severity, raised_at, reason)"
                " VALUES (?, ?, ?, ?, ?) RETURNING id",
                (device, name, severity, now, reason),
            )
            alarm_id = int(cur.fetchone()[0])
            self._append_audit(
                db,
                t=now,
                actor=actor,
                action="alarm.raise",
                object=object_of("alarms", alarm_id),
                row=("alarms", alarm_id),
                old=None,
                new={"device": device, "name": name, "severity": severity},
                reason=reason,
            )
            return self._get_alarm(db, alarm_id)

    def clear_alarm(
        self, alarm_id: int, *, actor: str = "daemon", reason: str | None = None
    ) -> AlarmRecord:
        """Mark an alarm's condition as gone; audited as ``alarm.clear``."""
        _require_text(actor=actor)
        now = time.time()
        with self._tx(durable=True) as db:
            alarm = self._get_alarm(db, alarm_id)
            if alarm.cleared_at is not None:
                raise StoreError(
                    f"alarm {alarm_id} ({alarm.name} on {alarm.device}) is already cleared"
                )
            db.execute("UPDATE alarms SET cleared_at = ? WHERE id = ?", (now, alarm_id))
            self._append_audit(
                db,
                t=now,
                actor=actor,
                action="alarm.clear",
                object=object_of("alarms", alarm_id),
                row=("alarms", alarm_id),
                old={"active": True},
                new={"active": False},
                reason=reason,
            )
            return self._get_alarm(db, alarm_id)

    def acknowledge_alarm(
        self, alarm_id: int, *, user: str, reason: str | None = None
    ) -> AlarmRecord:
        """A user acknowledges an alarm; audited as ``alarm.acknowledge`` with the user as actor."""
        _require_text(user=user)
        now = time.time()
        with self._tx(durable=True) as db:
            alarm = self._get_alarm(db, alarm_id)
            if alarm.acknowledged_at is not None:
                raise StoreError(
                    f"alarm {alarm_id} ({alarm.name} on {alarm.device}) was already acknowledged "
                    f"by {alarm.acknowledged_by} at {_iso(alarm.acknowledged_at)}"
                )
            db.execute(
                "UPDATE alarms SET acknowledged_at = ?, acknowledged_by = ? WHERE id = ?",
                (now, user, alarm_id),
            )
            self._append_audit(
                db,
                t=now,
                actor=user,
                action="alarm.acknowledge",
                object=object_of("alarms", alarm_id),
                row=("alarms", alarm_id),
                old={"acknowledged": False},
                new={"acknowledged": True},
                reason=reason,
            )
            return self._get_alarm(db, alarm_id)

    def get_alarm(self, alarm_id: int) -> AlarmRecord:
        with self._errors():
            return self._get_alarm(self._db, alarm_id)

    def list_alarms(self, *, active_only: bool = False, limit: int = 100) -> list[AlarmRecord]:
        """Alarms, newest first; ``active_only``: not cleared or not yet acknowledged."""
        where = "WHERE cleared_at IS NULL OR acknowledged_at IS NULL" if active_only else ""
        with self._errors():
            rows = self._db.execute(
                f"SELECT {_ALARM_COLUMNS} FROM alarms {where} ORDER BY id DESC LIMIT ?", (limit,)
            )
            return [AlarmRecord(*row) for row in rows]

    def _get_alarm(self, db: Connection, alarm_id: int) -> AlarmRecord:
        row = db.execute(
            f"SELECT {_ALARM_COLUMNS} FROM alarms WHERE id = ?", (alarm_id,)
        ).fetchone()
        if row is None:
            raise StoreError(f"no alarm with id {alarm_id}", file=self.label)
        return AlarmRecord(*row)

    # -- telemetry -------------------------------------------------------------

    def insert_telemetry(self, samples: Iterable[SampleLike]) -> int:
        """Store a batch of (already deadbanded or downsampled) samples in one transaction.

        The batch is one block: its hash is recorded in ``telemetry_blocks`` and enters the
        audit chain (``telemetry.block``), so a stored sample cannot change unseen.
        """
        # Hashed as the database gives them back (a bool comes back 1, a NaN NULL), so that
        # ``audit verify`` recomputes the same digest from the stored rows.
        rows = [(s.device, s.signal, s.t, _as_stored(s.value), s.unit, s.quality) for s in samples]
        if not rows:
            return 0
        now = time.time()
        times = [r[2] for r in rows]
        with self._tx(durable=False) as db:
            cur = db.execute(
                "INSERT INTO telemetry_blocks (count, t_first, t_last, sha256)"
                " VALUES (?, ?, ?, ?) RETURNING id",
                (len(rows), min(times), max(times), telemetry_digest(rows)),
            )
            block = int(cur.fetchone()[0])
            self._insert_samples(db, block, rows)
            self._append_audit(
                db,
                t=now,
                actor="daemon",
                action="telemetry.block",
                object=object_of("telemetry_blocks", block),
                old=None,
                new={"samples": len(rows)},
                reason=None,
                row=("telemetry_blocks", block),
            )
        return len(rows)

    def _insert_samples(self, db: Connection, block: int, rows: list[tuple[Any, ...]]) -> None:
        """The rows of one telemetry block (device, signal, t, value, unit, quality)."""
        db.executemany(
            "INSERT INTO telemetry (device, signal, t, value, unit, quality, block)"
            f" VALUES (?, ?, ?, ?, ?, ?, {block})",
            rows,
        )

    def query_telemetry(
        self,
        device: str,
        signal: str | None = None,
        *,
        start: float | None = None,
        end: float | None = None,
        limit: int | None = None,
    ) -> list[TelemetryPoint]:
        """Samples of a device (one signal or all) with ``start <= t <= end``, oldest first."""
        raw, args = self._telemetry_where(device, signal, start, end)
        rolled, more = self._telemetry_where(device, signal, start, end, t=_ROLLUP_T)
        # Where retention rolled raw samples up: one point per minute, its mean, quality
        # "rollup" (min/max: ``query_rollups``).
        sql = (
            f"SELECT device, signal, t, value, unit, quality FROM telemetry {raw} UNION ALL"
            " SELECT device, signal, (MIN(t_first) + MAX(t_last)) / 2 AS t,"
            f" {self.dialect.as_value('SUM(mean * numeric) / SUM(numeric)')}, MAX(unit),"
            " 'rollup' FROM telemetry_rollups"
            f" {rolled} AND numeric > 0 GROUP BY device, signal, minute ORDER BY t"
        )
        args += more
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._errors():
            return [TelemetryPoint(*row) for row in self._db.execute(sql, args)]

    def query_rollups(
        self,
        device: str,
        signal: str | None = None,
        *,
        start: float | None = None,
        end: float | None = None,
    ) -> list[RollupPoint]:
        """Per-minute roll-ups (where retention removed the raw samples), oldest first; several
        rows of one minute (written by different retention steps) merged into one."""
        where, args = self._telemetry_where(device, signal, start, end, t=_ROLLUP_T)
        sql = (
            # (sums of integers cast back: PostgreSQL's SUM(bigint) is a numeric, a Decimal)
            "SELECT device, signal, minute, MAX(unit), CAST(SUM(count) AS BIGINT),"
            " CAST(SUM(numeric) AS BIGINT), MIN(min),"
            " SUM(mean * numeric) / NULLIF(SUM(numeric), 0), MAX(max), MIN(t_first), MAX(t_last)"
            f" FROM telemetry_rollups {where} GROUP BY device, signal, minute"
            " ORDER BY minute, signal"
        )
        with self._errors():
            return [RollupPoint(*row) for row in self._db.execute(sql, args)]

    def telemetry_summary(
        self, device: str, *, start: float | None = None, end: float | None = None
    ) -> list[SignalSummary]:
        """Per signal: count, time span, and min/max/mean of its numeric values."""
        where, args = self._telemetry_where(device, None, start, end)
        rolled, more = self._telemetry_where(device, None, start, end, t=_ROLLUP_T)
        num = self.dialect.numeric("value")
        # Raw samples and the roll-ups of those retention removed: each sample counts once.
        sql = (
            "SELECT device, signal, MAX(unit), CAST(SUM(n) AS BIGINT), MIN(t0), MAX(t1), MIN(lo),"
            " MAX(hi),"
            " 1.0 * SUM(total) / NULLIF(SUM(k), 0) FROM ("
            f" SELECT device, signal, MAX(unit) AS unit, COUNT(*) AS n, MIN(t) AS t0,"
            f" MAX(t) AS t1, MIN({num}) AS lo, MAX({num}) AS hi, SUM({num}) AS total,"
            f" COUNT({num}) AS k FROM telemetry {where} GROUP BY device, signal"
            " UNION ALL SELECT device, signal, MAX(unit), SUM(count), MIN(t_first), MAX(t_last),"
            " MIN(min), MAX(max), SUM(mean * numeric), SUM(numeric)"
            f" FROM telemetry_rollups {rolled} GROUP BY device, signal"
            ") AS parts GROUP BY device, signal ORDER BY signal"
        )
        with self._errors():
            return [SignalSummary(*row) for row in self._db.execute(sql, args + more)]

    def telemetry_devices(
        self, *, start: float | None = None, end: float | None = None
    ) -> list[str]:
        """The devices with telemetry stored between ``start`` and ``end``, by name."""
        sql, args = "", []
        for table, t in (("telemetry", "t"), ("telemetry_rollups", _ROLLUP_T)):
            where, more = self._telemetry_where(None, None, start, end, t=t)
            sql += f"{' UNION ' if sql else ''}SELECT device FROM {table} {where}"
            args += more
        with self._errors():
            return [str(r[0]) for r in self._db.execute(sql + " ORDER BY device", args)]

    @staticmethod
    def _telemetry_where(
        device: str | None,
        signal: str | None,
        start: float | None,
        end: float | None,
        *,
        t: str = "t",
    ) -> tuple[str, list[Any]]:
        sql = "WHERE 1 = 1"
        args: list[Any] = []
        if device is not None:
            sql += " AND device = ?"
            args.append(device)
        if signal is not None:
            sql += " AND signal = ?"
            args.append(signal)
        if start is not None:
            sql += f" AND {t} >= ?"
            args.append(start)
        if end is not None:
            sql += f" AND {t} <= ?"
            args.append(end)
        return sql, args


#: a roll-up's time: the middle of the samples it holds (what time ranges select it by)
_ROLLUP_T = "((t_first + t_last) / 2)"


@dataclass(frozen=True, slots=True)
class RollupPoint:
    """One signal's samples in one minute, rolled up by retention (min/mean/max over the
    ``numeric`` ones of ``count``; ``minute`` is the Unix time of its start)."""

    device: str
    signal: str
    minute: int
    unit: str
    count: int
    numeric: int
    min: float | None
    mean: float | None
    max: float | None
    t_first: float
    t_last: float


def _job(row: Sequence[Any], events: list[JobEvent] | None = None) -> JobRecord:
    return JobRecord(
        id=row[0],
        printer=row[1],
        state=JobState(row[2]),
        batch_id=row[3],
        patient_id=row[4],
        bioinks=json.loads(row[5]),
        gcode_sha256=row[6],
        lines_total=row[7],
        last_ack_line=row[8],
        created_at=row[9],
        started_at=row[10],
        ended_at=row[11],
        error=row[12],
        events=events or [],
        name=row[13],
        submitted_by=row[14],
        profile=row[15],
        spec=row[16],
        content_sha256=row[17],
        release_required=bool(row[18]),
        events_sha256=row[19],
    )


def _as_stored(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _parse_state(state: JobState | str) -> JobState:
    try:
        return JobState(state)
    except ValueError:
        raise JobRejected(
            f"unknown job state {state!r} (known: {', '.join(s.value for s in JobState)})"
        ) from None


def _require_text(**fields: str) -> None:
    for name, value in fields.items():
        if not isinstance(value, str) or not value.strip():
            raise StoreError(f"{name} must be a non-empty string, got {value!r}")


def verify_audit(db_path: str | Path) -> VerifyResult:
    """Prove the audit chain of the store at ``db_path`` (a file or a PostgreSQL URL) from its
    first record.

    Read-only. The result names the first record that was edited, deleted or
    reordered. A missing or unreadable store raises ``StoreError`` naming it.
    """
    from ._store import open_database

    with open_database(db_path, readonly=True) as db:
        return db.verify()

"""The async store the daemon uses: the ``Store`` interface and its implementations.

``DatabaseStore`` runs a ``SqliteDatabase`` (or ``PostgresDatabase``, the same code on a
psycopg connection) on one dedicated writer thread, so the event loop never blocks on
disk and this process's writes are serialized; ``SqliteStore`` and ``PostgresStore``
only choose the database. ``open_store(url)`` picks by URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

from ._audit import VerifyResult
from ._checkpoints import Checkpoint, CheckpointSigner, CheckpointState
from ._errors import StoreError
from ._identity import AuthPolicy, SessionRecord, UserRecord, verify_password
from ._leases import LeaseRecord
from ._models import (
    AlarmRecord,
    AuditRecord,
    JobEvent,
    JobRecord,
    JobState,
    SampleLike,
    Severity,
    TelemetryPoint,
)
from ._paths import is_postgres_url
from ._retention import RetentionPolicy, RetentionSummary, run_retention
from ._signatures import SignatureRecord, SignatureResult
from ._sqlite import RollupPoint, SignalSummary, SqliteDatabase

__all__ = ["DatabaseStore", "PostgresStore", "SqliteStore", "Store", "open_store"]

T = TypeVar("T")


class Store(Protocol):
    """What the daemon needs from a store, whatever the database behind it."""

    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def audit(
        self,
        actor: str,
        action: str,
        object: str,
        *,
        old: Any = None,
        new: Any = None,
        reason: str | None = None,
    ) -> AuditRecord: ...
    async def record_config_load(
        self, path: str | Path, sha256: str, *, actor: str = "daemon"
    ) -> AuditRecord: ...
    async def audit_records(
        self, *, start_seq: int = 1, object: str | None = None, limit: int | None = None
    ) -> list[AuditRecord]: ...
    async def verify(self) -> VerifyResult: ...
    async def checkpoint(
        self, *, state: CheckpointState = "running", force: bool = False
    ) -> Checkpoint | None: ...

    async def create_job(
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
    ) -> JobRecord: ...
    async def transition_job(
        self,
        job_id: int,
        new_state: JobState | str,
        *,
        actor: str,
        reason: str | None = None,
        error: str | None = None,
    ) -> JobRecord: ...
    async def record_progress(self, job_id: int, line: int) -> None: ...
    async def add_job_event(
        self, job_id: int, kind: str, payload: dict[str, Any], *, actor: str = "daemon"
    ) -> JobEvent: ...
    async def job_gcode(self, job_id: int) -> str | None: ...
    async def recover_interrupted(
        self, *, actor: str = "daemon", printers: Iterable[str] | None = None
    ) -> list[JobRecord]: ...
    async def store_id(self) -> str | None: ...
    async def get_job(self, job_id: int, *, events: bool = True) -> JobRecord: ...
    async def list_jobs(
        self, *, state: JobState | str | None = None, printer: str | None = None, limit: int = 100
    ) -> list[JobRecord]: ...

    async def add_signature(
        self,
        object: str,
        user_id: str,
        meaning: str,
        comment: str | None,
        content_sha256: str,
    ) -> SignatureResult: ...
    async def list_signatures(self, object: str) -> list[SignatureRecord]: ...

    async def acquire_leases(
        self,
        names: Iterable[str],
        *,
        daemon: str,
        instance: str,
        ttl_s: float,
        replacing: Iterable[str] = (),
    ) -> list[LeaseRecord]: ...
    async def release_leases(
        self, *, instance: str, names: Iterable[str] | None = None
    ) -> None: ...
    async def list_leases(self) -> list[LeaseRecord]: ...

    async def raise_alarm(
        self,
        device: str,
        name: str,
        severity: Severity,
        *,
        reason: str | None = None,
        actor: str = "daemon",
    ) -> AlarmRecord: ...
    async def clear_alarm(
        self, alarm_id: int, *, actor: str = "daemon", reason: str | None = None
    ) -> AlarmRecord: ...
    async def acknowledge_alarm(
        self, alarm_id: int, *, user: str, reason: str | None = None
    ) -> AlarmRecord: ...
    async def list_alarms(
        self, *, active_only: bool = False, limit: int = 100
    ) -> list[AlarmRecord]: ...

    async def insert_telemetry(self, samples: Iterable[SampleLike]) -> int: ...
    async def query_telemetry(
        self,
        device: str,
        signal: str | None = None,
        *,
        start: float | None = None,
        end: float | None = None,
        limit: int | None = None,
    ) -> list[TelemetryPoint]: ...
    async def telemetry_summary(
        self, device: str, *, start: float | None = None, end: float | None = None
    ) -> list[SignalSummary]: ...
    async def query_rollups(
        self,
        device: str,
        signal: str | None = None,
        *,
        start: float | None = None,
        end: float | None = None,
    ) -> list[RollupPoint]: ...
    async def run_retention(
        self, policy: RetentionPolicy, *, archive_dir: str | Path | None = None
    ) -> RetentionSummary: ...

    async def add_user(
        self,
        user_id: str,
        full_name: str,
        roles: Iterable[str],
        *,
        by: str,
        reason: str,
        password: str | None = None,
        service: bool = False,
    ) -> UserRecord: ...
    async def get_user(self, user_id: str) -> UserRecord: ...
    async def find_user(self, user_id: str) -> UserRecord | None: ...
    async def list_users(self, *, include_inactive: bool = True) -> list[UserRecord]: ...
    async def deactivate_user(self, user_id: str, *, by: str, reason: str) -> UserRecord: ...
    async def set_roles(
        self, user_id: str, roles: Iterable[str], *, by: str, reason: str
    ) -> UserRecord: ...
    async def set_password(
        self, user_id: str, password: str, *, by: str, reason: str
    ) -> UserRecord: ...
    async def change_password(
        self, user_id: str, old_password: str, new_password: str
    ) -> UserRecord: ...
    async def check_password(self, user_id: str, password: str) -> UserRecord: ...
    async def create_session(
        self, user_id: str, *, lifetime_s: float | None = None
    ) -> SessionRecord: ...
    async def login(self, user_id: str, password: str) -> tuple[UserRecord, SessionRecord]: ...
    async def get_session(self, session_id: str) -> SessionRecord | None: ...
    async def broker_credentials(self) -> list[tuple[str, str]]: ...
    async def revoke_session(self, session_id: str, *, by: str, reason: str) -> SessionRecord: ...


class DatabaseStore:
    """The ``Store`` over a ``SqliteDatabase`` or ``PostgresDatabase``; an async context manager.

    Entering opens (creating and migrating the store if needed) on the writer
    thread; exiting closes the database and joins the thread, and is safe to call
    twice. Re-entry is refused. If a caller is cancelled while a write runs, the
    write still completes or rolls back as a whole on the writer thread.

    Session lookups (one per authenticated request) run on a second thread with its own
    read-only connection: they never wait behind a write, and they see every committed
    revocation at once.
    """

    def __init__(
        self,
        location: str | Path,
        *,
        auth_policy: AuthPolicy | None = None,
        signer: CheckpointSigner | None = None,
        witness: str | Path | None = None,
        checkpoint_every_records: int = 256,
        checkpoint_every_s: float = 10.0,
        on_checkpoint: Callable[[int, Checkpoint], None] | None = None,
    ) -> None:
        """``signer`` etc.: see ``SqliteDatabase``. ``on_checkpoint`` is called on the event
        loop (not the writer thread) with each checkpoint written."""
        kind = self._database()
        db = kind(
            location,
            auth_policy=auth_policy,
            signer=signer,
            witness=witness,
            checkpoint_every_records=checkpoint_every_records,
            checkpoint_every_s=checkpoint_every_s,
        )
        reader_db = kind(location, readonly=True, auth_policy=auth_policy)
        self.path = db.path
        self.label = db.label
        #: what ``open_database`` takes: the file's path or the PostgreSQL URL
        self.location = db.location
        self._on_checkpoint = on_checkpoint
        self._loop: asyncio.AbstractEventLoop | None = None
        self._db = db
        if on_checkpoint is not None:
            db.on_checkpoint = self._checkpointed
        self._reader_db = reader_db
        # Sessions read while the database has not changed since (see ``get_session``).
        self._version: sqlite3.Connection | None = None
        self._sessions: dict[str, tuple[int, SessionRecord | None]] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None
        # Retention runs on one thread of its own, always the same: a thread pool's changing
        # threads would each keep a malloc arena of freed pages, and the RSS would creep.
        self._retention: ThreadPoolExecutor | None = None
        self._used = False

    @staticmethod
    def _database() -> type[SqliteDatabase]:
        """The database class: ``SqliteDatabase`` or ``PostgresDatabase``."""
        raise NotImplementedError

    def _open_version(self) -> sqlite3.Connection | None:
        """A connection whose ``PRAGMA data_version`` tells that the store changed (None: no
        such cheap signal; sessions are then read from the store every time)."""
        return None

    async def __aenter__(self) -> Self:
        if self._used:
            raise StoreError("a store can be entered only once", file=self.label)
        self._used = True
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labdevices-store")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labdevices-store-read")
        self._retention = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="labdevices-retention"
        )
        try:
            await self._run(self._db.open)
            await asyncio.get_running_loop().run_in_executor(self._reader, self._reader_db.open)
            self._version = self._open_version()
        except BaseException:
            await self._shutdown()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        version, self._version = self._version, None
        if version is not None:
            version.close()
        self._sessions.clear()
        retention, self._retention = self._retention, None
        if retention is not None:
            retention.shutdown(wait=True)  # a run in flight was told to stop (run_retention)
        reader, self._reader = self._reader, None
        if reader is not None:
            try:
                await asyncio.get_running_loop().run_in_executor(reader, self._reader_db.close)
            finally:
                reader.shutdown(wait=True)
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            # Queued behind any write still in flight, so that write finishes first.
            await asyncio.get_running_loop().run_in_executor(executor, self._db.close)
        finally:
            executor.shutdown(wait=True)

    async def store_id(self) -> str | None:
        """The store's random id (see ``SqliteDatabase.store_id``)."""
        return await self._run(lambda: self._db.store_id)

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._executor is None:
            raise StoreError("store is not open", file=self.label)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    # -- audit -----------------------------------------------------------------

    async def audit(
        self,
        actor: str,
        action: str,
        object: str,
        *,
        old: Any = None,
        new: Any = None,
        reason: str | None = None,
    ) -> AuditRecord:
        return await self._run(
            self._db.audit, actor, action, object, old=old, new=new, reason=reason
        )

    async def record_config_load(
        self, path: str | Path, sha256: str, *, actor: str = "daemon"
    ) -> AuditRecord:
        return await self._run(self._db.record_config_load, path, sha256, actor=actor)

    async def audit_records(
        self, *, start_seq: int = 1, object: str | None = None, limit: int | None = None
    ) -> list[AuditRecord]:
        return await self._run(
            self._db.audit_records, start_seq=start_seq, object=object, limit=limit
        )

    async def verify(self) -> VerifyResult:
        return await self._run(self._db.verify)

    async def checkpoint(
        self, *, state: CheckpointState = "running", force: bool = False
    ) -> Checkpoint | None:
        """Sign the head now (see ``SqliteDatabase.checkpoint``); None without a signer."""
        if self._db.signer is None:
            return None
        return await self._run(self._db.checkpoint, state=state, force=force)

    def _checkpointed(self, number: int, cp: Checkpoint) -> None:
        # On the writer thread: hand over to the loop (closed already at the very end).
        loop, callback = self._loop, self._on_checkpoint
        if loop is not None and callback is not None and not loop.is_closed():
            loop.call_soon_threadsafe(callback, number, cp)

    # -- jobs ------------------------------------------------------------------

    async def create_job(
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
        return await self._run(
            self._db.create_job,
            printer,
            actor=actor,
            batch_id=batch_id,
            patient_id=patient_id,
            bioinks=bioinks,
            gcode_sha256=gcode_sha256,
            lines_total=lines_total,
            reason=reason,
            gcode=gcode,
            name=name,
            profile=profile,
            spec=spec,
            release_required=release_required,
        )

    async def transition_job(
        self,
        job_id: int,
        new_state: JobState | str,
        *,
        actor: str,
        reason: str | None = None,
        error: str | None = None,
    ) -> JobRecord:
        return await self._run(
            self._db.transition_job, job_id, new_state, actor=actor, reason=reason, error=error
        )

    async def record_progress(self, job_id: int, line: int) -> None:
        await self._run(self._db.record_progress, job_id, line)

    async def add_job_event(
        self, job_id: int, kind: str, payload: dict[str, Any], *, actor: str = "daemon"
    ) -> JobEvent:
        return await self._run(self._db.add_job_event, job_id, kind, payload, actor=actor)

    async def job_gcode(self, job_id: int) -> str | None:
        return await self._run(self._db.job_gcode, job_id)

    async def recover_interrupted(
        self, *, actor: str = "daemon", printers: Iterable[str] | None = None
    ) -> list[JobRecord]:
        return await self._run(
            self._db.recover_interrupted,
            actor=actor,
            printers=None if printers is None else list(printers),
        )

    # -- site leases -----------------------------------------------------------

    async def acquire_leases(
        self,
        names: Iterable[str],
        *,
        daemon: str,
        instance: str,
        ttl_s: float,
        replacing: Iterable[str] = (),
    ) -> list[LeaseRecord]:
        return await self._run(
            self._db.acquire_leases,
            list(names),
            daemon=daemon,
            instance=instance,
            ttl_s=ttl_s,
            replacing=list(replacing),
        )

    async def release_leases(self, *, instance: str, names: Iterable[str] | None = None) -> None:
        await self._run(
            self._db.release_leases,
            instance=instance,
            names=None if names is None else list(names),
        )

    async def list_leases(self) -> list[LeaseRecord]:
        return await self._read(self._reader_db.list_leases)

    async def get_job(self, job_id: int, *, events: bool = True) -> JobRecord:
        return await self._run(self._db.get_job, job_id, events=events)

    async def list_jobs(
        self, *, state: JobState | str | None = None, printer: str | None = None, limit: int = 100
    ) -> list[JobRecord]:
        return await self._run(self._db.list_jobs, state=state, printer=printer, limit=limit)

    # -- signatures ------------------------------------------------------------

    async def add_signature(
        self,
        object: str,
        user_id: str,
        meaning: str,
        comment: str | None,
        content_sha256: str,
    ) -> SignatureResult:
        return await self._run(
            self._db.add_signature, object, user_id, meaning, comment, content_sha256
        )

    async def list_signatures(self, object: str) -> list[SignatureRecord]:
        return await self._run(self._db.list_signatures, object)

    # -- alarms ----------------------------------------------------------------

    async def raise_alarm(
        self,
        device: str,
        name: str,
        severity: Severity,
        *,
        reason: str | None = None,
        actor: str = "daemon",
    ) -> AlarmRecord:
        return await self._run(
            self._db.raise_alarm, device, name, severity, reason=reason, actor=actor
        )

    async def clear_alarm(
        self, alarm_id: int, *, actor: str = "daemon", reason: str | None = None
    ) -> AlarmRecord:
        return await self._run(self._db.clear_alarm, alarm_id, actor=actor, reason=reason)

    async def acknowledge_alarm(
        self, alarm_id: int, *, user: str, reason: str | None = None
    ) -> AlarmRecord:
        return await self._run(self._db.acknowledge_alarm, alarm_id, user=user, reason=reason)

    async def list_alarms(
        self, *, active_only: bool = False, limit: int = 100
    ) -> list[AlarmRecord]:
        return await self._run(self._db.list_alarms, active_only=active_only, limit=limit)

    # -- telemetry -------------------------------------------------------------

    async def insert_telemetry(self, samples: Iterable[SampleLike]) -> int:
        # Materialised here: the caller may reuse its buffer once this returns.
        return await self._run(self._db.insert_telemetry, list(samples))

    async def query_telemetry(
        self,
        device: str,
        signal: str | None = None,
        *,
        start: float | None = None,
        end: float | None = None,
        limit: int | None = None,
    ) -> list[TelemetryPoint]:
        return await self._run(
            self._db.query_telemetry, device, signal, start=start, end=end, limit=limit
        )

    async def telemetry_summary(
        self, device: str, *, start: float | None = None, end: float | None = None
    ) -> list[SignalSummary]:
        return await self._run(self._db.telemetry_summary, device, start=start, end=end)

    async def query_rollups(
        self,
        device: str,
        signal: str | None = None,
        *,
        start: float | None = None,
        end: float | None = None,
    ) -> list[RollupPoint]:
        return await self._read(
            functools.partial(self._reader_db.query_rollups, start=start, end=end), device, signal
        )

    async def run_retention(
        self, policy: RetentionPolicy, *, archive_dir: str | Path | None = None
    ) -> RetentionSummary:
        """One retention run (see ``run_retention``) on a thread and connection of its own, so
        ingest on the writer thread waits only for each step's short transaction. Cancelled,
        it stops at the next step and is awaited: no thread outlives the call."""
        if self._retention is None:
            raise StoreError("store is not open", file=str(self.path))
        stop = threading.Event()
        job = asyncio.get_running_loop().run_in_executor(
            self._retention,
            functools.partial(
                run_retention, self.location, policy, archive_dir=archive_dir, stop=stop
            ),
        )
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            stop.set()
            with contextlib.suppress(Exception):
                await job
            raise

    # -- users and sessions ----------------------------------------------------

    @property
    def auth_policy(self) -> AuthPolicy:
        return self._db.auth_policy

    async def add_user(
        self,
        user_id: str,
        full_name: str,
        roles: Iterable[str],
        *,
        by: str,
        reason: str,
        password: str | None = None,
        service: bool = False,
    ) -> UserRecord:
        return await self._run(
            self._db.add_user,
            user_id,
            full_name,
            list(roles),
            by=by,
            reason=reason,
            password=password,
            service=service,
        )

    async def get_user(self, user_id: str) -> UserRecord:
        return await self._run(self._db.get_user, user_id)

    async def find_user(self, user_id: str) -> UserRecord | None:
        return await self._run(self._db.find_user, user_id)

    async def list_users(self, *, include_inactive: bool = True) -> list[UserRecord]:
        return await self._run(self._db.list_users, include_inactive=include_inactive)

    async def deactivate_user(self, user_id: str, *, by: str, reason: str) -> UserRecord:
        return await self._run(self._db.deactivate_user, user_id, by=by, reason=reason)

    async def set_roles(
        self, user_id: str, roles: Iterable[str], *, by: str, reason: str
    ) -> UserRecord:
        return await self._run(self._db.set_roles, user_id, list(roles), by=by, reason=reason)

    async def set_password(
        self, user_id: str, password: str, *, by: str, reason: str
    ) -> UserRecord:
        return await self._run(self._db.set_password, user_id, password, by=by, reason=reason)

    async def change_password(
        self, user_id: str, old_password: str, new_password: str
    ) -> UserRecord:
        return await self._run(self._db.change_password, user_id, old_password, new_password)

    async def check_password(self, user_id: str, password: str) -> UserRecord:
        # Argon2 takes ~50-100 ms of CPU: verified on a worker thread (argon2-cffi releases
        # the GIL), so neither the event loop nor the store's writer waits for it.
        stored = await self._read(self._reader_db.password_hash, user_id)
        ok = await asyncio.to_thread(verify_password, stored, password)
        return await self._run(self._db.record_check, user_id, password, stored, ok)

    async def create_session(
        self, user_id: str, *, lifetime_s: float | None = None
    ) -> SessionRecord:
        return await self._run(self._db.create_session, user_id, lifetime_s=lifetime_s)

    async def login(self, user_id: str, password: str) -> tuple[UserRecord, SessionRecord]:
        user = await self.check_password(user_id, password)
        return user, await self.create_session(user.id)

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """The session as stored now: read again whenever the database changed since.

        ``PRAGMA data_version`` (a look at the WAL index in shared memory, a few µs, no
        disk) changes with every commit of any connection, this daemon's or a CLI's on
        the same file, so a revocation applies at the very next request while an
        unchanged database costs no trip to the reader thread. PostgreSQL has no such
        signal for commits by other daemons: there every lookup reads the store.
        """
        version = self._data_version()
        cached = self._sessions.get(session_id)
        if version is not None and cached is not None and cached[0] == version:
            return cached[1]
        record = await self._read(self._reader_db.get_session, session_id)
        if version is not None:  # the version read before the session: never newer than it
            if len(self._sessions) >= 4096:
                self._sessions.clear()
            self._sessions[session_id] = (version, record)
        return record

    def _data_version(self) -> int | None:
        if self._version is None:
            return None
        try:
            return int(self._version.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            return None  # read from the store instead

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        """On the reader thread and its read-only connection: never behind a write."""
        if self._reader is None:
            raise StoreError("store is not open", file=self.label)
        return await asyncio.get_running_loop().run_in_executor(
            self._reader, functools.partial(fn, *args)
        )

    async def broker_credentials(self) -> list[tuple[str, str]]:
        return await self._run(self._db.broker_credentials)

    async def revoke_session(self, session_id: str, *, by: str, reason: str) -> SessionRecord:
        return await self._run(self._db.revoke_session, session_id, by=by, reason=reason)


class SqliteStore(DatabaseStore):
    """The ``Store`` in one SQLite file (see ``DatabaseStore``)."""

    @staticmethod
    def _database() -> type[SqliteDatabase]:
        return SqliteDatabase

    def _open_version(self) -> sqlite3.Connection | None:
        return sqlite3.connect(
            f"{self.path.resolve().as_uri()}?mode=ro",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
        )


class PostgresStore(DatabaseStore):
    """The ``Store`` in a PostgreSQL database (see ``DatabaseStore``, ``PostgresDatabase``)."""

    @staticmethod
    def _database() -> type[SqliteDatabase]:
        from ._postgres import PostgresDatabase  # psycopg only where PostgreSQL is used

        return PostgresDatabase


def open_database(
    url: str | Path,
    *,
    readonly: bool = False,
    auth_policy: AuthPolicy | None = None,
    signer: CheckpointSigner | None = None,
    witness: str | Path | None = None,
    checkpoint_every_records: int = 256,
    checkpoint_every_s: float = 10.0,
) -> SqliteDatabase:
    """The synchronous store for ``url`` (the CLI's and scripts'): see ``open_store``."""
    kind, where = parse_store_url(url)
    cls: type[SqliteDatabase] = SqliteDatabase
    if kind == "postgresql":
        from ._postgres import PostgresDatabase  # psycopg only where PostgreSQL is used

        cls = PostgresDatabase
    return cls(
        where,
        readonly=readonly,
        auth_policy=auth_policy,
        signer=signer,
        witness=witness,
        checkpoint_every_records=checkpoint_every_records,
        checkpoint_every_s=checkpoint_every_s,
    )


def parse_store_url(url: str | Path) -> tuple[str, str]:
    """(``"sqlite"``, path) or (``"postgresql"``, url); ``StoreError`` for anything else."""
    text = str(url)
    if is_postgres_url(text):
        return "postgresql", text
    if text.startswith("sqlite:///"):
        return "sqlite", text.removeprefix("sqlite:///")
    if "://" in text:
        raise StoreError(
            f"unknown store URL scheme in {text!r} (use a file path, sqlite:///path or "
            "postgresql://user@host/dbname)"
        )
    return "sqlite", text


def open_store(
    url: str | Path,
    *,
    auth_policy: AuthPolicy | None = None,
    signer: CheckpointSigner | None = None,
    witness: str | Path | None = None,
    checkpoint_every_records: int = 256,
    checkpoint_every_s: float = 10.0,
    on_checkpoint: Callable[[int, Checkpoint], None] | None = None,
) -> Store:
    """The store for ``url``: a file path or ``sqlite:///path`` (SQLite), or
    ``postgresql://user@host:port/dbname`` (PostgreSQL; a password is best kept in
    ``~/.pgpass`` or ``$PGPASSWORD``, not in the URL)."""
    kind, where = parse_store_url(url)
    cls: type[SqliteStore | PostgresStore] = PostgresStore if kind == "postgresql" else SqliteStore
    return cls(
        where,
        auth_policy=auth_policy,
        signer=signer,
        witness=witness,
        checkpoint_every_records=checkpoint_every_records,
        checkpoint_every_s=checkpoint_every_s,
        on_checkpoint=on_checkpoint,
    )

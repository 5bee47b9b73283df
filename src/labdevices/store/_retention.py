"""Telemetry retention: raw samples past their policy are archived, rolled up per minute, removed.

Each step is one small transaction that writes, under the audit chain:

- ``telemetry_rollups``: min/mean/max/count per (device, signal, minute) of the samples removed;
- a ``telemetry_removals`` row (audited, ``telemetry.rollup``) naming the blocks removed whole
  (id ranges and the hash of their rows as the chain last recorded them), the blocks trimmed,
  the archive file holding every removed sample with its SHA-256, and the hash of its roll-ups;
- for a block that keeps samples of longer-lived signals, its new count and digest (audited,
  ``telemetry.trim``).

``audit verify`` thus knows which blocks are legitimately gone and still flags any other
deletion, and a roll-up edited, deleted or inserted. A block that does not match its audit
record is never removed (retention would launder the tampering): the step stops and says so.
Only blocks whose records a signed checkpoint covers are removed, so the archive (the blocks,
the audit records from theirs to that checkpoint, and the checkpoint) verifies on its own.
Audit records, jobs, alarms, users and signatures are never touched.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._archive import write_telemetry_archive
from ._checkpoints import CheckpointSigner, parse_checkpoint
from ._errors import StoreError
from ._rows import object_of, read_row, row_sha256, telemetry_digest
from ._sqlite import SqliteDatabase, _iso

__all__ = [
    "RetentionPolicy",
    "RetentionSummary",
    "rollup_digest",
    "run_retention",
]

_DAY_S = 86_400.0
#: SQLite's page cache of a retention run's connections (KiB, as a negative cache_size): it reads
#: each block once, and a run beside the daemon should not add to its memory.
CACHE_KIB = -1024


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How many days raw samples are kept: ``raw_days`` unless a device or a ``device/signal``
    has its own number."""

    raw_days: float
    devices: dict[str, float] = field(default_factory=dict)
    signals: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, days in [
            ("raw_days", self.raw_days),
            *self.devices.items(),
            *self.signals.items(),
        ]:
            if not (isinstance(days, int | float) and math.isfinite(days) and days > 0):
                raise StoreError(f"retention: {name}: days must be a number > 0, got {days!r}")

    def horizon_s(self, device: str, signal: str) -> float:
        """Seconds a raw sample of ``device``/``signal`` is kept."""
        days = self.signals.get(f"{device}/{signal}")
        if days is None:
            days = self.devices.get(device, self.raw_days)
        return days * _DAY_S

    @property
    def shortest_s(self) -> float:
        return min([self.raw_days, *self.devices.values(), *self.signals.values()]) * _DAY_S


@dataclass
class RetentionSummary:
    """What a retention run did (or, with ``dry_run``, would do)."""

    dry_run: bool
    blocks_removed: int = 0
    blocks_trimmed: int = 0
    samples: int = 0
    rollups: int = 0
    removals: list[int] = field(default_factory=list)
    archive: str | None = None
    archive_sha256: str | None = None
    notes: list[str] = field(default_factory=list)
    #: the run took as many blocks as it may: more may be due at once
    more: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "blocks_removed": self.blocks_removed,
            "blocks_trimmed": self.blocks_trimmed,
            "samples": self.samples,
            "rollups": self.rollups,
            "removals": self.removals,
            "archive": self.archive,
            "archive_sha256": self.archive_sha256,
            "notes": self.notes,
            "more": self.more,
        }


def rollup_digest(rows: Iterable[Sequence[Any]]) -> str:
    """SHA-256 of roll-up rows, each (device, signal, minute, unit, count, numeric, min, mean,
    max, t_first, t_last), in id order: what ``telemetry_removals.rollups_sha256`` holds."""
    return telemetry_digest(rows)


_ROLLUP_COLUMNS = "device, signal, minute, unit, count, numeric, min, mean, max, t_first, t_last"


@dataclass(slots=True)
class _Minute:
    unit: str
    count: int = 0
    numeric: int = 0
    total: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf
    t_first: float = math.inf
    t_last: float = -math.inf

    def add(self, t: float, value: Any) -> None:
        self.count += 1
        self.t_first = min(self.t_first, t)
        self.t_last = max(self.t_last, t)
        if isinstance(value, int | float) and math.isfinite(value):
            self.numeric += 1
            self.total += value
            self.lo = min(self.lo, value)
            self.hi = max(self.hi, value)

    def row(self, device: str, signal: str, minute: int) -> tuple[Any, ...]:
        # As SQLite gives them back: REAL columns hold floats, empty statistics are NULL, and
        # -0.0 reads back 0.0 (``+ 0.0`` turns -0.0 into 0.0 and leaves the rest alone).
        stats: tuple[float | None, ...] = (None, None, None)
        if self.numeric:
            mean = self.total / self.numeric
            stats = (float(self.lo) + 0.0, mean + 0.0, float(self.hi) + 0.0)
        return (device, signal, minute, self.unit, self.count, self.numeric, *stats,
                float(self.t_first), float(self.t_last))  # fmt: skip


def _ranges(ids: Sequence[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for i in ids:
        if out and out[-1][1] == i - 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return out


def _blocks_sha256(pairs: Iterable[tuple[int, str]]) -> str:
    """Hash of the removed blocks' ids with their rows' hashes as last recorded in the chain."""
    h = hashlib.sha256()
    for block, recorded in pairs:
        h.update(f"{block} {recorded}\n".encode())
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def run_retention(
    path: str | Path,
    policy: RetentionPolicy,
    *,
    archive_dir: str | Path | None = None,
    now: float | None = None,
    dry_run: bool = False,
    max_blocks: int = 2000,
    step_blocks: int = 100,
    actor: str = "daemon",
    stop: threading.Event | None = None,
    signer: CheckpointSigner | None = None,
    witness: str | Path | None = None,
) -> RetentionSummary:
    """One retention run over the store at ``path`` (a file or a PostgreSQL URL), on its own
    connection (safe beside the daemon: each step is a short write transaction).

    At most ``max_blocks`` blocks are archived into one file in ``archive_dir`` (default
    ``<store>.archive/``; for a PostgreSQL URL beside its default key in the data folder,
    see ``local_stand_in``), then removed or trimmed ``step_blocks`` at a time; the next run
    goes on from there. ``stop`` is checked between steps.

    ``signer`` (the daemon's key, from the CLI): used only when the store was closed by its
    daemon, to sign the run's records as a daemon would (an ``open`` and a ``closed``
    checkpoint); while the daemon runs, its own next checkpoint anchors them.
    """
    from ._store import open_database  # _store imports this module

    when = time.time() if now is None else now
    summary = RetentionSummary(dry_run)
    if dry_run or not _closed(path):
        signer = None
    with open_database(path, readonly=dry_run, signer=signer, witness=witness) as database:
        if database.dialect.name == "sqlite":
            database._db.execute(f"PRAGMA cache_size = {CACHE_KIB}")
        # beside the file, or for a PostgreSQL URL beside its default key (``local_stand_in``)
        out_dir = (
            Path(archive_dir)
            if archive_dir is not None
            else database.path.with_name(database.path.name + ".archive")
        )
        if not dry_run and not database._lock_retention():
            summary.notes.append("another retention run is in progress on this store")
            return summary
        plan = _plan(database, policy, when, max_blocks, summary)
        if not plan or dry_run:
            return summary
        first_seq = min(seq for _, _, seq in plan)
        last_seq = max(seq for _, _, seq in plan)
        conn = database._db
        cut = conn.execute(
            "SELECT id FROM checkpoints WHERE size >= ? ORDER BY id LIMIT 1", (last_seq,)
        ).fetchone()
        assert cut is not None  # _plan kept only blocks a checkpoint covers
        out_dir.mkdir(parents=True, exist_ok=True)
        ids = [block for block, _, _ in plan]
        name = f"telemetry-{ids[0]}-{ids[-1]}-{_iso(when).replace(':', '')}.sqlite"
        archive = write_telemetry_archive(
            database.location,
            out_dir / name,
            blocks=ids,
            first_seq=first_seq,
            checkpoint=int(cut[0]),
        )
        digest = _file_sha256(archive)
        summary.archive, summary.archive_sha256 = str(archive), digest
        for i in range(0, len(plan), step_blocks):
            if stop is not None and stop.is_set():
                summary.notes.append("stopped before the end; the next run goes on")
                break
            step = plan[i : i + step_blocks]
            _step(database, policy, when, step, archive.name, digest, actor, summary)
    return summary


def _closed(path: str | Path) -> bool:
    """Whether the store's last checkpoint says its daemon closed it (not running now)."""
    from ._store import open_database

    with open_database(path, readonly=True) as database:
        last = database._db.execute(
            "SELECT note FROM checkpoints ORDER BY id DESC LIMIT 1"
        ).fetchone()
    return last is not None and parse_checkpoint(last[0], None).state == "closed"


def _plan(
    database: SqliteDatabase,
    policy: RetentionPolicy,
    now: float,
    max_blocks: int,
    summary: RetentionSummary,
) -> list[tuple[int, str, int]]:
    """(block, sha256, seq of its last audit record) of the blocks holding expired samples,
    oldest first, all under a checkpoint. Dry run: counts what they hold."""
    conn = database._db
    anchored = conn.execute("SELECT COALESCE(MAX(size), 0) FROM checkpoints").fetchone()[0]
    if anchored == 0:
        summary.notes.append("no checkpoint yet: nothing can be removed")
        return []
    candidates = conn.execute(
        "SELECT b.id, b.sha256 FROM telemetry_blocks b"
        " LEFT JOIN telemetry_block_expiry e ON e.block = b.id"
        " WHERE b.t_first < ? AND (e.expires IS NULL OR e.expires <= ?) ORDER BY b.id LIMIT ?",
        (now - policy.shortest_s, now, max_blocks),
    ).fetchall()
    plan: list[tuple[int, str, int]] = []
    hints: list[tuple[int, float]] = []  # blocks whose samples all live longer: when they expire
    summary.more = len(candidates) == max_blocks
    for block, sha in candidates:
        seq = conn.execute(
            "SELECT MAX(seq) FROM audit WHERE object = ?",
            (object_of("telemetry_blocks", block),),
        ).fetchone()[0]
        if seq is not None and seq > anchored:
            summary.more = False
            break  # not yet under a signed checkpoint: neither it nor the blocks after it
        _, _, rows = _checked(database, conn, block)
        expired = sum(1 for r in rows if r[2] < now - policy.horizon_s(r[0], r[1]))
        if expired == 0 and rows:
            hints.append((block, min(r[2] + policy.horizon_s(r[0], r[1]) for r in rows)))
            continue
        plan.append((block, sha, seq))
        if summary.dry_run:
            summary.samples += expired
            if expired == len(rows):
                summary.blocks_removed += 1
            else:
                summary.blocks_trimmed += 1
    if hints and not summary.dry_run:
        with database._tx(durable=False) as db:
            for block, expires in hints:
                _hint(db, block, expires)
    return plan


def _hint(db: Any, block: int, expires: float) -> None:
    """Skip ``block`` until ``expires`` (portable SQL: no upsert)."""
    db.execute("DELETE FROM telemetry_block_expiry WHERE block = ?", (block,))
    db.execute(
        "INSERT INTO telemetry_block_expiry (block, expires) VALUES (?, ?)", (block, expires)
    )


def _checked(
    database: SqliteDatabase, conn: Any, block: int
) -> tuple[dict[str, Any], str, list[tuple[Any, ...]]]:
    """A block's row, the row hash its last audit record holds, and its samples: refused
    (``StoreError``) unless they match, for a tampered block is evidence, never removed."""
    row = read_row(conn, "telemetry_blocks", block)
    recorded = conn.execute(
        "SELECT row_sha256 FROM audit WHERE object = ? AND row_sha256 IS NOT NULL"
        " ORDER BY seq DESC LIMIT 1",
        (object_of("telemetry_blocks", block),),
    ).fetchone()
    rows = _rows(conn, block)
    if (
        row is None
        or recorded is None
        or row_sha256("telemetry_blocks", row) != recorded[0]
        or telemetry_digest(rows) != row["sha256"]
    ):
        raise StoreError(
            f"retention: telemetry block {block} does not match its audit record; it is kept "
            "as evidence and retention stops: run `labdevices audit verify`",
            file=database.label,
        )
    return row, str(recorded[0]), rows


def _rows(conn: Any, block: int) -> list[tuple[Any, ...]]:
    """(device, signal, t, value, unit, quality) of a block, in stored order."""
    return conn.execute(  # type: ignore[no-any-return]
        "SELECT device, signal, t, value, unit, quality FROM telemetry WHERE block = ? ORDER BY rowid",
        (block,),
    ).fetchall()


def _step(
    database: SqliteDatabase,
    policy: RetentionPolicy,
    now: float,
    step: list[tuple[int, str, int]],
    archive: str,
    archive_sha256: str,
    actor: str,
    summary: RetentionSummary,
) -> None:
    """Remove or trim a few blocks, roll their expired samples up, record it: one transaction."""
    with database._tx(durable=True) as db:
        minutes: dict[tuple[str, str, int, str], _Minute] = {}
        removed: list[tuple[int, str]] = []
        trimmed: list[tuple[int, list[tuple[Any, ...]], set[tuple[str, str]], dict[str, Any]]] = []
        samples = 0
        for block, planned_sha, _ in step:
            row, recorded, rows = _checked(database, db, block)
            if row["sha256"] != planned_sha:
                raise StoreError(
                    f"retention: telemetry block {block} changed after it was archived "
                    "(another retention run?); run again",
                    file=database.label,
                )
            kept = []
            gone: set[tuple[str, str]] = set()
            for sample in rows:
                device, signal, t, value, unit, _ = sample
                if t < now - policy.horizon_s(device, signal):
                    minute = int(t // 60) * 60
                    acc = minutes.setdefault((device, signal, minute, unit), _Minute(unit))
                    acc.add(t, value)
                    gone.add((device, signal))
                    samples += 1
                else:
                    kept.append(sample)
            if not kept:
                removed.append((block, recorded))
            else:
                trimmed.append((block, kept, gone, row))
        rollups = [acc.row(d, s, m) for (d, s, m, _), acc in sorted(minutes.items())]
        ids = [b for b, _ in removed]
        cur = db.execute(
            "INSERT INTO telemetry_removals (time, blocks, blocks_removed, blocks_sha256,"
            " blocks_trimmed, samples, rollups, rollups_sha256, archive, archive_sha256)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                now,
                json.dumps(_ranges(ids), separators=(",", ":")),
                len(removed),
                _blocks_sha256(removed),
                len(trimmed),
                samples,
                len(rollups),
                rollup_digest(rollups),
                archive,
                archive_sha256,
            ),
        )
        removal = int(cur.fetchone()[0])
        db.executemany(
            f"INSERT INTO telemetry_rollups (removal, {_ROLLUP_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(removal, *r) for r in rollups],
        )
        for block in ids:
            db.execute("DELETE FROM telemetry WHERE block = ?", (block,))
            db.execute("DELETE FROM telemetry_blocks WHERE id = ?", (block,))
            db.execute("DELETE FROM telemetry_block_expiry WHERE block = ?", (block,))
        for block, kept, gone, old in trimmed:
            _trim(database, db, block, kept, gone, old, now, removal, actor, policy)
        database._append_audit(
            db,
            t=time.time(),
            actor=actor,
            action="telemetry.rollup",
            object=object_of("telemetry_removals", removal),
            row=("telemetry_removals", removal),
            old=None,
            new={
                "blocks_removed": len(removed),
                "blocks_trimmed": len(trimmed),
                "samples": samples,
                "rollups": len(rollups),
                "archive": archive,
                "archive_sha256": archive_sha256,
            },
            reason="retention policy",
        )
    summary.removals.append(removal)
    summary.blocks_removed += len(removed)
    summary.blocks_trimmed += len(trimmed)
    summary.samples += samples
    summary.rollups += len(rollups)


def _trim(
    database: SqliteDatabase,
    db: Any,
    block: int,
    kept: list[tuple[Any, ...]],
    gone: set[tuple[str, str]],
    old: dict[str, Any],
    now: float,
    removal: int,
    actor: str,
    policy: RetentionPolicy,
) -> None:
    """A block keeps only its samples that live longer; its new digest enters the chain."""
    for device, signal in sorted(gone):
        db.execute(
            "DELETE FROM telemetry WHERE block = ? AND device = ? AND signal = ? AND t < ?",
            (block, device, signal, now - policy.horizon_s(device, signal)),
        )
    times = [r[2] for r in kept]
    expires = min(t + policy.horizon_s(d, s) for d, s, t, *_ in kept)
    db.execute(
        "UPDATE telemetry_blocks SET count = ?, t_first = ?, t_last = ?, sha256 = ? WHERE id = ?",
        (len(kept), min(times), max(times), telemetry_digest(kept), block),
    )
    _hint(db, block, expires)
    database._append_audit(
        db,
        t=time.time(),
        actor=actor,
        action="telemetry.trim",
        object=object_of("telemetry_blocks", block),
        row=("telemetry_blocks", block),
        old={"samples": old["count"], "sha256": old["sha256"]},
        new={"samples": len(kept), "removal": removal},
        reason=f"retention policy ({object_of('telemetry_removals', removal)})",
    )

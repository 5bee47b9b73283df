"""The audit chain: canonical encoding, record hashes, and the proof that nothing was changed.

Each record's hash is SHA-256 over the canonical JSON of its fields and the hash of
the record before it, so editing, deleting or reordering any record breaks the chain
at that record. This module is pure: it knows records, not databases.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from ._errors import StoreError
from ._models import AuditRecord

__all__ = [
    "GENESIS_HASH",
    "Problem",
    "VerifyResult",
    "canonical_json",
    "record_hash",
    "verify_chain",
]

#: ``prev_hash`` of the first record
GENESIS_HASH = "0" * 64

Problem = Literal["edited", "deleted", "reordered", "inserted", "truncated"]


def _reject_non_finite(value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise StoreError(f"audit values must be finite numbers, got {value!r}")
    if isinstance(value, dict):
        for v in value.values():
            _reject_non_finite(v)
    elif isinstance(value, list | tuple):
        for v in value:
            _reject_non_finite(v)


def canonical_json(value: Any) -> str:
    """One spelling per value: sorted keys, no spaces, UTF-8, no NaN/Infinity.

    Values that JSON cannot hold are refused with a ``StoreError`` rather than
    being stringified, so what is hashed is exactly what was given.
    """
    _reject_non_finite(value)
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"audit value is not JSON-serialisable: {exc}") from exc


def record_hash(
    *,
    seq: int,
    time: str,
    actor: str,
    action: str,
    object: str,
    old: str | None,
    new: str | None,
    reason: str | None,
    prev_hash: str,
    row_sha256: str | None = None,
) -> str:
    """SHA-256 (hex) of the canonical encoding of one record's fields and ``prev_hash``.

    ``row_sha256`` (the hash of the row the action produced) is part of the body only
    when present, so records written before it existed keep their hashes.
    """
    body: dict[str, Any] = {
        "seq": seq,
        "time": time,
        "actor": actor,
        "action": action,
        "object": object,
        "old": old,
        "new": new,
        "reason": reason,
        "prev_hash": prev_hash,
    }
    if row_sha256 is not None:
        body["row_sha256"] = row_sha256
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def _hash_as(rec: AuditRecord, seq: int) -> str:
    return record_hash(
        seq=seq,
        time=rec.time,
        actor=rec.actor,
        action=rec.action,
        object=rec.object,
        old=rec.old,
        new=rec.new,
        reason=rec.reason,
        prev_hash=rec.prev_hash,
        row_sha256=rec.row_sha256,
    )


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of ``verify_audit``: ``ok``, or the first bad record and what happened to it."""

    ok: bool
    records: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: Problem | None = None
    message: str = ""


def verify_chain(
    records: Iterable[AuditRecord],
    *,
    expected_head: tuple[int, str] | None = None,
    max_seq: int | None = None,
) -> VerifyResult:
    """Walk ``records`` (in ``seq`` order) from the first and stop at the first broken link.

    ``expected_head`` is the (seq, hash) the store recorded as its last append: records
    removed from the end of the chain leave no gap, and only that comparison sees them.
    ``max_seq`` bounds the search for where a moved record came from.
    """
    prev_hash = GENESIS_HASH
    expected = 1
    count = 0
    for rec in records:
        if rec.seq > expected:
            missing = (
                f"record {expected}"
                if rec.seq == expected + 1
                else f"records {expected}–{rec.seq - 1}"
            )
            return _bad(
                count,
                expected - 1,
                prev_hash,
                expected,
                "deleted",
                f"{missing} deleted: the chain jumps from seq {expected - 1} to {rec.seq}",
            )
        if rec.seq < expected:  # only possible if the caller did not sort; treat as reordering
            return _bad(
                count,
                expected - 1,
                prev_hash,
                rec.seq,
                "reordered",
                f"record {rec.seq} appears after record {expected - 1}",
            )
        if _hash_as(rec, rec.seq) != rec.hash:
            origin = _original_seq(rec, max_seq if max_seq is not None else rec.seq + 1000)
            if origin is not None:
                return _bad(
                    count,
                    expected - 1,
                    prev_hash,
                    rec.seq,
                    "reordered",
                    f"record {rec.seq} was reordered: it holds the content of record {origin}",
                )
            return _bad(
                count,
                expected - 1,
                prev_hash,
                rec.seq,
                "edited",
                f"record {rec.seq} was edited: its content no longer matches its hash "
                f"(action {rec.action!r} on {rec.object!r} by {rec.actor!r} at {rec.time})",
            )
        if rec.prev_hash != prev_hash:
            return _bad(
                count,
                expected - 1,
                prev_hash,
                rec.seq,
                "inserted",
                f"record {rec.seq} does not follow record {rec.seq - 1}: its prev_hash does "
                f"not match (record {rec.seq} inserted or moved, or record {rec.seq - 1} "
                f"rewritten with a recomputed hash)",
            )
        prev_hash = rec.hash
        count += 1
        expected += 1
    head_seq = expected - 1
    if expected_head is not None:
        want_seq, want_hash = expected_head
        if want_seq > head_seq:
            return _bad(
                count,
                head_seq,
                prev_hash,
                head_seq + 1,
                "truncated",
                f"records {head_seq + 1}–{want_seq} deleted from the end: the chain stops at "
                f"seq {head_seq} but the store recorded seq {want_seq} as its last",
            )
        if want_seq == head_seq and want_hash != prev_hash:
            return _bad(
                count,
                head_seq,
                prev_hash,
                head_seq,
                "edited",
                f"record {head_seq} differs from the last record the store appended",
            )
        if want_seq < head_seq:
            return _bad(
                count,
                head_seq,
                prev_hash,
                want_seq + 1,
                "inserted",
                f"records after seq {want_seq} were appended outside the store",
            )
    return VerifyResult(
        True,
        count,
        head_seq,
        prev_hash,
        message=f"audit chain intact: {count} records, head {prev_hash[:16]}…",
    )


def _original_seq(rec: AuditRecord, max_seq: int) -> int | None:
    """The seq this record's hash was made for, if it was moved rather than edited."""
    for seq in range(1, max_seq + 2):
        if seq != rec.seq and _hash_as(rec, seq) == rec.hash:
            return seq
    return None


def _bad(
    count: int, head_seq: int, head_hash: str, seq: int, problem: Problem, message: str
) -> VerifyResult:
    return VerifyResult(False, count, head_seq, head_hash, seq, problem, message)

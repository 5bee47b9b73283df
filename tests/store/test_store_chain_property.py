"""Property: in any chain, any single edit, deletion or swap is found at the record it touched."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from labdevices.store import GENESIS_HASH, AuditRecord, record_hash, verify_chain

_FIELDS = ("time", "actor", "action", "object", "old", "new", "reason")


def _chain(n: int) -> list[AuditRecord]:
    out: list[AuditRecord] = []
    prev = GENESIS_HASH
    for seq in range(1, n + 1):
        fields = {
            "seq": seq,
            "time": f"2025-01-01T00:00:{seq:02d}Z",
            "actor": "alice",
            "action": "setpoint",
            "object": "inc/temp",
            "old": str(seq),
            "new": str(seq + 1),
            "reason": None,
            "prev_hash": prev,
        }
        rec = AuditRecord(**fields, hash=record_hash(**fields))  # type: ignore[arg-type]
        out.append(rec)
        prev = rec.hash
    return out


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 30), data=st.data())
def test_any_single_tampering_is_named(n: int, data: st.DataObject) -> None:
    chain = _chain(n)
    head = (chain[-1].seq, chain[-1].hash)
    assert verify_chain(chain, expected_head=head).ok
    k = data.draw(st.integers(0, n - 1), label="index")
    how = data.draw(st.sampled_from(["edit", "delete", "swap"]), label="how")
    seq = k + 1
    if how == "edit":
        field = data.draw(st.sampled_from(_FIELDS), label="field")
        chain[k] = dataclasses.replace(chain[k], **{field: "tampered"})
        expected = (seq, "edited")
    elif how == "delete":
        del chain[k]
        expected = (seq, "truncated" if seq == n else "deleted")
    else:
        if k == n - 1:
            k, seq = k - 1, seq - 1
        a, b = chain[k], chain[k + 1]
        chain[k] = dataclasses.replace(b, seq=a.seq)
        chain[k + 1] = dataclasses.replace(a, seq=b.seq)
        expected = (seq, "reordered")
    result = verify_chain(chain, expected_head=head, max_seq=n)
    assert not result.ok
    assert (result.first_bad_seq, result.problem) == expected, result.message

"""``audit verify``'s fast hashes agree with the store's own functions, value for value."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labdevices.store._rows import row_sha256, telemetry_digest
from labdevices.store._verify import _SAMPLE, _fast_row_hash

values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)


@given(st.dictionaries(st.text(min_size=1, max_size=10), values, max_size=8))
def test_row_hash_matches_row_sha256(row: dict[str, object]) -> None:
    row = {"id": 1, **row}
    assert _fast_row_hash("alarms", dict(row), ()) == row_sha256("alarms", row)


def test_row_hash_of_a_non_finite_value_never_matches() -> None:
    assert _fast_row_hash("alarms", {"id": 1, "x": math.inf}, ()) == ""


@given(
    st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8), st.floats(), values), max_size=5)
)
def test_sample_encoding_matches_telemetry_digest(rows: list[tuple[object, ...]]) -> None:
    import hashlib

    h = hashlib.sha256()
    for row in rows:
        h.update(_SAMPLE.encode(list(row)).encode() + b"\n")
    assert h.hexdigest() == telemetry_digest(rows)


@pytest.mark.parametrize("excluded", [("last_ack_line",)])
def test_excluded_columns_are_left_out(excluded: tuple[str, ...]) -> None:
    row = {"id": 3, "state": "running", "last_ack_line": 7}
    assert _fast_row_hash("jobs", dict(row), excluded) == row_sha256("jobs", row)

"""Exactly-once, in-order execution under corruption, lost acks and resets.

The host core and the firmware emulation are both sans-IO, so hypothesis can
drive thousands of lines through every fault pattern in well under a second per
example; ``test_printer_driver`` repeats the key cases over real pseudo-terminals.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labdevices.profiles import GcodeProfile, load_profile
from labdevices.sim.printer import FaultConfig, SimPrinterConfig
from labdevices.testing import OfflineStream, stream_offline

PROFILE = load_profile("marlin-pneumatic")
assert isinstance(PROFILE, GcodeProfile)


def program(n: int) -> list[str]:
    return [f"G1 X{i % 97}.{i % 10} Y{(i * 7) % 89}.25 F{600 + i % 5}" for i in range(n)]


def run(
    lines: list[str], faults: FaultConfig, seed: int, advanced_ok: bool, window: int
) -> OfflineStream:
    config = SimPrinterConfig(
        profile="marlin-pneumatic",
        time_scale=0.0,
        advanced_ok=advanced_ok,
        seed=seed,
        faults=faults,
    )
    return stream_offline(lines, PROFILE, config, window_lines=window)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    corrupt=st.sampled_from([0.0, 0.01, 0.05, 0.2]),
    ack_loss=st.sampled_from([0.0, 0.01, 0.1]),
    stall=st.sampled_from([0.0, 0.02]),
    seed=st.integers(0, 2**32 - 1),
    advanced_ok=st.booleans(),
    window=st.integers(1, 8),
)
def test_every_line_executes_once_in_order(
    corrupt: float, ack_loss: float, stall: float, seed: int, advanced_ok: bool, window: int
) -> None:
    lines = program(400)
    faults = FaultConfig(
        corrupt_rate=corrupt, ack_loss_rate=ack_loss, busy_stall_rate=stall, busy_stall_s=0.5
    )
    result = run(lines, faults, seed, advanced_ok, window)
    assert not result.reset
    assert result.executed == lines
    assert result.host.job_processed == len(lines)


@settings(max_examples=30, deadline=None)
@given(
    reset_after=st.integers(1, 300),
    corrupt=st.sampled_from([0.0, 0.05]),
    seed=st.integers(0, 2**32 - 1),
    advanced_ok=st.booleans(),
)
def test_a_reset_leaves_an_executed_prefix_and_is_reported(
    reset_after: int, corrupt: float, seed: int, advanced_ok: bool
) -> None:
    lines = program(400)
    faults = FaultConfig(corrupt_rate=corrupt, reset_after_lines=reset_after)
    result = run(lines, faults, seed, advanced_ok, 4)
    assert result.reset
    executed = [c for c in result.executed if c.startswith("G1")]
    # once each, in order, nothing skipped; acknowledged lines are a lower bound
    assert executed == lines[: len(executed)]
    assert result.host.job_processed <= len(executed)

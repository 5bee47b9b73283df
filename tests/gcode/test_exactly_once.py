"""Exactly-once, in-order execution under corruption, lost acks and resets.

The host core and the firmware emulation are both sans-IO, so hypothesis can
drive thousands of lines through every fault pattern in well under a second per
example; ``test_printer_driver`` repeats the key cases over real pseudo-terminals.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labdevices.profiles import GcodeProfile, load_profile
from labdevices.protocols import FirmwareReset, MarlinHost
from labdevices.sim._marlin import MarlinFirmware
from labdevices.sim.printer import FaultConfig, SimPrinterConfig

PROFILE = load_profile("marlin-pneumatic")
assert isinstance(PROFILE, GcodeProfile)


def program(n: int) -> list[str]:
    return [f"G1 X{i % 97}.{i % 10} Y{(i * 7) % 89}.25 F{600 + i % 5}" for i in range(n)]


def run(
    lines: list[str], faults: FaultConfig, seed: int, advanced_ok: bool, window: int
) -> tuple[MarlinHost, MarlinFirmware, bool]:
    """Stream ``lines``; returns (host, firmware, whether the firmware reset)."""
    config = SimPrinterConfig(
        profile="marlin-pneumatic",
        time_scale=0.0,
        advanced_ok=advanced_ok,
        seed=seed,
        faults=faults,
    )
    fw = MarlinFirmware(PROFILE, config)
    host = MarlinHost(window_lines=window, rx_buffer_bytes=128, max_resends_per_line=50)
    now = 0.0
    fw.take_output(now)  # the power-on banner
    start_executed = len(fw.executed)
    host.start_job(lines)
    probes = 0
    while host.job_processed < len(lines):
        data = host.data_to_send()
        if data:
            fw.receive(data, now)
        fw.tick(now)
        out = fw.take_output(now)
        if out:
            events = host.receive_data(out)
            if any(isinstance(e, FirmwareReset) for e in events):
                return host, fw, True
            continue
        if data:
            continue
        wake = fw.next_wakeup()
        if wake is not None and wake > now:
            now = wake
            continue
        # Silence with lines in flight: the driver's ack timeout fires.
        probes += 1
        assert probes < 10_000, "stream never finished"
        now += 1.0
        host.probe()
    fw.executed[:] = fw.executed[start_executed:]
    return host, fw, False


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
    host, fw, reset = run(lines, faults, seed, advanced_ok, window)
    assert not reset
    assert fw.executed == lines
    assert host.job_processed == len(lines)


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
    host, fw, reset = run(lines, faults, seed, advanced_ok, 4)
    assert reset
    executed = [c for c in fw.executed if c.startswith("G1")]
    # once each, in order, nothing skipped; acknowledged lines are a lower bound
    assert executed == lines[: len(executed)]
    assert host.job_processed <= len(executed)

"""Property: the real driver over a real pseudo-terminal executes every line once, in order.

Random corruption, lost acks, busy stalls and firmware resets, drawn by
hypothesis; the simulator records what it executed.
"""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from labdevices.devices.gcode import GcodePrinter, JobOutcome
from labdevices.profiles import GcodeProfile, load_profile
from labdevices.sim.printer import FaultConfig, SimPrinterConfig, SimulatedPrinter

PROFILE = load_profile("marlin-pneumatic")
assert isinstance(PROFILE, GcodeProfile)


def program(n: int) -> list[str]:
    return [f"G1 X{i % 97}.{i % 10} Y{(i * 7) % 89}.5 F{900 + i}" for i in range(n)]


async def scenario(faults: FaultConfig, seed: int, advanced_ok: bool) -> None:
    lines = program(300)
    config = SimPrinterConfig(
        profile="marlin-pneumatic",
        time_scale=0.0,
        seed=seed,
        advanced_ok=advanced_ok,
        faults=faults,
    )
    async with (
        SimulatedPrinter(config=config) as sim,
        GcodePrinter(
            "p", PROFILE, sim.port or "", ack_timeout_s=0.1, reconnect=False, report_interval_s=60
        ) as printer,
    ):
        async with asyncio.timeout(60):  # a hang is a failure, not a stuck suite
            result = await printer.run_job(lines)
        executed = [c for c in sim.executed if c.startswith("G1")]
    if faults.reset_after_lines is None:
        assert result.outcome == JobOutcome.COMPLETED, result.error
        assert executed == lines
    else:
        assert result.outcome == JobOutcome.INTERRUPTED
        assert executed == lines[: len(executed)]  # a prefix: once each, in order
        assert result.last_acked_line <= len(executed)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    corrupt=st.sampled_from([0.0, 0.02, 0.1]),
    ack_loss=st.sampled_from([0.0, 0.02]),
    stall=st.sampled_from([0.0, 0.01]),
    reset_after=st.one_of(st.none(), st.integers(20, 250)),
    seed=st.integers(0, 2**31),
    advanced_ok=st.booleans(),
)
# Found by hypothesis: the handshake's M115 `ok` is lost (the driver then waited forever).
@example(corrupt=0.0, ack_loss=0.02, stall=0.0, reset_after=None, seed=1931, advanced_ok=False)
# ... and the handshake's M115 corrupted into another command (now numbered and checksummed).
@example(corrupt=0.02, ack_loss=0.0, stall=0.0, reset_after=None, seed=252, advanced_ok=False)
def test_driver_executes_stream_exactly_once(
    corrupt: float,
    ack_loss: float,
    stall: float,
    reset_after: int | None,
    seed: int,
    advanced_ok: bool,
) -> None:
    faults = FaultConfig(
        corrupt_rate=corrupt,
        ack_loss_rate=ack_loss,
        busy_stall_rate=stall,
        busy_stall_s=0.05,
        reset_after_lines=reset_after,
    )
    asyncio.run(scenario(faults, seed, advanced_ok))

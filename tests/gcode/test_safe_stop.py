"""Stop first, reconcile after (issue #10, items 2, 5 and 8), against the simulator on real ptys.

Long moves run at real time (``time_scale=1``): a host that waits for its lines in
flight before stopping keeps the head moving for tens of seconds.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from labdevices.cli._printer import report
from labdevices.devices.gcode import GcodePrinter, JobOutcome, JobResult
from labdevices.profiles import GcodeProfile, load_profile
from labdevices.sim.printer import SimPrinterConfig, SimulatedPrinter

from .test_printer_driver import rig

MARLIN = load_profile("marlin-pneumatic")
assert isinstance(MARLIN, GcodeProfile)
DRIVER = ("M110", "M115", "M155", "M105")

#: 100 mm at 600 mm/min: ten seconds a move
LONG_MOVES = ["G90", "M126 S255", "M42 P6 S128"] + [
    f"G1 X{10 + (i % 2) * 100} Y{i % 50} F600" for i in range(40)
]


def job_part(executed: list[str]) -> list[str]:
    """The job's lines the firmware executed before the stop's M410."""
    end = executed.index("M410") if "M410" in executed else len(executed)
    return [c for c in executed[:end] if not c.startswith(DRIVER)]


async def test_cancel_stops_long_real_time_moves_at_once() -> None:
    async with rig(time_scale=1.0) as (sim, printer):
        job = asyncio.create_task(printer.run_job(LONG_MOVES))
        # the planner is full of ten-second moves and the host has lines in flight
        await sim.wait_until(lambda s: s.state.planner_blocks >= 10, timeout=10)
        assert printer._host.in_flight > 0
        async with asyncio.timeout(8):  # a host that drains first needs ~40 s here
            await printer.cancel()
        state = sim.state
        assert state.planner_blocks <= 1  # quickstop: nothing left to move but the lift
        assert state.valves == {0: False, 1: False}
        assert state.pressure_setpoints_kpa == {0: 0.0, 1: 0.0}
        assert [word for _t, word in sim.emergency] == ["M410"]  # acted on as it arrived
        result = await job
        assert result.outcome == JobOutcome.CANCELLED and result.error is None
        # item 8: the lines acknowledged are counted after the reconciliation
        assert result.last_acked_line == len(job_part(sim.executed))
        assert sim.executed[-3:] == ["G91", "G0 Z5.0", "G90"]  # then the nozzle is lifted


async def test_cancelling_the_awaiting_task_stops_the_same_way() -> None:
    async with rig(time_scale=1.0) as (sim, printer):
        job = asyncio.create_task(printer.run_job(LONG_MOVES))
        await sim.wait_until(lambda s: s.state.planner_blocks >= 10, timeout=10)
        job.cancel()
        async with asyncio.timeout(8):
            with pytest.raises(asyncio.CancelledError):
                await job
        assert sim.state.planner_blocks <= 1
        assert sim.state.valves == {0: False, 1: False}


async def test_unknown_deposition_command_stops_the_job() -> None:
    """A job for another dialect: the firmware ignores its valve and pressure commands."""
    cellink = ["G21", "G90", "M773 T0 P85.0", "M750 T0"]
    cellink += [f"G1 X{i % 90}.5 Y{(i * 7) % 80}.5 F600" for i in range(200)] + ["M751 T0"]
    async with rig() as (sim, printer):
        result = await printer.run_job(cellink)
        assert result.outcome == JobOutcome.FAILED
        assert result.error is not None
        assert "'M773 T0 P85.0' (Unknown command)" in str(result.error)
        moves = [c for c in sim.executed if c.startswith("G1 ")]
        assert len(moves) < 10  # only the few lines already in flight
        assert "M410" in sim.executed
        assert sim.state.valves == {0: False, 1: False}


async def test_unknown_command_from_the_profile_dialect_is_named_as_deposition() -> None:
    """The profile says Baricuda valves (M126/M127), the firmware has none: no deposition."""
    config = SimPrinterConfig(profile="cellink-biox", time_scale=0.0)
    async with (
        SimulatedPrinter(config=config) as sim,
        GcodePrinter("p", MARLIN, sim.url or "", reconnect=False) as printer,
    ):
        result = await printer.run_job(["G90", "M126 S255"] + ["G1 X1 Y1"] * 50)
    assert result.outcome == JobOutcome.FAILED
    assert "deposition command 'M126 S255'" in str(result.error)


def test_report_rate_counts_only_acknowledged_lines(capsys: pytest.CaptureFixture[str]) -> None:
    report(JobResult(JobOutcome.CANCELLED, 10_000, 100, 10.0))
    out = capsys.readouterr().out
    assert "100/10000 lines acknowledged in 10.0 s (10 lines/s)" in out


async def test_second_ctrl_c_is_an_emergency_stop(tmp_path: Path) -> None:
    # A dwell holds the firmware's queue: the stop's valve command waits behind it.
    path = tmp_path / "dwell.gcode"
    path.write_text("G90\nM126 S255\nG4 S60\nG1 X10\nM127\n")
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=1.0)) as sim:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "labdevices",
            "print",
            str(path),
            "--port",
            sim.url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await sim.wait_until(lambda s: "G4 S60" in s.executed, timeout=30)
            proc.send_signal(signal.SIGINT)
            await sim.wait_until(lambda s: any(w == "M410" for _t, w in s.emergency), timeout=10)
            assert not sim.state.halted
            proc.send_signal(signal.SIGINT)
            out, err = await asyncio.wait_for(proc.communicate(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert sim.state.halted
        assert [w for _t, w in sim.emergency] == ["M410", "M112"]
        assert proc.returncode == 1
        assert b"failed" in out and b"emergency stop" in out
        assert b"Traceback" not in out + err

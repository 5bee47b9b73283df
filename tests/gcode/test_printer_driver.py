"""GcodePrinter against the simulated printer over real pseudo-terminals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from labdevices.devices import DeviceState
from labdevices.devices.gcode import GcodePrinter, JobOutcome, JobProgress, load_gcode
from labdevices.errors import DeviceConnectionError, DeviceFault, JobRejected, LimitViolation
from labdevices.profiles import GcodeProfile, load_profile
from labdevices.sim.printer import FaultConfig, SimPrinterConfig, SimulatedPrinter


def job(n: int = 200) -> list[str]:
    out = ["G90", "M126 S255"]
    out += [f"G1 X{i % 50}.{i % 7} Y{(i * 3) % 40}.5 F1200" for i in range(n)]
    out += ["M127"]
    return out


@asynccontextmanager
async def rig(
    profile: str = "marlin-pneumatic", time_scale: float = 0.0, **sim_options: Any
) -> AsyncIterator[tuple[SimulatedPrinter, GcodePrinter]]:
    prof = load_profile(profile)
    assert isinstance(prof, GcodeProfile)
    opts = {k: sim_options.pop(k) for k in ("ack_timeout_s", "reconnect") if k in sim_options}
    config = SimPrinterConfig(profile=profile, time_scale=time_scale, **sim_options)
    async with SimulatedPrinter(config=config) as sim:
        opts.setdefault("ack_timeout_s", 0.5)
        opts.setdefault("reconnect", False)
        async with GcodePrinter("p1", prof, sim.port, report_interval_s=0.05, **opts) as printer:
            yield sim, printer


async def wait_until(cond: Callable[[], bool], printer: GcodePrinter) -> None:
    """Wait for a condition that changes as the printer acknowledges lines."""
    async with asyncio.timeout(10):
        while not cond():
            printer._wake.clear()
            await printer._wake.wait()


async def test_handshake_reads_firmware_and_capabilities() -> None:
    async with rig() as (_sim, printer):
        assert printer.state == DeviceState.IDLE
        assert "Marlin" in printer.firmware.get("FIRMWARE_NAME", "")
        assert printer.capabilities.get("EMERGENCY_PARSER") is True


async def test_job_executes_every_line_once_in_order() -> None:
    commands = job(500)
    progress: list[JobProgress] = []
    async with rig() as (sim, printer):
        result = await printer.run_job(commands, progress=progress.append)
        assert result.outcome == JobOutcome.COMPLETED
        assert result.last_acked_line == len(commands)
        assert [c for c in sim.executed if c in set(commands)][-len(commands) :] == commands
        assert job_lines(sim.executed, commands) == commands
        assert progress[-1].lines_done == len(commands)
        assert printer.state == DeviceState.IDLE


def job_lines(executed: list[str], commands: list[str]) -> list[str]:
    """The executed stream without the driver's own commands (M110, M115, M155, M105 …)."""
    own = ("M110", "M115", "M155", "M105")
    return [c for c in executed if not c.startswith(own)]


async def test_telemetry_samples_from_reports() -> None:
    async with rig("cellink-biox") as (_sim, printer):
        async with printer.subscribe() as q:
            async with asyncio.timeout(5):
                names = set()
                while not {"bed_temperature", "printhead0_pressure"} <= names:
                    names.add((await q.get()).signal)
        await printer.write("printhead0_pressure_setpoint", 85.0)
        sample = await printer.read("bed_temperature")
        assert sample.unit == "degC"


async def test_out_of_limit_setpoint_is_refused_before_the_wire() -> None:
    async with rig() as (sim, printer):
        before = list(sim.executed)
        with pytest.raises(LimitViolation, match="above the limit 60"):
            await printer.write("bed_temperature_setpoint", 95.0)
        assert sim.executed == before


async def test_pause_resume_loses_and_repeats_nothing() -> None:
    commands = job(400)
    async with rig(time_scale=0.0005) as (sim, printer):
        task = asyncio.create_task(printer.run_job(commands))
        await wait_until(lambda: printer._host.job_processed > 50, printer)
        await printer.pause()
        assert printer.state == DeviceState.PAUSED
        done_at_pause = printer._host.job_processed
        assert sim.state.valves[0] is False  # the open valve was closed while paused
        await printer.resume()
        result = await task
    assert result.outcome == JobOutcome.COMPLETED
    lines = job_lines(sim.executed, commands)
    # the pause added M400 + valve close, the resume reopened the valve: the job itself is intact
    extra = ["M400", "M127", "M126 S255"]
    job_only = lines[:]
    for c in extra:
        idx = done_at_pause + extra.index(c)
        assert job_only[idx] == c
    del job_only[done_at_pause : done_at_pause + len(extra)]
    assert job_only == commands


async def test_cancel_stops_safely() -> None:
    commands = job(2000)
    async with rig(time_scale=0.0005) as (sim, printer):
        task = asyncio.create_task(printer.run_job(commands))
        await wait_until(lambda: printer._host.job_processed > 30, printer)
        await printer.cancel()
        result = await task
        assert result.outcome == JobOutcome.CANCELLED
        assert result.last_acked_line < len(commands)
        assert all(v is False for v in sim.state.valves.values())
        assert all(p == 0 for p in sim.state.pressure_setpoints_kpa.values())
        assert sim.executed[-3:] == ["G91", "G0 Z5.0", "G90"]
        assert printer.state == DeviceState.IDLE


async def test_emergency_stop_halts_ahead_of_queue() -> None:
    commands = job(5000)
    async with rig(time_scale=0.001) as (sim, printer):
        task = asyncio.create_task(printer.run_job(commands))
        await wait_until(lambda: printer._host.job_processed > 20, printer)
        await printer.emergency_stop()
        result = await task
        assert result.outcome == JobOutcome.FAILED
        assert isinstance(result.error, DeviceFault)
        assert printer.state == DeviceState.FAULT
        await sim.wait_until(lambda s: s.state.halted, timeout=5)
        with pytest.raises(DeviceFault):
            await printer.send("G28")


async def test_link_lost_mid_job_interrupts_with_last_acked_line() -> None:
    commands = job(3000)
    async with rig(faults=FaultConfig(disconnect_after_lines=500)) as (sim, printer):
        result = await printer.run_job(commands)
        assert result.outcome == JobOutcome.INTERRUPTED
        assert isinstance(result.error, DeviceConnectionError)
        assert 0 < result.last_acked_line < len(commands)
        done = job_lines(sim.executed, commands)
        assert done[: result.last_acked_line] == commands[: result.last_acked_line]
    assert printer.state in (DeviceState.FAULT, DeviceState.OFFLINE)


async def test_firmware_reset_mid_job_interrupts_never_resumes() -> None:
    commands = job(3000)
    async with rig(faults=FaultConfig(reset_after_lines=400)) as (sim, printer):
        result = await printer.run_job(commands)
        assert result.outcome == JobOutcome.INTERRUPTED
        assert "reset" in str(result.error)
        executed_after = len(sim.executed)
        # the printer is usable again, and nothing of the job was sent after the reset
        await printer.send("M105")
        assert printer.state == DeviceState.IDLE
        assert job_lines(sim.executed[executed_after:], commands) == []


async def test_second_job_is_rejected_while_one_runs() -> None:
    async with rig(time_scale=0.001) as (_sim, printer):
        task = asyncio.create_task(printer.run_job(job(2000)))
        await wait_until(lambda: printer._host.job_processed > 5, printer)
        with pytest.raises(JobRejected, match="already running"):
            await printer.run_job(["G28"])
        await printer.cancel()
        await task


async def test_device_context_cleans_up_and_is_not_reentrant(tmp_path: Any) -> None:
    prof = load_profile("marlin-pneumatic")
    assert isinstance(prof, GcodeProfile)
    printer = GcodePrinter("p1", prof, str(tmp_path / "no-such-port"))
    with pytest.raises(DeviceConnectionError, match="p1: cannot open"):
        async with printer:
            pass
    assert printer.state == DeviceState.OFFLINE
    with pytest.raises(RuntimeError, match="entered twice"):
        async with printer:
            pass


def test_load_gcode_strips_comments_and_blanks() -> None:
    assert load_gcode("G28 ; home\n\n; c\nG1 X1\n") == ["G28", "G1 X1"]


async def test_window_follows_a_firmware_with_a_smaller_ring() -> None:
    commands = job(300)
    async with rig(bufsize=2, rx_buffer_bytes=40) as (sim, printer):
        result = await printer.run_job(commands)
        assert sim.state.lost_bytes == 0  # over-eager streaming would overrun its buffer
        assert printer._host.firmware_bufsize == 2
    assert result.outcome == JobOutcome.COMPLETED
    assert job_lines(sim.executed, commands) == commands

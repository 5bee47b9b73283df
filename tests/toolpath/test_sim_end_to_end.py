"""The emitted G-code runs on the simulated printer end to end (sans-IO host and firmware)."""

from __future__ import annotations

from typing import Any

import pytest

from labdevices.profiles import GcodeProfile, load_profile
from labdevices.testing import stream_offline
from labdevices.toolpath import plan_job

from ._helpers import make_job

sim = pytest.importorskip("labdevices.sim.printer")
protocols = pytest.importorskip("labdevices.protocols")


def stream(profile_name: str, gcode: str) -> tuple[list[str], Any, str]:
    """Stream ``gcode`` as the driver does; returns (lines sent, firmware, all it said)."""
    profile = load_profile(profile_name)
    assert isinstance(profile, GcodeProfile)
    lines = [s for s in (protocols.strip_gcode(ln) for ln in gcode.splitlines()) if s]
    result = stream_offline(lines, profile, max_probes=100)
    del result.firmware.executed[: len(result.firmware.executed) - len(result.executed)]
    return lines, result.firmware, result.output


def test_scaffold_runs_on_the_simulated_biox() -> None:
    job = make_job(
        bed_temperature_c=20.0,
        crosslinking={"every_n_layers": 2, "uv_seconds": 3.0},
        object={
            "type": "scaffold",
            "shape": "disc",
            "center_mm": [60, 45],
            "diameter_mm": 10.0,
            "layers": 4,
            "strand_spacing_mm": 1.0,
            "perimeters": 1,
        },
    )
    result = plan_job(job)
    lines, fw, said = stream("cellink-biox", result.gcode)
    assert fw.executed == lines
    assert "Unknown command" not in said and "Error" not in said
    state = fw.state()
    assert not state.halted and state.homed
    assert len(state.uv_exposures) == 2 and state.uv_exposures[0].seconds == pytest.approx(3.0)
    head = state.printheads[0]
    assert not head.valve_open
    assert head.pressure_target_kpa == pytest.approx(0.0)  # released at the end
    top = max(lp.z for lp in result.layers)
    assert state.position[2] > top


def test_wellplate_runs_on_the_simulated_marlin() -> None:
    job = make_job(
        printer="marlin-pneumatic",
        object={
            "type": "wellplate",
            "format": 96,
            "pattern": "lattice",
            "wells": ["A1", "B2", "H12"],
            "origin_mm": [20, 20],
        },
    )
    result = plan_job(job)
    lines, fw, said = stream("marlin-pneumatic", result.gcode)
    assert fw.executed == lines
    assert "Unknown command" not in said
    assert not fw.state().printheads[0].valve_open


async def test_driver_streams_a_scaffold_into_the_simulator_over_a_pty() -> None:
    gcode_mod = pytest.importorskip("labdevices.devices.gcode")
    job = make_job(
        object={
            "type": "scaffold",
            "shape": "rectangle",
            "center_mm": [60, 45],
            "size_mm": [8, 8],
            "layers": 2,
            "strand_spacing_mm": 1.0,
        },
    )
    text = plan_job(job).gcode
    commands = gcode_mod.load_gcode(text)
    profile = load_profile("cellink-biox")
    assert isinstance(profile, GcodeProfile)
    config = sim.SimPrinterConfig(profile="cellink-biox", time_scale=0.0)
    async with (
        sim.SimulatedPrinter(config=config) as printer_sim,
        gcode_mod.GcodePrinter("p1", profile, printer_sim.port, reconnect=False) as printer,
    ):
        result = await printer.run_job(commands)
        assert result.outcome == gcode_mod.JobOutcome.COMPLETED
        own = ("M110", "M115", "M155", "M105")
        assert [c for c in printer_sim.executed if not c.startswith(own)] == list(commands)

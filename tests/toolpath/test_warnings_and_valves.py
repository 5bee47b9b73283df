"""Warnings a scientist must see, and the valve lead/lag around each strand."""

from __future__ import annotations

import math

import pytest

from labdevices.toolpath import plan_job, slice_mesh

from ._helpers import BIOX_VALVES, make_job, replay


def head(**over: object) -> dict[str, object]:
    h = make_job().model_dump()["printheads"][0]
    h.update(over)
    return h


def test_shear_pressure_and_width_warnings() -> None:
    stiff = head(
        strand_width_mm=0.3,  # narrower than the 0.41 mm needle
        print_speed_mm_s=40.0,
        bioink={
            "name": "stiff",
            "shear_stress_limit_pa": 500.0,
            "rheology": {"consistency_pa_sn": 400.0, "flow_index": 0.5},
        },
    )
    result = plan_job(make_job(printheads=[stiff]))
    text = "\n".join(result.warnings)
    assert "narrower than the nozzle" in text
    assert "beyond the regulator's 700 kPa" in text
    assert "wall shear stress" in text and "exceeds the bioink's limit 500 Pa" in text
    assert all(f"; WARNING: {w}" in result.gcode for w in result.warnings)
    assert result.totals[0].pressure_kpa == pytest.approx(700.0)  # clamped to the regulator


def test_gentle_print_has_no_warnings() -> None:
    result = plan_job(make_job())
    assert result.warnings == []
    assert result.totals[0].wall_shear_pa < 100


def test_valve_opens_early_and_closes_before_the_strand_ends() -> None:
    lead, lag = 0.2, 0.1
    job = make_job(printheads=[head(valve_lead_s=lead, valve_lag_s=lag)])
    result = plan_job(job)
    lines = result.gcode.splitlines()
    opens = [i for i, ln in enumerate(lines) if ln == "M750 T0"]
    assert all(lines[i + 1] == "G4 P200" for i in opens)
    v = result.totals[0].speed_mm_s
    run = replay(result.gcode, *BIOX_VALVES)
    # each strand loses lag × speed of valve-open travel: the pressure decay finishes it
    paths = sum(lp.n_paths for lp in result.layers)
    full = sum(t.path_mm for t in result.totals)
    assert run.deposit_mm[0] == pytest.approx(full - paths * lag * v, rel=1e-3)
    closes = [i for i, ln in enumerate(lines) if ln == "M751 T0"]
    assert all(lines[i + 1].startswith("G1 X") for i in closes)  # the strand continues, valve shut
    assert not math.isnan(result.total_time_s)


def test_slice_mesh_is_exported_lazily() -> None:
    assert callable(slice_mesh)

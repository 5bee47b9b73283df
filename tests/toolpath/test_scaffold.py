"""Parametric scaffolds: geometry, continuous strands, printability, and the deposited volume."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from labdevices.toolpath import (
    ROLE_INFILL,
    ScaffoldObject,
    flow_for_pressure,
    job_profile,
    plan_job,
    printability_index,
    scaffold_layers,
    spacing_for_porosity,
    strand_area_mm2,
)

from ._helpers import BIOX_VALVES, make_job, replay


def scaffold(**kw: object) -> ScaffoldObject:
    base: dict[str, object] = {"type": "scaffold", "layers": 3, "strand_spacing_mm": 1.0}
    base.update(kw)
    return ScaffoldObject.model_validate(base)


@pytest.mark.parametrize(
    "shape",
    [
        {"shape": "rectangle", "size_mm": (10.0, 8.0)},
        {"shape": "disc", "diameter_mm": 10.0},
    ],
)
def test_infill_is_one_continuous_strand_per_layer(shape: dict[str, object]) -> None:
    layers, _ = scaffold_layers(scaffold(**shape, center_mm=(0, 0)), 0.3, 0.4, 0)
    for lp in layers:
        assert lp.n_paths == 1 and lp.role[0] == ROLE_INFILL
        pts = lp.path(0)
        r = np.hypot(pts[:, 0], pts[:, 1])
        if shape["shape"] == "disc":
            assert r.max() <= 5.0 - 0.2 + 1e-9  # strand edges stay inside the disc


def test_annulus_strands_avoid_the_hole() -> None:
    obj = scaffold(shape="annulus", diameter_mm=20.0, inner_diameter_mm=8.0, center_mm=(0, 0))
    layers, _ = scaffold_layers(obj, 0.3, 0.4, 0)
    for lp in layers:
        for i in range(lp.n_paths):
            p = lp.path(i)
            mid = np.vstack([p, 0.25 * p[:-1] + 0.75 * p[1:], 0.5 * (p[:-1] + p[1:])])
            # strands keep half a width off the hole; links along its edge (short
            # chords) dip in by their sagitta only
            assert np.hypot(mid[:, 0], mid[:, 1]).min() >= 4.0 + 0.2 - 0.1


def test_angles_offsets_perimeters_and_tools() -> None:
    obj = scaffold(
        shape="rectangle",
        size_mm=(10.0, 10.0),
        center_mm=(0, 0),
        layers=6,
        angles_deg=[0, 60, 120],
        layer_offset_mm=0.5,
        perimeters=2,
        layer_tools=[0, 1],
    )
    layers, info = scaffold_layers(obj, 0.3, 0.4, 0)
    assert [int(lp.tool[0]) for lp in layers] == [0, 1, 0, 1, 0, 1]
    assert all(int((lp.role == 0).sum()) == 2 for lp in layers)  # two perimeter loops
    # layer 4 repeats layer 1's angle, shifted by the offset
    y1 = np.unique(
        np.round(layers[0].xy[layers[0].role.repeat(np.diff(layers[0].start)) == 1][:, 1], 6)
    )
    y4 = np.unique(
        np.round(layers[3].xy[layers[3].role.repeat(np.diff(layers[3].start)) == 1][:, 1], 6)
    )
    assert np.allclose((y4[:3] - y1[:3]) % 1.0, 0.5) or np.allclose((y1[:3] - y4[:3]) % 1.0, 0.5)
    assert info.printability == pytest.approx(1 / math.sin(math.radians(60)))


def test_region_tools_split_strands_into_bands() -> None:
    obj = scaffold(shape="rectangle", size_mm=(10.0, 10.0), center_mm=(0, 0), region_tools=[0, 1])
    layers, _ = scaffold_layers(obj, 0.3, 0.4, 0)
    for lp in layers:
        for i in range(lp.n_paths):
            x = lp.path(i)[:, 0]
            assert (x <= 1e-9).all() if lp.tool[i] == 0 else (x >= -1e-9).all()


def test_porosity_and_printability() -> None:
    assert spacing_for_porosity(0.6, 0.4) == pytest.approx(1.0)
    assert printability_index([0, 90], 4) == pytest.approx(1.0)
    assert math.isnan(printability_index([0], 4))
    _, info = scaffold_layers(
        scaffold(shape="disc", diameter_mm=10, strand_spacing_mm=None, porosity=0.5), 0.3, 0.4, 0
    )
    assert info.strand_spacing_mm == pytest.approx(0.8) and info.pore_size_mm == pytest.approx(0.4)


def test_deposited_volume_within_one_percent_of_strand_volume() -> None:
    # Geometric strand volume: centreline length × strand cross-section. Deposited:
    # replay the G-code — flow that the emitted pressure drives through the needle,
    # times the time each valve is open while the nozzle moves.
    job = make_job(
        object={
            "type": "scaffold",
            "shape": "disc",
            "diameter_mm": 14.0,
            "layers": 6,
            "strand_spacing_mm": 1.1,
            "perimeters": 1,
        }
    )
    result = plan_job(job)
    head = job.printheads[0]
    area = strand_area_mm2(head.strand_width_mm, job.layer_height_mm)
    geometric = area * sum(lp.length_mm() for lp in result.layers)
    assert result.volume_ul == pytest.approx(geometric, rel=1e-9)
    pressure = [
        float(c.split("P")[1]) for c in result.gcode.splitlines() if c.startswith("M773 T0")
    ]
    q = flow_for_pressure(pressure[0], head.nozzle, head.bioink.rheology)
    run = replay(result.gcode, *BIOX_VALVES)
    deposited = q * run.deposit_s[0]
    assert deposited == pytest.approx(geometric, rel=0.01)
    assert run.deposit_mm[0] == pytest.approx(geometric / area, rel=1e-3)
    assert result.totals[0].cells == pytest.approx(geometric * 1e-3 * 1e6, rel=1e-9)


def test_crossing_compensation_reduces_flow_where_strands_cross() -> None:
    plain = plan_job(make_job())
    comp = plan_job(make_job(crossing_flow_factor=0.5))
    assert comp.volume_ul < plain.volume_ul
    # the first layer has nothing below it
    first = comp.seg_layer == 0
    np.testing.assert_allclose(comp.column("volume_mm3")[first], plain.column("volume_mm3")[first])
    # pneumatic heads keep the pressure and speed up over crossings: G1 lines carry new feeds
    feeds = {c.split("F")[1] for c in comp.gcode.splitlines() if c.startswith("G1") and "F" in c}
    assert len(feeds) > 1
    job_profile(make_job())


def test_region_tools_switch_printheads_at_most_once_per_layer() -> None:
    obj = scaffold(
        shape="disc",
        diameter_mm=12.0,
        center_mm=(0, 0),
        layers=4,
        perimeters=1,
        region_tools=[0, 1, 0],
    )
    layers, _ = scaffold_layers(obj, 0.3, 0.4, 0)
    previous = None
    for lp in layers:
        tools = [int(t) for t in lp.tool]
        switches = sum(a != b for a, b in itertools.pairwise(tools))
        assert switches == 1
        if previous is not None:
            assert tools[0] == previous  # carry on with the printhead already active
        previous = tools[-1]
        for t in (0, 1):
            roles = [int(r) for r, tt in zip(lp.role, lp.tool, strict=True) if tt == t]
            assert roles == sorted(roles)  # perimeters before strands

"""Travel of sliced meshes: islands one after another in a short tour, loops started near the
nozzle, lifts only between islands or for long travels; the geometry left as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyclipper
import pytest

from labdevices.toolpath import PrintJob, plan_job
from labdevices.toolpath._kernel import py_func
from labdevices.toolpath._mesh import slice_mesh_walls
from labdevices.toolpath._order import (
    order_layer,
    path_islands,
    path_islands_ref,
    reorder_points,
)

from .conftest import Revolved, cylinder


def _square(x0: float, y0: float, size: float, ccw: bool = True) -> np.ndarray:
    sq = np.array([[x0, y0], [x0 + size, y0], [x0 + size, y0 + size], [x0, y0 + size]])
    return sq if ccw else sq[::-1].copy()


def _layer(paths: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    start = np.zeros(len(paths) + 1, np.int64)
    np.cumsum([len(p) for p in paths], out=start[1:])
    return np.ascontiguousarray(np.concatenate(paths), np.float64), start


def _area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def test_paths_belong_to_the_smallest_outline_holding_them() -> None:
    paths = [
        _square(0, 0, 10),  # 0: outline A
        _square(3, 3, 4, ccw=False),  # 1: A's hole
        _square(4, 4, 2),  # 2: outline B, an island inside A's hole
        _square(20, 0, 5),  # 3: outline C, apart
        np.array([[1.0, 1.0], [2.0, 1.0]]),  # 4: infill of A
        np.array([[4.5, 4.5], [5.5, 5.5]]),  # 5: infill of B
        np.array([[21.0, 1.0], [24.0, 4.0]]),  # 6: infill of C
        _square(0.5, 0.5, 9),  # 7: inner wall of A
    ]
    xy, start = _layer(paths)
    area = np.array([_area(p) for p in paths])
    outline = np.array([True, False, True, True, False, False, False, False])
    want = [0, 0, 1, 2, 0, 1, 2, 0]
    assert path_islands(xy, start, outline, area).tolist() == want
    assert path_islands_ref(xy, start, outline, area).tolist() == want


def test_layer_order_keeps_every_path_and_groups_islands() -> None:
    rng = np.random.default_rng(3)
    paths, closed, island, rank = [], [], [], []
    for isl in range(6):
        cx, cy = rng.uniform(0, 50, 2)
        for r in range(3):
            for _ in range(int(rng.integers(1, 4))):
                if r < 2:
                    ang = np.sort(rng.uniform(0, 2 * np.pi, 7))
                    paths.append(np.column_stack([cx + 3 * np.cos(ang), cy + 3 * np.sin(ang)]))
                else:
                    paths.append(rng.uniform(-2, 2, (5, 2)) + np.array([cx, cy]))
                closed.append(r < 2)
                island.append(isl)
                rank.append(r)
    xy, start = _layer(paths)
    cl = np.array(closed)
    isl_a = np.array(island, np.int64)
    rk = np.array(rank, np.int64)
    tour = np.array([3, 0, 5, 1, 4, 2], np.int64)
    order, first, rev, x, y = order_layer(xy, start, cl, isl_a, rk, tour, 0.0, 0.0)
    assert sorted(order.tolist()) == list(range(len(paths)))
    ref = py_func(order_layer)(xy, start, cl, isl_a, rk, tour, 0.0, 0.0)
    for a, b in zip((order, first, rev), ref[:3], strict=True):
        np.testing.assert_array_equal(a, b)
    # islands in the tour's order, ranks rising within each
    seq = [(int(np.flatnonzero(tour == isl_a[p])[0]), int(rk[p])) for p in order]
    assert seq == sorted(seq)
    gather, new_start = reorder_points(start, order, first, rev)
    for k, p in enumerate(order):
        got = xy[gather[new_start[k] : new_start[k + 1]]]
        old = paths[p]
        if cl[p]:  # the same loop, started elsewhere
            np.testing.assert_array_equal(got, np.roll(old, -first[k], axis=0))
        else:
            np.testing.assert_array_equal(got, old[::-1] if rev[k] else old)
    # the last point reached is where the nozzle ends
    last = xy[gather[new_start[-2]]] if cl[order[-1]] else xy[gather[-1]]
    assert (x, y) == tuple(last)


def _cylinders_stl(tmp_path: Path, n: int = 3, pitch: float = 8.0) -> Path:
    parts = []
    for i in range(n):
        for j in range(n):
            c = cylinder(2.0, 1.2, 64)
            v = c.vertices + np.array([i * pitch, j * pitch, 0.0])
            parts.append(v[c.faces])
    corners = np.concatenate(parts).astype(np.float32)
    rec = np.zeros(len(corners), [("n", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    rec["v"] = corners
    path = tmp_path / "cylinders.stl"
    with path.open("wb") as fh:
        fh.write(b"test".ljust(80, b" ") + np.uint32(len(corners)).tobytes() + rec.tobytes())
    return path


def _job(stl: Path, **over: Any) -> PrintJob:
    data: dict[str, Any] = {
        "printer": "marlin-pneumatic",
        "layer_height_mm": 0.2,
        "home": False,
        "printheads": [
            {
                "strand_width_mm": 0.4,
                "print_speed_mm_s": 10.0,
                "bioink": {
                    "name": "ink",
                    "rheology": {"consistency_pa_sn": 30, "flow_index": 0.45},
                },
                "nozzle": {"inner_diameter_mm": 0.4, "length_mm": 12.7},
            }
        ],
        "object": {
            "type": "mesh",
            "path": str(stl),
            "perimeters": 2,
            "infill_spacing_mm": 1.0,
            "offset_mm": [100.0, 100.0],
        },
    }
    data.update(over)
    return PrintJob.model_validate(data)


def _lifts_per_layer(gcode: str) -> list[int]:
    counts: list[int] = []
    for line in gcode.splitlines():
        if line.startswith("; layer "):
            counts.append(0)
        elif counts and line.startswith("G0 Z") and " X" not in line:
            counts[-1] += 1
    return [c // 2 for c in counts]  # up and down


def test_islands_one_after_another_with_lifts_only_between_them(tmp_path: Path) -> None:
    stl = _cylinders_stl(tmp_path)
    needed = plan_job(_job(stl))
    always = plan_job(_job(stl, travel_lift="always"))
    n_layers = len(needed.layers)
    assert n_layers == 6
    for lp in needed.layers:
        assert lp.island is not None
        # each island's paths are printed together: island ids change 8 times for 9 islands
        assert len(set(lp.island.tolist())) == 9
        assert int(np.count_nonzero(np.diff(lp.island))) == 8
    lifts = _lifts_per_layer(needed.gcode)
    # a lift per island change, and at most one more where the layer starts far away
    assert all(8 <= c <= 9 for c in lifts), lifts
    assert sum(_lifts_per_layer(always.gcode)) == sum(lp.n_paths for lp in always.layers)
    assert needed.travel.lift_z_mm < 0.5 * always.travel.lift_z_mm
    # the tour between 9 islands 8 mm apart: 8 hops of about 6 mm from wall to wall, and
    # about 2 mm from walls to infill in each island (the mean distance between two of
    # the islands is 10.7 mm: a random order travels ~100 mm a layer)
    assert needed.travel.xy_mm / n_layers < 9 * 8.0
    assert needed.total_time_s < always.total_time_s
    assert needed.travel.xy_mm == pytest.approx(always.travel.xy_mm)


def _grown_wall_area(loops: list[np.ndarray], w: float) -> float:
    scale = 1e5
    c = pyclipper.Pyclipper()
    c.AddPaths([np.round(p * scale).astype(np.int64) for p in loops], pyclipper.PT_SUBJECT, True)
    solid = c.Execute(pyclipper.CT_UNION, pyclipper.PFT_EVENODD, pyclipper.PFT_EVENODD)
    off = pyclipper.PyclipperOffset(arc_tolerance=0.0005 * scale)
    off.AddPaths(solid, pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    return sum(pyclipper.Area(p) for p in off.Execute(w / 2 * scale)) / scale**2


@pytest.mark.parametrize("resolution", [0.002, 0.005])
def test_outer_walls_enclose_the_exact_section(resolution: float) -> None:
    # a tube with a pin standing in its hole: two islands, one inside the other's hole
    tube = Revolved(np.array([[5.0, 0.0], [9.0, 0.0], [9.0, 3.0], [5.0, 3.0]]), 200, closed=True)
    pin = cylinder(2.5, 3.0, 200)
    v = np.concatenate([tube.vertices, pin.vertices])
    f = np.concatenate([tube.faces, pin.faces + len(tube.vertices)])
    w = 0.4
    layers, outer = slice_mesh_walls((v, f), 0.2, w, 2, 1.0, resolution_mm=resolution)
    for lp, o in zip(layers, outer, strict=True):
        assert lp.island is not None and len(set(lp.island.tolist())) == 2
        z = lp.z - 0.1
        exact = tube.exact_area(z) + pin.exact_area(z)
        got = _grown_wall_area([lp.path(i) for i in np.flatnonzero(o)], w)
        assert got == pytest.approx(exact, rel=0.0055)


def test_a_travel_over_a_hole_lifts_one_in_the_material_does_not() -> None:
    from labdevices.toolpath import LayerPaths, plan_layers
    from labdevices.toolpath._order import travel_crossings, travel_crossings_ref

    outline = _square(50, 50, 20)
    hole = _square(59, 59, 2, ccw=False)
    paths = [
        outline,
        hole,
        np.array([[52.0, 60.0], [58.5, 60.0]]),  # ends left of the hole
        np.array([[61.5, 60.0], [68.0, 60.0]]),  # 3 mm away, across the hole
        np.array([[68.0, 62.0], [52.0, 62.0]]),  # 2 mm away, in the material
    ]
    lp = LayerPaths.from_paths(
        0.2, paths, role=[0, 0, 1, 1, 1], closed=[True, True, False, False, False]
    )
    lp.island = np.zeros(5, np.int32)
    lp.outer = np.array([True, True, False, False, False])
    from labdevices.toolpath import job_profile

    # long travels never lift here: only the rule under test decides
    job = _job(Path("-"), lift_above_travel_mm=100.0)
    result = plan_layers([lp], job, job_profile(job))
    ups = [line for line in result.gcode.splitlines() if line == "G0 Z5.2 F600"]
    # the first travel (from nowhere), then only the one over the hole
    assert len(ups) == 2, ups
    from labdevices.toolpath._plan import _flatten

    xy, pstart, layer_pstart, _t, _r = _flatten([lp])
    got = travel_crossings(xy, pstart, layer_pstart, lp.outer)
    assert got.tolist() == [False, False, False, True, False]
    assert travel_crossings_ref(xy, pstart, layer_pstart, lp.outer).tolist() == got.tolist()

"""Contours offset apart in groups: a hole stays with its outline, islands apart go alone
(a convex one by the kernel, the rest by clipper), and the walls are those of offsetting
the whole layer at once."""

from __future__ import annotations

import numpy as np
import pyclipper

from labdevices.toolpath._mesh import _SCALE, MeshSlices, _batches, _groups, _offsets


def _square(x: float, y: float, size: float, cw: bool = False) -> np.ndarray:
    sq = np.array([[x, y], [x + size, y], [x + size, y + size], [x, y + size]], np.float64)
    return sq[::-1] if cw else sq


def _flat(contours: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    start = np.zeros(len(contours) + 1, np.int64)
    np.cumsum([len(c) for c in contours], out=start[1:])
    return np.concatenate(contours), start


# layer 0: islands apart, an outline with a hole holding an island; layer 1 spans them all
LAYER0 = [
    _square(0, 0, 2),
    _square(10, 0, 10),
    _square(12, 2, 6, cw=True),  # hole of the 10 mm square
    _square(14, 4, 2),  # island inside the hole
    _square(0, 30, 2),
    *(_square(30 + 5 * i, 30, 2) for i in range(4)),  # enough contours to be worth grouping
]
LAYER1 = [_square(-5, -5, 50)]


def _boxes(contours: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([c.min(0) for c in contours]), np.array([c.max(0) for c in contours])


def test_groups_keep_holes_with_outlines_and_batches_islands_apart_in_y() -> None:
    lo, hi = _boxes(LAYER0)
    groups = _groups(lo, hi)
    assert sorted(g.tolist() for g in groups) == [[0], [1, 2, 3], [4], [5], [6], [7], [8]]
    # batched where their y ranges do not overlap
    batches = [b.tolist() for b in _batches(groups, lo, hi)]
    assert batches == [[0, 8], [1, 2, 3, 7], [4], [5], [6]]
    few = [g for g in groups if g[0] < 4]
    assert [b.tolist() for b in _batches(few, lo, hi)] == [[0, 1, 2, 3]]  # few: together


def test_offsetting_groups_apart_equals_offsetting_the_layer() -> None:
    # the next layer's big outline must join nothing: only the layer's own points count
    xy, start = _flat(LAYER0 + LAYER1)
    paths = [np.round(c * _SCALE).astype(np.int64) for c in LAYER0]

    def offset(group: list[np.ndarray], d: float) -> list[tuple[tuple[int, int], ...]]:
        off = pyclipper.PyclipperOffset()
        off.AddPaths(group, pyclipper.JT_MITER, pyclipper.ET_CLOSEDPOLYGON)
        return [tuple(sorted(map(tuple, p))) for p in off.Execute(-d * _SCALE)]

    deltas = [0.2, 0.6, 0.8]
    layers = np.array([0, len(LAYER0), len(LAYER0) + 1])
    sl = MeshSlices(np.array([0.1, 0.3]), xy, start, layers, np.zeros(len(LAYER0) + 1))
    apart = _offsets(sl, -np.array(deltas))[0]
    for d, got in zip(deltas, apart, strict=True):  # the same polygons, point for point
        assert sorted(tuple(sorted(map(tuple, p.tolist()))) for p in got) == sorted(
            offset(paths, d)
        )

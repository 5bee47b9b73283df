"""Contours offset apart in groups: a hole stays with its outline, islands apart go alone,
and the walls are those of offsetting the whole layer at once."""

from __future__ import annotations

import numpy as np
import pyclipper

from labdevices.toolpath._mesh import _SCALE, _apart


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


def test_batches_keep_holes_with_outlines_and_islands_apart_in_y() -> None:
    xy, start = _flat(LAYER0 + LAYER1)
    # only the layer's own points count: the next layer's big outline joins nothing
    groups = [g.tolist() for g in _apart(xy, start, 0, len(LAYER0))]
    # groups [0], [1, 2, 3], [4] ... [8]; batched where their y ranges do not overlap
    assert groups == [[0, 8], [1, 2, 3, 7], [4], [5], [6]]
    assert [g.tolist() for g in _apart(xy, start, 0, 3)] == [[0, 1, 2]]  # few: together


def test_offsetting_groups_apart_equals_offsetting_the_layer() -> None:
    xy, start = _flat(LAYER0)
    paths = [np.round(c * _SCALE).astype(np.int64) for c in LAYER0]

    def offset(group: list[np.ndarray], d: float) -> list[tuple[tuple[int, int], ...]]:
        off = pyclipper.PyclipperOffset()
        off.AddPaths(group, pyclipper.JT_MITER, pyclipper.ET_CLOSEDPOLYGON)
        return [tuple(sorted(map(tuple, p))) for p in off.Execute(-d * _SCALE)]

    for d in (0.2, 0.6, 0.8):  # the same polygons, point for point
        apart = [
            p for g in _apart(xy, start, 0, len(paths)) for p in offset([paths[i] for i in g], d)
        ]
        assert sorted(apart) == sorted(offset(paths, d))

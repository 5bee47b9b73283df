"""The convex-contour offset kernel against clipper and against the geometry it must give.

Every vertex of an inward offset by d lies exactly |d| from the contour (within the
integer rounding); the area equals clipper's within one unit (10 nm) along the
perimeter (clipper rounds its own intersections); a contour that an offset leaves
nothing of gives nothing; every contour that is not convex and counter-clockwise is
left to clipper (``ok`` False).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyclipper
import pytest

from labdevices.toolpath._contours import apart_contours, offset_convex

I64 = npt.NDArray[np.int64]
DELTAS = np.array([0.0, -2e4, -6e4, -8e4])  # 0, 0.2, 0.6, 0.8 mm in clipper's units


def _area(p: I64) -> float:
    x, y = p[:, 0].astype(float), p[:, 1].astype(float)
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _distance_to_outline(p: npt.NDArray[np.float64], poly: I64) -> float:
    a = poly.astype(float)
    ab = np.roll(a, -1, axis=0) - a
    t = (((p - a) * ab).sum(1) / (ab * ab).sum(1)).clip(0, 1)
    return float(np.sqrt((((a + t[:, None] * ab) - p) ** 2).sum(1)).min())


def _rotated(pts: npt.NDArray[np.float64], angle: float, at: npt.NDArray[np.float64]) -> I64:
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return np.round(pts @ rot.T + at).astype(np.int64)


def _convex_corpus(rng: np.random.Generator) -> list[I64]:
    polys = []
    for _ in range(150):  # ellipses, irregularly sampled, some too small for every offset
        t = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(3, 60)))
        a, b = rng.uniform(1e4, 3e5, 2)
        polys.append(
            _rotated(np.stack([a * np.cos(t), b * np.sin(t)], 1), 0, rng.uniform(-1e6, 1e6, 2))
        )
    for _ in range(100):  # rectangles: opposite edges parallel
        w, h = rng.uniform(1e4, 4e5, 2)
        rect = np.array([[0, 0], [w, 0], [w, h], [0, h]])
        polys.append(_rotated(rect, rng.uniform(0, np.pi), rng.uniform(-1e6, 1e6, 2)))
    for _ in range(100):  # regular polygons, as a cylinder or a small sphere slices
        k = int(rng.integers(3, 25))
        t = np.arange(k) * 2 * np.pi / k
        r = rng.uniform(3e4, 2e5)
        polys.append(
            _rotated(
                np.stack([r * np.cos(t), r * np.sin(t)], 1),
                rng.uniform(0, 1),
                rng.uniform(-1e6, 1e6, 2),
            )
        )
    for _ in range(50):  # triangles with one tiny edge: it vanishes first
        tri = np.array([[0, 0], [3e5, 0], [3e5 + rng.uniform(1, 5e3), rng.uniform(1e3, 3e5)]])
        polys.append(_rotated(tri, rng.uniform(0, 2 * np.pi), rng.uniform(-1e6, 1e6, 2)))
    return polys


def _stack(polys: list[I64]) -> tuple[I64, I64]:
    start = np.zeros(len(polys) + 1, np.int64)
    np.cumsum([len(p) for p in polys], out=start[1:])
    return np.ascontiguousarray(np.concatenate(polys)), start


def test_convex_offsets_are_clippers_and_exactly_d_inside() -> None:
    polys = _convex_corpus(np.random.default_rng(7))
    pts, start = _stack(polys)
    got, got_start, ok = offset_convex(pts, start, np.arange(len(polys)), DELTAS)
    # ellipses sampled finely and rounded to integers may turn right somewhere: clipper's
    assert ok.mean() > 0.9 and ok[150:].all()
    n_d, empty, kept = len(DELTAS), 0, 0
    for i in np.flatnonzero(ok):
        off = pyclipper.PyclipperOffset()
        off.AddPath(polys[i].tolist(), pyclipper.JT_MITER, pyclipper.ET_CLOSEDPOLYGON)
        for t, d in enumerate(DELTAS):
            mine = got[got_start[i * n_d + t] : got_start[i * n_d + t + 1]]
            theirs = [np.array(p, np.int64) for p in off.Execute(d)]
            if not len(mine):
                # nothing left, or a sliver clipper keeps and rounding to 10 nm cannot
                assert all(abs(_area(p)) < 1e4 for p in theirs), (i, d)
                empty += 1
                continue
            assert len(theirs) == 1, (i, d)
            kept += 1
            perimeter = np.hypot(*np.diff(np.vstack([mine, mine[:1]]), axis=0).T).sum()
            assert _area(mine) > 0
            assert abs(_area(mine) - _area(theirs[0])) <= perimeter, (i, d)
            for p in mine.astype(float):
                assert abs(_distance_to_outline(p, polys[i]) - abs(d)) <= 1.0, (i, d)
    assert empty > 100 and kept > 500  # both kinds well covered


@pytest.mark.parametrize(
    "poly",
    [
        [[0, 0], [0, 100000], [100000, 100000], [100000, 0]],  # clockwise: a hole
        [[0, 0], [100000, 0], [50000, 20000], [100000, 100000], [0, 100000]],  # not convex
        [[0, 0], [100000, 0], [0, 100000], [100000, 100000]],  # crosses itself
        [[0, 0], [100000, 0], [100000, 0], [0, 100000]],  # a repeated point
        [[0, 0], [100000, 0]],  # not a polygon
    ],
)
def test_anything_but_a_convex_counter_clockwise_contour_is_left_to_clipper(
    poly: list[list[int]],
) -> None:
    pts, start = _stack([np.array(poly, np.int64)])
    got, got_start, ok = offset_convex(pts, start, np.array([0]), DELTAS)
    assert not ok[0]
    assert len(got) == 0 and (got_start == 0).all()


def test_a_star_that_turns_twice_is_left_to_clipper() -> None:
    t = np.arange(5) * 4 * np.pi / 5  # a pentagram: every turn left, 4 pi in all
    star = np.round(np.stack([1e5 * np.cos(t), 1e5 * np.sin(t)], 1)).astype(np.int64)
    pts, start = _stack([star])
    assert not offset_convex(pts, start, np.array([0]), DELTAS)[2][0]


def test_contours_apart_are_those_whose_boxes_meet_no_other_in_their_layer() -> None:
    from labdevices.toolpath._contours import apart_contours_ref

    rng = np.random.default_rng(11)
    polys, layer = [], [0]
    for _ in range(6):  # layers of scattered squares, some overlapping, one empty layer
        m = int(rng.integers(0, 40))
        for x, y in rng.uniform(0, 2e6, (m, 2)):
            size = rng.uniform(1e4, 2e5)
            polys.append(
                np.round([[x, y], [x + size, y], [x + size, y + size], [x, y + size]]).astype(
                    np.int64
                )
            )
        layer.append(len(polys))
    pts, start = _stack(polys)
    got = apart_contours(pts, start, np.array(layer, np.int64))
    np.testing.assert_array_equal(got, apart_contours_ref(pts, start, np.array(layer, np.int64)))
    assert got.any() and not got.all()

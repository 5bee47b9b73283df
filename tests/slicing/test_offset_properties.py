"""Property tests: the walls ``_offsets`` gives (kernel for convex islands, clipper for the
rest) are those of pyclipper offsetting each whole layer, on layers built to be hard:
convex polygons of every size from a few units to a metre, collapsing under the offset,
with very short edges, very sharp corners, nearly parallel opposite edges, collinear
points; islands a unit apart, a polygon inside another's bounding box but outside it,
holes. Polygons thinner than a couple of units may differ (clipper loses slivers that
rounding to integers makes degenerate): counts compare polygons of some width only.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pyclipper
from hypothesis import given, settings
from hypothesis import strategies as st

from labdevices.toolpath._contours import offset_convex
from labdevices.toolpath._mesh import _SCALE, MeshSlices, _offsets, slice_mesh_walls

I64 = npt.NDArray[np.int64]
Point = tuple[int, int]


def _cross(o: Point, a: Point, b: Point) -> int:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _hull(points: list[Point]) -> list[Point]:
    """Strictly convex counter-clockwise hull, exact on integers (monotone chain)."""
    pts = sorted(set(points))
    if len(pts) < 3:
        return []
    lower: list[Point] = []
    upper: list[Point] = []
    for p in pts:
        while len(lower) >= 2 and _cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and _cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    h = lower[:-1] + upper[:-1]
    return h if len(h) >= 3 else []


def _convex_ccw(poly: I64) -> bool:
    """No turn to the right, no edge of length 0, and the edges' directions wrap round
    once: convex and counter-clockwise (collinear points allowed), exact on integers."""
    p = [(int(x), int(y)) for x, y in poly]
    n = len(p)
    e = [(p[(i + 1) % n][0] - p[i][0], p[(i + 1) % n][1] - p[i][1]) for i in range(n)]
    if n < 3 or (0, 0) in e:
        return False
    if any(e[i - 1][0] * e[i][1] - e[i - 1][1] * e[i][0] < 0 for i in range(n)):
        return False

    def half(v: Point) -> int:
        return 0 if v[1] > 0 or (v[1] == 0 and v[0] > 0) else 1

    def before(a: Point, b: Point) -> bool:  # a's direction strictly before b's
        return half(a) < half(b) or (half(a) == half(b) and a[0] * b[1] - a[1] * b[0] > 0)

    return sum(1 for i in range(n) if before(e[i], e[i - 1])) == 1


def _area(p: I64) -> float:
    x, y = (p - p[0]).astype(float).T  # relative: exact products far from the origin
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _perimeter(p: I64) -> float:
    return float(np.hypot(*np.diff(np.vstack([p, p[:1]]).astype(float), axis=0).T).sum())


def _distance_to_outline(q: npt.NDArray[np.float64], poly: I64) -> float:
    a = poly.astype(float)
    ab = np.roll(a, -1, axis=0) - a
    t = (((q - a) * ab).sum(1) / (ab * ab).sum(1)).clip(0, 1)
    return float(np.sqrt((((a + t[:, None] * ab) - q) ** 2).sum(1)).min())


def _clipper(paths: list[I64], d: float) -> list[I64]:
    off = pyclipper.PyclipperOffset()
    off.AddPaths([p.tolist() for p in paths], pyclipper.JT_MITER, pyclipper.ET_CLOSEDPOLYGON)
    return [np.array(p, np.int64) for p in off.Execute(d)]


def _xor_area(a: list[I64], b: list[I64]) -> float:
    if not a or not b:
        return sum(abs(_area(p)) for p in a + b)
    c = pyclipper.Pyclipper()
    c.AddPaths([p.tolist() for p in a], pyclipper.PT_SUBJECT, True)
    c.AddPaths([p.tolist() for p in b], pyclipper.PT_CLIP, True)
    got = c.Execute(pyclipper.CT_XOR, pyclipper.PFT_NONZERO, pyclipper.PFT_NONZERO)
    return abs(sum(_area(np.array(p, np.int64)) for p in got))  # holes come out clockwise


def _common_area(a: I64, b: list[I64]) -> float:
    if not b:
        return 0.0
    c = pyclipper.Pyclipper()
    c.AddPath(a.tolist(), pyclipper.PT_SUBJECT, True)
    c.AddPaths([p.tolist() for p in b], pyclipper.PT_CLIP, True)
    got = c.Execute(pyclipper.CT_INTERSECTION, pyclipper.PFT_NONZERO, pyclipper.PFT_NONZERO)
    return abs(sum(_area(np.array(p, np.int64)) for p in got))


def _key(p: I64) -> tuple[tuple[int, int], ...]:
    return tuple(sorted(map(tuple, p.tolist())))


def _overlap(a: I64, b: I64) -> bool:
    c = pyclipper.Pyclipper()
    c.AddPath(a.tolist(), pyclipper.PT_SUBJECT, True)
    c.AddPath(b.tolist(), pyclipper.PT_CLIP, True)
    meet = c.Execute(pyclipper.CT_INTERSECTION, pyclipper.PFT_NONZERO, pyclipper.PFT_NONZERO)
    return bool(meet) or bool(set(map(tuple, a.tolist())) & set(map(tuple, b.tolist())))


def _inside(a: I64, region: list[I64]) -> bool:
    if not region:
        return False
    c = pyclipper.Pyclipper()
    c.AddPath(a.tolist(), pyclipper.PT_SUBJECT, True)
    c.AddPaths([p.tolist() for p in region], pyclipper.PT_CLIP, True)
    return not c.Execute(pyclipper.CT_DIFFERENCE, pyclipper.PFT_NONZERO, pyclipper.PFT_NONZERO)


@st.composite
def convex(draw: st.DrawFn) -> I64:
    """A strictly convex CCW polygon of integer points, of a hard kind; sometimes with
    a collinear point added (the kernel may offset it or leave it to clipper)."""
    kind = draw(st.sampled_from(["ellipse", "slab", "needle", "regular", "short", "tiny"]))
    size = 10 ** draw(st.floats(0.5, 8.0))
    far = draw(st.booleans())
    cx = draw(st.floats(-1e8, 1e8)) if far else draw(st.floats(-1e6, 1e6))
    cy = draw(st.floats(-1e8, 1e8)) if far else draw(st.floats(-1e6, 1e6))
    turn = draw(st.floats(0, 2 * math.pi))
    if kind == "ellipse":  # irregular sampling: edges vanish one by one as it shrinks
        t = np.sort(draw(st.lists(st.floats(0, 2 * math.pi), min_size=3, max_size=30)))
        flat = 10 ** draw(st.floats(-4, 0))
        pts = np.stack([size * np.cos(t), size * flat * np.sin(t)], 1)
    elif kind == "slab":  # nearly parallel opposite edges, nearly antiparallel as it collapses
        h = size * 10 ** draw(st.floats(-5, 0))
        lean = size * draw(st.floats(-1e-3, 1e-3))
        pts = np.array([[0, 0], [size, 0], [size, h + lean], [0, h]])
    elif kind == "needle":  # one very sharp corner
        sharp = 10 ** draw(st.floats(-7, 0))
        pts = np.array([[0, 0], [size, 0], [size * draw(st.floats(0, 1.2)), size * sharp]])
    elif kind == "regular":
        k = draw(st.integers(3, 40))
        t = np.arange(k) * 2 * math.pi / k
        pts = np.stack([size * np.cos(t), size * np.sin(t)], 1)
    elif kind == "short":  # a corner cut by an edge of a few units
        k = draw(st.integers(3, 8))
        t = np.arange(k) * 2 * math.pi / k
        pts = np.stack([size * np.cos(t), size * np.sin(t)], 1)
        pts = np.vstack(
            [pts, pts[0] + np.array(draw(st.tuples(st.integers(-3, 3), st.integers(-3, 3))))]
        )
    else:  # a few units across
        pts = np.array(
            draw(
                st.lists(st.tuples(st.integers(-6, 6), st.integers(-6, 6)), min_size=3, max_size=8)
            ),
            float,
        )
    rot = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
    q = np.round(pts @ rot.T + [cx, cy]).astype(np.int64)
    hull = _hull([(int(x), int(y)) for x, y in q])
    if not hull:
        hull = [(0, 0), (draw(st.integers(1, 5)), 0), (0, draw(st.integers(1, 5)))]
        hull = [(x + int(cx), y + int(cy)) for x, y in hull]
    if draw(st.integers(0, 9)) == 0:  # a collinear point: a lattice point inside an edge
        i = draw(st.integers(0, len(hull) - 1))
        a, b = hull[i], hull[(i + 1) % len(hull)]
        g = math.gcd(b[0] - a[0], b[1] - a[1])
        if g > 1:
            hull.insert(i + 1, (a[0] + (b[0] - a[0]) // g, a[1] + (b[1] - a[1]) // g))
    shift = draw(st.integers(0, len(hull) - 1))
    return np.array(hull[shift:] + hull[:shift], np.int64)


@st.composite
def layer(draw: st.DrawFn) -> list[I64]:
    """Disjoint contours as a slice gives them: islands (some a few units apart, so
    their boxes meet or just miss), maybe a hole, maybe a small island in a big one's box."""
    polys: list[I64] = []
    for _ in range(draw(st.integers(1, 5))):
        p = draw(convex())
        if polys and draw(st.booleans()):  # right of the last one, nearly touching
            prev = polys[-1]
            gap = draw(st.integers(-2, 3))
            p = p + np.array(
                [prev[:, 0].max() - p[:, 0].min() + gap, prev[:, 1].min() - p[:, 1].min()]
            )
        if not any(_overlap(p, q) for q in polys):
            polys.append(p)
    first = polys[0]
    lo, hi = first.min(0), first.max(0)
    side = int(min(hi - lo) // 8)
    if side >= 3 and draw(st.booleans()):
        if draw(st.booleans()):  # a hole: a clockwise square round the centroid
            c = first.mean(0).astype(np.int64)
            sq = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * side + c
            if _inside(sq, _clipper([first], -1.0)):
                polys.append(sq[::-1].copy())
        else:  # a small triangle in a corner of the first one's box
            tri = np.array([[0, 0], [side, 0], [0, side]]) + lo
            if not any(_overlap(tri, q) for q in polys):
                polys.append(tri)
    return polys


def _offsets_of(layers: list[list[I64]], deltas: list[float]) -> list[list[list[I64]]]:
    contours = [p for lay in layers for p in lay]
    start = np.zeros(len(contours) + 1, np.int64)
    np.cumsum([len(p) for p in contours], out=start[1:])
    bounds = np.zeros(len(layers) + 1, np.int64)
    np.cumsum([len(lay) for lay in layers], out=bounds[1:])
    xy = np.concatenate(contours).astype(np.float64) / _SCALE
    sl = MeshSlices(np.arange(len(layers), dtype=float), xy, start, bounds, np.zeros(len(contours)))
    assert (np.round(sl.xy * _SCALE).astype(np.int64) == np.concatenate(contours)).all()
    return _offsets(sl, np.array(deltas) / _SCALE)


def _deltas(draw: st.DrawFn) -> list[float]:
    d = draw(st.lists(st.floats(0, 8), min_size=1, max_size=4))
    return sorted({0.0, *(-float(round(10**x)) for x in d)}, reverse=True)


@settings(max_examples=300, deadline=None)
@given(st.lists(layer(), min_size=1, max_size=3), st.data())
def test_offsets_are_clippers_of_the_whole_layer(
    layers: list[list[I64]], data: st.DataObject
) -> None:
    deltas = data.draw(st.composite(_deltas)())
    got = _offsets_of(layers, deltas)
    for k, lay in enumerate(layers):
        for t, d in enumerate(deltas):
            mine, theirs = got[k][t], _clipper(lay, d)
            # every polygon of some width (mean over 4 units; clipper loses or mangles thinner
            # ones) is mostly covered by one on the other side
            for ours, other in ((mine, theirs), (theirs, mine)):
                for p in ours:
                    if _area(p) > 2 * _perimeter(p):  # outlines; holes: by the area below
                        outlines = [q for q in other if _area(q) > 0]  # a hole may be most of it
                        assert _common_area(p, outlines) >= 0.5 * abs(_area(p)), (lay, d)
            assert len(mine) == len(set(map(_key, mine))), "a polygon twice"
            # one unit along every polygon's outline: each side rounds on its own
            slack = sum(_perimeter(p) for p in mine + theirs) + 10
            assert _xor_area(mine, theirs) <= slack, (lay, d)


@settings(max_examples=300, deadline=None)
@given(st.lists(convex(), min_size=1, max_size=6), st.data())
def test_kernel_offsets_only_convex_contours_and_exactly_d_inside(
    polys: list[I64], data: st.DataObject
) -> None:
    deltas = data.draw(st.composite(_deltas)())
    pts = np.concatenate(polys)
    start = np.zeros(len(polys) + 1, np.int64)
    np.cumsum([len(p) for p in polys], out=start[1:])
    got, got_start, ok = offset_convex(pts, start, np.arange(len(polys)), np.array(deltas))
    n_d = len(deltas)
    for i, poly in enumerate(polys):
        assert not ok[i] or _convex_ccw(poly), poly
        for t, d in enumerate(deltas):
            mine = got[got_start[i * n_d + t] : got_start[i * n_d + t + 1]]
            if not len(mine):
                continue
            assert ok[i]
            assert _area(mine) > 0
            # simple, up to rounding to units: clipper's union of it is itself
            simple = pyclipper.SimplifyPolygon(mine.tolist())
            simple_area = sum(_area(np.array(p, np.int64)) for p in simple)
            assert abs(simple_area - _area(mine)) <= _perimeter(mine), (poly.tolist(), d)
            far = [abs(_distance_to_outline(q, poly) - abs(d)) for q in mine.astype(float)]
            assert max(far) <= 2.0, (poly.tolist(), d)


def test_an_edge_that_shrinks_below_a_unit_merges_two_corners_not_the_polygon() -> None:
    # a 1-unit edge at the first corner: offset by one unit its two corners round to one
    # point, and the kernel once dropped the whole 40 mm polygon (its walls went missing)
    poly = np.array(
        [[-2158208, 443795], [-2158209, 443795], [-2421714, -240580],
         [-2310516, -1186511], [221596, -2021219], [933275, -1199763]], np.int64,
    )  # fmt: skip
    got = _offsets_of([[poly]], [-1.0, -2.0])[0]
    for t, d in enumerate([-1.0, -2.0]):
        assert len(got[t]) == 1
        assert abs(_area(got[t][0]) - _area(_clipper([poly], d)[0])) <= _perimeter(poly)


def _prism(poly: list[tuple[float, float]], h: float) -> tuple[np.ndarray, np.ndarray]:
    n = len(poly)
    v = np.array([[x, y, 0.0] for x, y in poly] + [[x, y, h] for x, y in poly])
    f = [
        t
        for i in range(n)
        for t in ([i, (i + 1) % n, n + (i + 1) % n], [i, n + (i + 1) % n, n + i])
    ]
    f += [t for i in range(1, n - 1) for t in ([0, i + 1, i], [n, n + i, n + i + 1])]
    return v, np.array(f)


def test_a_chamfer_that_the_wall_offset_shrinks_to_a_point_keeps_the_walls() -> None:
    # a 1 mm square, its corner cut by a 45° chamfer of 0.117158 mm: offset by half a 0.4 mm
    # line the chamfer is under 10 nm long, and the kernel once dropped the island's walls
    c = 0.117158
    mesh = _prism([(0, 0), (1 - c, 0), (1, c), (1, 1), (0, 1)], 0.6)
    layers, outer = slice_mesh_walls(mesh, 0.2, 0.4, 1)
    for lay, out in zip(layers, outer, strict=True):
        assert int(out.sum()) == 1
        walls = lay.xy[lay.start[np.flatnonzero(out)[0]] : lay.start[np.flatnonzero(out)[0] + 1]]
        assert abs(_area(np.round(walls * _SCALE).astype(np.int64)) / _SCALE**2 - 0.6**2) < 0.01

"""Travel ordering of islands and wells: nearest neighbour, then 2-opt — numba kernels with numpy references.

The tour is open (the printer does not return to where it started) and begins
at a fixed point, the nozzle's current position.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from labdevices.toolpath._kernel import kernel

__all__ = [
    "nearest_neighbour",
    "nearest_neighbour_ref",
    "order_layer",
    "order_points",
    "path_islands",
    "path_islands_ref",
    "reorder_points",
    "tour_length",
    "travel_crossings",
    "travel_crossings_ref",
    "two_opt",
    "two_opt_ref",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
_EPS = 1e-9  # an improvement must beat rounding noise, or 2-opt can cycle


@kernel("i8[::1](f8[:, ::1], f8, f8)")
def nearest_neighbour(pts: F64, x0: float, y0: float) -> I64:
    """Visit order: always the nearest unvisited point, starting from (x0, y0); ties to the lower index."""
    n = pts.shape[0]
    order = np.empty(n, np.int64)
    used = np.zeros(n, np.bool_)
    x, y = x0, y0
    for k in range(n):
        best = -1
        best_d = np.inf
        for j in range(n):
            if not used[j]:
                d = (pts[j, 0] - x) ** 2 + (pts[j, 1] - y) ** 2
                if d < best_d:
                    best_d = d
                    best = j
        order[k] = best
        used[best] = True
        x, y = pts[best, 0], pts[best, 1]
    return order


def nearest_neighbour_ref(pts: F64, x0: float, y0: float) -> I64:
    """Reference of ``nearest_neighbour``."""
    n = pts.shape[0]
    order = np.empty(n, np.int64)
    d_used = np.zeros(n, bool)
    p = np.array([x0, y0])
    for k in range(n):
        d = np.sum((pts - p) ** 2, axis=1)
        d[d_used] = np.inf
        j = int(np.argmin(d))
        order[k] = j
        d_used[j] = True
        p = pts[j]
    return order


@kernel("f8(f8[:, ::1], i8, i8, f8, f8)")
def _dist(pts: F64, i: int, j: int, x0: float, y0: float) -> float:
    # index -1 is the fixed start point
    ax, ay = (x0, y0) if i < 0 else (pts[i, 0], pts[i, 1])
    bx, by = (x0, y0) if j < 0 else (pts[j, 0], pts[j, 1])
    return float(np.sqrt((ax - bx) ** 2 + (ay - by) ** 2))


@kernel("i8[::1](f8[:, ::1], i8[::1], f8, f8, i8)")
def two_opt(pts: F64, order: I64, x0: float, y0: float, max_passes: int) -> I64:
    """Improve an open tour from (x0, y0) by reversing stretches while that shortens it.

    For each i, the first j (in increasing order) whose reversal of tour[i..j]
    shortens the tour is applied; passes repeat until none improves.
    """
    t = order.copy()
    n = t.shape[0]
    for _ in range(max_passes):
        improved = False
        for i in range(n - 1):
            a = t[i - 1] if i > 0 else -1
            b = t[i]
            dab = _dist(pts, a, b, x0, y0)
            for j in range(i + 1, n):
                c = t[j]
                gain = dab - _dist(pts, a, c, x0, y0)
                if j + 1 < n:
                    d = t[j + 1]
                    gain += _dist(pts, c, d, x0, y0) - _dist(pts, b, d, x0, y0)
                if gain > _EPS:
                    t[i : j + 1] = t[i : j + 1][::-1].copy()
                    improved = True
                    break
        if not improved:
            break
    return t


def two_opt_ref(pts: F64, order: I64, x0: float, y0: float, max_passes: int) -> I64:
    """Reference of ``two_opt``: the gains of all j for one i at once."""
    t = order.copy()
    n = len(t)
    for _ in range(max_passes):
        improved = False
        for i in range(n - 1):
            a = pts[t[i - 1]] if i > 0 else np.array([x0, y0])
            b = pts[t[i]]
            c = pts[t[i + 1 :]]
            gain = np.hypot(*(a - b)) - np.hypot(*(c - a).T)
            nxt = pts[t[i + 2 :]]
            gain[:-1] += np.hypot(*(c[:-1] - nxt).T) - np.hypot(*(nxt - b).T)
            hits = np.flatnonzero(gain > _EPS)
            if hits.size:
                j = i + 1 + int(hits[0])
                t[i : j + 1] = t[i : j + 1][::-1].copy()
                improved = True
        if not improved:
            break
    return t


def tour_length(pts: F64, order: I64, x0: float, y0: float) -> float:
    """Length of the open tour from (x0, y0) through ``pts[order]``."""
    p = np.vstack([[x0, y0], pts[order]])
    return float(np.sum(np.hypot(*np.diff(p, axis=0).T)))


def order_points(pts: F64, x0: float = 0.0, y0: float = 0.0, max_passes: int = 50) -> I64:
    """Short visiting order of points (island starts, well centres): nearest neighbour + 2-opt."""
    pts = np.ascontiguousarray(pts, np.float64).reshape(-1, 2)
    if len(pts) < 2:
        return np.arange(len(pts), dtype=np.int64)
    return two_opt(pts, nearest_neighbour(pts, x0, y0), x0, y0, max_passes)


# --- paths of a sliced layer: islands, then walls and infill within each ----------------


@kernel("b1(f8, f8, f8[:, ::1], i8, i8)")
def _inside(px: float, py: float, xy: F64, a: int, b: int) -> bool:
    """Crossing-number test of (px, py) against the closed polygon xy[a:b]."""
    c = False
    j = b - 1
    for i in range(a, b):
        yi = xy[i, 1]
        yj = xy[j, 1]
        if (yi > py) != (yj > py):
            x_cross = xy[i, 0] + (py - yi) * (xy[j, 0] - xy[i, 0]) / (yj - yi)
            if px < x_cross:
                c = not c
        j = i
    return c


@kernel("i8[::1](f8[:, ::1], i8[::1], b1[::1], f8[::1])")
def path_islands(xy: F64, start: I64, is_outline: npt.NDArray[np.bool_], area: F64) -> I64:
    """Island of every path of a layer, numbered 0… in the order of the outlines.

    Outlines (``is_outline``: a counter-clockwise outer loop, ``area`` > 0) are
    islands of their own; any other path belongs to the smallest outline that holds
    its first point (an island inside another's hole is smaller than it), or, if
    none does (rounding at a wall), to the outline whose box is nearest.
    """
    n = start.shape[0] - 1
    outl = np.flatnonzero(is_outline)
    m = outl.shape[0]
    number = np.full(n, -1, np.int64)
    box = np.empty((m, 4))
    for q in range(m):
        p = outl[q]
        number[p] = q
        seg = xy[start[p] : start[p + 1]]
        box[q, 0] = seg[:, 0].min()
        box[q, 1] = seg[:, 1].min()
        box[q, 2] = seg[:, 0].max()
        box[q, 3] = seg[:, 1].max()
    out = np.empty(n, np.int64)
    for p in range(n):
        if number[p] >= 0:
            out[p] = number[p]
            continue
        px = xy[start[p], 0]
        py = xy[start[p], 1]
        best = -1
        best_a = np.inf
        near = -1
        near_d = np.inf
        for q in range(m):
            dx = max(box[q, 0] - px, 0.0, px - box[q, 2])
            dy = max(box[q, 1] - py, 0.0, py - box[q, 3])
            d = dx * dx + dy * dy
            if d < near_d:
                near_d = d
                near = q
            if d > 0.0 or area[outl[q]] >= best_a:
                continue
            o = outl[q]
            if _inside(px, py, xy, start[o], start[o + 1]):
                best = q
                best_a = area[o]
        out[p] = best if best >= 0 else near
    return out


def path_islands_ref(xy: F64, start: I64, is_outline: npt.NDArray[np.bool_], area: F64) -> I64:
    """Reference of ``path_islands``: every path's point tested against every outline with numpy."""
    outl = np.flatnonzero(is_outline)
    out = np.empty(len(start) - 1, np.int64)
    for p in range(len(start) - 1):
        hit = np.flatnonzero(outl == p)
        if hit.size:
            out[p] = hit[0]
            continue
        pt = xy[start[p]]
        inside = np.zeros(len(outl), bool)
        gap = np.zeros(len(outl))
        for q, o in enumerate(outl):
            poly = xy[start[o] : start[o + 1]]
            lo, hi = poly.min(axis=0), poly.max(axis=0)
            gap[q] = float(np.sum(np.maximum(np.maximum(lo - pt, 0.0), pt - hi) ** 2))
            nxt = np.roll(poly, -1, axis=0)
            spans = (poly[:, 1] > pt[1]) != (nxt[:, 1] > pt[1])
            with np.errstate(divide="ignore", invalid="ignore"):
                xc = poly[:, 0] + (pt[1] - poly[:, 1]) * (nxt[:, 0] - poly[:, 0]) / (
                    nxt[:, 1] - poly[:, 1]
                )
            inside[q] = gap[q] == 0.0 and bool(np.count_nonzero(spans & (pt[0] < xc)) % 2)
        if inside.any():
            cand = np.flatnonzero(inside)
            out[p] = cand[np.argmin(area[outl[cand]])]
        else:
            out[p] = int(np.argmin(gap))
    return out


@kernel(
    "Tuple((i8[::1], i8[::1], b1[::1], f8, f8))(f8[:, ::1], i8[::1], b1[::1], i8[::1], i8[::1], i8[::1], f8, f8)"
)
def order_layer(
    xy: F64,
    start: I64,
    closed: npt.NDArray[np.bool_],
    island: I64,
    rank: I64,
    island_order: I64,
    x0: float,
    y0: float,
) -> tuple[I64, I64, npt.NDArray[np.bool_], float, float]:
    """Printing order of a layer's paths: island by island (``island_order``); within an
    island by ``rank`` (say walls, then infill), each time the path nearest to
    the nozzle next — a closed loop starting at its vertex nearest the nozzle, an open
    path from its nearer end.

    Returns (path order, first vertex of each ordered path (offset within it), reversed
    flag, and the nozzle's final position).
    """
    n = start.shape[0] - 1
    n_isl = island_order.shape[0]
    # paths grouped by island, then by rank (a stable counting sort on both keys)
    key = np.empty(n, np.int64)
    pos_of = np.empty(n_isl, np.int64)
    for q in range(n_isl):
        pos_of[island_order[q]] = q
    max_rank = 0
    for p in range(n):
        max_rank = max(max_rank, rank[p])
    for p in range(n):
        key[p] = pos_of[island[p]] * (max_rank + 1) + rank[p]
    grouped = np.argsort(key, kind="mergesort")
    order = np.empty(n, np.int64)
    first = np.zeros(n, np.int64)
    rev = np.zeros(n, np.bool_)
    used = np.zeros(n, np.bool_)
    x, y = x0, y0
    g0 = 0
    k = 0
    while g0 < n:
        g1 = g0
        while g1 < n and key[grouped[g1]] == key[grouped[g0]]:
            g1 += 1
        for _ in range(g1 - g0):
            best = -1
            best_d = np.inf
            best_v = 0
            best_rev = False
            for gi in range(g0, g1):
                p = grouped[gi]
                if used[p]:
                    continue
                a = start[p]
                b = start[p + 1]
                if closed[p]:
                    for v in range(a, b):
                        d = (xy[v, 0] - x) ** 2 + (xy[v, 1] - y) ** 2
                        if d < best_d:
                            best_d = d
                            best = p
                            best_v = v - a
                            best_rev = False
                else:
                    d = (xy[a, 0] - x) ** 2 + (xy[a, 1] - y) ** 2
                    if d < best_d:
                        best_d = d
                        best = p
                        best_v = 0
                        best_rev = False
                    d = (xy[b - 1, 0] - x) ** 2 + (xy[b - 1, 1] - y) ** 2
                    if d < best_d:
                        best_d = d
                        best = p
                        best_v = 0
                        best_rev = True
            used[best] = True
            order[k] = best
            first[k] = best_v
            rev[k] = best_rev
            k += 1
            a = start[best]
            b = start[best + 1]
            if closed[best]:
                x, y = xy[a + best_v, 0], xy[a + best_v, 1]
            elif best_rev:
                x, y = xy[a, 0], xy[a, 1]
            else:
                x, y = xy[b - 1, 0], xy[b - 1, 1]
        g0 = g1
    return order, first, rev, x, y


@kernel("UniTuple(i8[::1], 2)(i8[::1], i8[::1], i8[::1], b1[::1])")
def reorder_points(
    start: I64, order: I64, first: I64, rev: npt.NDArray[np.bool_]
) -> tuple[I64, I64]:
    """Gather index into the old points, and the new path starts, for ``order_layer``'s result."""
    n = order.shape[0]
    new_start = np.zeros(n + 1, np.int64)
    for k in range(n):
        p = order[k]
        new_start[k + 1] = new_start[k] + start[p + 1] - start[p]
    gather = np.empty(new_start[n], np.int64)
    for k in range(n):
        p = order[k]
        a = start[p]
        m = start[p + 1] - a
        o = new_start[k]
        for j in range(m):
            if rev[k]:
                gather[o + j] = a + m - 1 - j
            else:
                gather[o + j] = a + (first[k] + j) % m
    return gather, new_start


# --- travels that cross open space -------------------------------------------------------


@kernel("f8(f8, f8, f8, f8, f8, f8)")
def _orient(ax: float, ay: float, bx: float, by: float, cx: float, cy: float) -> float:
    return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)


@kernel("b1[::1](f8[:, ::1], i8[::1], i8[::1], b1[::1])")
def travel_crossings(
    xy: F64, pstart: I64, layer_pstart: I64, outer: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_]:
    """For each path: does the straight travel to its first point, from the end of the path
    before it, properly cross an outer wall of its layer (a layer's outline or a hole)?

    ``xy`` holds every layer's points, closed paths with their first point repeated at
    the end; ``outer`` flags the outer-wall paths. Touching a wall at the travel's ends
    does not count (travels start and end on walls). The first path of all never crosses.
    """
    n_paths = pstart.shape[0] - 1
    out = np.zeros(n_paths, np.bool_)
    eps = 1e-12
    for li in range(layer_pstart.shape[0] - 1):
        p0 = layer_pstart[li]
        p1 = layer_pstart[li + 1]
        walls = np.empty(p1 - p0, np.int64)
        n_w = 0
        for p in range(p0, p1):
            if outer[p]:
                walls[n_w] = p
                n_w += 1
        if n_w == 0:
            continue
        box = np.empty((n_w, 4))
        for w in range(n_w):
            seg = xy[pstart[walls[w]] : pstart[walls[w] + 1]]
            box[w, 0] = seg[:, 0].min()
            box[w, 1] = seg[:, 1].min()
            box[w, 2] = seg[:, 0].max()
            box[w, 3] = seg[:, 1].max()
        for i in range(max(p0, 1), p1):
            ax = xy[pstart[i] - 1, 0]
            ay = xy[pstart[i] - 1, 1]
            bx = xy[pstart[i], 0]
            by = xy[pstart[i], 1]
            lo_x = min(ax, bx)
            hi_x = max(ax, bx)
            lo_y = min(ay, by)
            hi_y = max(ay, by)
            hit = False
            for w in range(n_w):
                if box[w, 0] > hi_x or box[w, 2] < lo_x or box[w, 1] > hi_y or box[w, 3] < lo_y:
                    continue
                p = walls[w]
                for j in range(pstart[p], pstart[p + 1] - 1):
                    cx = xy[j, 0]
                    cy = xy[j, 1]
                    dx = xy[j + 1, 0]
                    dy = xy[j + 1, 1]
                    if max(cx, dx) < lo_x or min(cx, dx) > hi_x:
                        continue
                    if max(cy, dy) < lo_y or min(cy, dy) > hi_y:
                        continue
                    o1 = _orient(ax, ay, bx, by, cx, cy)
                    o2 = _orient(ax, ay, bx, by, dx, dy)
                    o3 = _orient(cx, cy, dx, dy, ax, ay)
                    o4 = _orient(cx, cy, dx, dy, bx, by)
                    if o1 * o2 < -eps and o3 * o4 < -eps:
                        hit = True
                        break
                if hit:
                    break
            out[i] = hit
    return out


def travel_crossings_ref(
    xy: F64, pstart: I64, layer_pstart: I64, outer: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_]:
    """Reference of ``travel_crossings``: every travel against every wall edge of its layer."""
    out = np.zeros(len(pstart) - 1, bool)
    for li in range(len(layer_pstart) - 1):
        p0, p1 = int(layer_pstart[li]), int(layer_pstart[li + 1])
        edges = [
            np.column_stack([xy[pstart[p] : pstart[p + 1] - 1], xy[pstart[p] + 1 : pstart[p + 1]]])
            for p in range(p0, p1)
            if outer[p]
        ]
        if not edges:
            continue
        e = np.concatenate(edges)
        c, d = e[:, :2], e[:, 2:]
        for i in range(max(p0, 1), p1):
            a, b = xy[pstart[i] - 1], xy[pstart[i]]

            def orient(p: F64, q: F64, r: F64) -> F64:
                return (q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1]) - (
                    q[..., 1] - p[..., 1]
                ) * (r[..., 0] - p[..., 0])

            o1, o2 = orient(a, b, c), orient(a, b, d)
            o3, o4 = orient(c, d, a), orient(c, d, b)
            out[i] = bool(np.any((o1 * o2 < -1e-12) & (o3 * o4 < -1e-12)))
    return out

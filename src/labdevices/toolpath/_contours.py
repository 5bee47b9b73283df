"""Numba kernels on closed contours: nesting and orientation, simplification.

Contours are stacked: contour ``i`` is ``xy[start[i]:start[i + 1]]`` (closing
segment implied); contours of layer ``k`` are ``layer[k]:layer[k + 1]``. Each kernel
has a plain-numpy or plain-Python reference ``*_ref`` beside it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from labdevices.toolpath._kernel import kernel

__all__ = [
    "apart_contours",
    "apart_contours_ref",
    "offset_convex",
    "orient_contours",
    "orient_contours_ref",
    "signed_areas",
    "signed_areas_ref",
    "simplify_contours",
    "simplify_contours_ref",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B1 = npt.NDArray[np.bool_]


@kernel("f8[::1](f8[:, ::1], i8[::1])")
def signed_areas(xy: F64, start: I64) -> F64:
    """Shoelace area of each contour: positive counter-clockwise."""
    n = start.shape[0] - 1
    out = np.empty(n, np.float64)
    for i in range(n):
        a = start[i]
        b = start[i + 1]
        s = 0.0
        # relative to the first point, for precision far from the origin
        x0 = xy[a, 0]
        y0 = xy[a, 1]
        for p in range(a, b):
            q = p + 1 if p + 1 < b else a
            s += (xy[p, 0] - x0) * (xy[q, 1] - y0) - (xy[q, 0] - x0) * (xy[p, 1] - y0)
        out[i] = 0.5 * s
    return out


def signed_areas_ref(xy: F64, start: I64) -> F64:
    """Reference for ``signed_areas`` with numpy."""
    out = np.empty(len(start) - 1)
    for i in range(len(start) - 1):
        p = xy[start[i] : start[i + 1]]
        q = np.roll(p, -1, axis=0)
        out[i] = 0.5 * np.sum(p[:, 0] * q[:, 1] - q[:, 0] * p[:, 1])
    return out


@kernel("b1(f8, f8, f8[:, ::1], i8, i8)")
def _inside(x: float, y: float, xy: F64, a: int, b: int) -> bool:
    # even-odd crossing number with the half-open rule, so vertices count once
    inside = False
    for p in range(a, b):
        q = p + 1 if p + 1 < b else a
        yp = xy[p, 1]
        yq = xy[q, 1]
        if (yp > y) != (yq > y):
            xc = xy[p, 0] + (y - yp) * (xy[q, 0] - xy[p, 0]) / (yq - yp)
            if x < xc:
                inside = not inside
    return inside


@kernel("Tuple((f8[:, ::1], i8[::1], f8[::1]))(f8[:, ::1], i8[::1], i8[::1])")
def orient_contours(xy: F64, start: I64, layer: I64) -> tuple[F64, I64, F64]:
    """Orient each layer's contours by nesting: outer counter-clockwise, holes clockwise.

    The nesting depth of a contour is the number of contours of its layer that
    contain it; even depth is an outer boundary, odd a hole. Returns (xy with
    contours reversed where needed, depth (C,), signed area (C,) after orientation).
    """
    n = start.shape[0] - 1
    area = signed_areas(xy, start)
    out = xy.copy()
    depth = np.zeros(n, np.int64)
    lo = np.empty((n, 2), np.float64)
    hi = np.empty((n, 2), np.float64)
    for i in range(n):
        lo[i, 0] = xy[start[i] : start[i + 1], 0].min()
        lo[i, 1] = xy[start[i] : start[i + 1], 1].min()
        hi[i, 0] = xy[start[i] : start[i + 1], 0].max()
        hi[i, 1] = xy[start[i] : start[i + 1], 1].max()
    for k in range(layer.shape[0] - 1):
        for i in range(layer[k], layer[k + 1]):
            x = xy[start[i], 0]
            y = xy[start[i], 1]
            ai = abs(area[i])
            for j in range(layer[k], layer[k + 1]):
                if j == i or abs(area[j]) <= ai:
                    continue
                if lo[j, 0] > lo[i, 0] or lo[j, 1] > lo[i, 1]:
                    continue
                if hi[j, 0] < hi[i, 0] or hi[j, 1] < hi[i, 1]:
                    continue
                if _inside(x, y, xy, start[j], start[j + 1]):
                    depth[i] += 1
    for i in range(n):
        want_ccw = depth[i] % 2 == 0
        if (area[i] > 0) != want_ccw:
            a = start[i]
            b = start[i + 1]
            for p in range(b - a):
                out[a + p, 0] = xy[b - 1 - p, 0]
                out[a + p, 1] = xy[b - 1 - p, 1]
            area[i] = -area[i]
    return out, depth, area


def orient_contours_ref(xy: F64, start: I64, layer: I64) -> tuple[F64, I64, F64]:
    """Reference for ``orient_contours``: vectorised point-in-polygon against every contour."""
    area = signed_areas_ref(xy, start)
    out = xy.copy()
    depth = np.zeros(len(start) - 1, np.int64)
    for k in range(len(layer) - 1):
        for i in range(layer[k], layer[k + 1]):
            x, y = xy[start[i]]
            for j in range(layer[k], layer[k + 1]):
                if j == i or abs(area[j]) <= abs(area[i]):
                    continue
                p = xy[start[j] : start[j + 1]]
                q = np.roll(p, -1, axis=0)
                straddle = (p[:, 1] > y) != (q[:, 1] > y)
                with np.errstate(divide="ignore", invalid="ignore"):
                    xc = p[:, 0] + (y - p[:, 1]) * (q[:, 0] - p[:, 0]) / (q[:, 1] - p[:, 1])
                if np.count_nonzero(straddle & (x < xc)) % 2 == 1:
                    depth[i] += 1
    for i in range(len(start) - 1):
        if (area[i] > 0) != (depth[i] % 2 == 0):
            out[start[i] : start[i + 1]] = xy[start[i] : start[i + 1]][::-1]
            area[i] = -area[i]
    return out, depth, area


@kernel("f8(f8, f8, f8, f8, f8, f8)")
def _seg_dist2(px: float, py: float, ax: float, ay: float, bx: float, by: float) -> float:
    dx = bx - ax
    dy = by - ay
    d2 = dx * dx + dy * dy
    if d2 == 0.0:
        return (px - ax) ** 2 + (py - ay) ** 2
    t = ((px - ax) * dx + (py - ay) * dy) / d2
    t = min(1.0, max(0.0, t))
    return (px - ax - t * dx) ** 2 + (py - ay - t * dy) ** 2


# longest run of points one simplified segment may replace: bounds the cost per point
_WINDOW = 64


@kernel("Tuple((f8[:, ::1], i8[::1], i8[::1]))(f8[:, ::1], i8[::1], i8[::1], f8)")
def simplify_contours(xy: F64, start: I64, layer: I64, tol: float) -> tuple[F64, I64, I64]:
    """Drop contour points that lie within ``tol`` of the segment that replaces them.

    Greedy from the first point of each contour: extend a segment while every point
    it skips stays within ``tol``. Contours left with fewer than three points are
    dropped. Returns (xy, start, layer) of the simplified contours.
    """
    tol2 = tol * tol
    out = np.empty_like(xy)
    out_start = np.empty_like(start)
    out_layer = np.empty_like(layer)
    out_start[0] = 0
    out_layer[0] = 0
    n_out = 0
    c_out = 0
    for k in range(layer.shape[0] - 1):
        for i in range(layer[k], layer[k + 1]):
            a = start[i]
            b = start[i + 1]
            m = b - a
            begin = n_out
            anchor = 0
            out[n_out] = xy[a]
            n_out += 1
            while anchor < m:
                best = anchor + 1
                j = anchor + 2
                while j <= m and j - anchor <= _WINDOW:
                    # index m is the first point again: the contour closes
                    jj = a + (j if j < m else 0)
                    ok = True
                    for p in range(anchor + 1, j):
                        if (
                            _seg_dist2(
                                xy[a + p, 0],
                                xy[a + p, 1],
                                xy[a + anchor, 0],
                                xy[a + anchor, 1],
                                xy[jj, 0],
                                xy[jj, 1],
                            )
                            > tol2
                        ):
                            ok = False
                            break
                    if not ok:
                        break
                    best = j
                    j += 1
                if best < m:
                    out[n_out] = xy[a + best]
                    n_out += 1
                anchor = best
            if n_out - begin >= 3:
                c_out += 1
                out_start[c_out] = n_out
            else:
                n_out = begin
        out_layer[k + 1] = c_out
    return out[:n_out].copy(), out_start[: c_out + 1].copy(), out_layer


def simplify_contours_ref(xy: F64, start: I64, layer: I64, tol: float) -> tuple[F64, I64, I64]:
    """Reference for ``simplify_contours`` in plain Python and numpy."""
    pts_out: list[F64] = []
    starts = [0]
    layers = [0]
    for k in range(len(layer) - 1):
        for i in range(layer[k], layer[k + 1]):
            ring = xy[start[i] : start[i + 1]]
            m = len(ring)
            closed_ring = np.vstack([ring, ring[:1]])
            kept = [0]
            anchor = 0
            while anchor < m:
                best = anchor + 1
                for j in range(anchor + 2, min(m, anchor + _WINDOW) + 1):
                    a, b = closed_ring[anchor], closed_ring[j]
                    mid = closed_ring[anchor + 1 : j]
                    d = b - a
                    d2 = float(d @ d)
                    t = np.clip((mid - a) @ d / d2, 0, 1) if d2 > 0 else np.zeros(len(mid))
                    dist2 = np.sum((mid - a - t[:, None] * d) ** 2, axis=1)
                    if np.any(dist2 > tol * tol):
                        break
                    best = j
                if best < m:
                    kept.append(best)
                anchor = best
            if len(kept) >= 3:
                pts_out.append(ring[kept])
                starts.append(starts[-1] + len(kept))
        layers.append(len(starts) - 1)
    return (
        np.concatenate(pts_out) if pts_out else np.zeros((0, 2)),
        np.array(starts, np.int64),
        np.array(layers, np.int64),
    )


@kernel("i8(f8)")
def _round_away(v: float) -> int:
    # clipper's Round: halves away from zero
    return int(v - 0.5) if v < 0.0 else int(v + 0.5)


@kernel("f8(f8[::1], f8[::1], f8[::1], f8[::1], i8, f8, f8)")
def _outside(qx: F64, qy: F64, ux: F64, uy: F64, i: int, x: float, y: float) -> float:
    # > 0: (x, y) lies to the right of line i, outside its half-plane
    return float(ux[i] * (qy[i] - y) - uy[i] * (qx[i] - x))


@kernel("UniTuple(f8, 2)(f8[::1], f8[::1], f8[::1], f8[::1], i8, i8)")
def _meet(qx: F64, qy: F64, ux: F64, uy: F64, i: int, j: int) -> tuple[float, float]:
    # where lines i and j cross; NaN where they are (nearly) parallel
    den = ux[i] * uy[j] - uy[i] * ux[j]
    if abs(den) < 1e-9:
        return np.nan, np.nan
    t = ((qx[j] - qx[i]) * uy[j] - (qy[j] - qy[i]) * ux[j]) / den
    return qx[i] + t * ux[i], qy[i] + t * uy[i]


@kernel("Tuple((i8[:, ::1], i8[::1], b1[::1]))(i8[:, ::1], i8[::1], i8[::1], f8[::1])")
def offset_convex(pts: I64, start: I64, which: I64, deltas: F64) -> tuple[I64, I64, B1]:
    """Inward offsets of convex counter-clockwise contours, without clipper.

    For each contour ``c = which[i]`` (``pts[start[c]:start[c + 1]]``, clipper's integer
    units) and each ``d`` in ``deltas`` (<= 0: inwards), the region at least ``|d|``
    inside the contour: the intersection of its edges' half-planes moved ``|d|``
    inwards (the edges being sorted by angle, one pass with a deque), vertices rounded
    as clipper rounds. That region is what clipper's offset returns for a convex
    contour, up to rounding, the start point and collinear points; it may be empty.
    ``ok[i]`` is False, and nothing is written for contour ``i``, unless the contour is
    convex, counter-clockwise and turns once (clipper must offset the others).
    Returns (points, start of each (contour, delta) result in contour-major order, ok).
    """
    n_d = deltas.shape[0]
    cap = 0
    for i in range(which.shape[0]):
        cap += (start[which[i] + 1] - start[which[i]]) * n_d
    out = np.empty((cap, 2), np.int64)
    out_start = np.zeros(which.shape[0] * n_d + 1, np.int64)
    ok = np.zeros(which.shape[0], np.bool_)
    size = 16
    ux = np.empty(size, np.float64)
    uy = np.empty(size, np.float64)
    qx = np.empty(size, np.float64)
    qy = np.empty(size, np.float64)
    dq = np.empty(size, np.int64)
    w = 0
    for i in range(which.shape[0]):
        a = start[which[i]]
        n = start[which[i] + 1] - a
        for t in range(n_d):
            out_start[i * n_d + t + 1] = w
        if n < 3:
            continue
        if size < n:
            size = n
            ux = np.empty(size, np.float64)
            uy = np.empty(size, np.float64)
            qx = np.empty(size, np.float64)
            qy = np.empty(size, np.float64)
            dq = np.empty(size, np.int64)
        # unit directions of the edges; coordinates relative to the first point
        x0 = pts[a, 0]
        y0 = pts[a, 1]
        good = True
        for j in range(n):
            q = a + (j + 1) % n
            dx = float(pts[q, 0] - pts[a + j, 0])
            dy = float(pts[q, 1] - pts[a + j, 1])
            length = np.sqrt(dx * dx + dy * dy)
            if length == 0.0:
                good = False
                break
            ux[j] = dx / length
            uy[j] = dy / length
        if not good:
            continue
        # convex and counter-clockwise, turning once: every turn left, 2 pi in all
        turned = 0.0
        for j in range(n):
            k = j - 1 if j > 0 else n - 1
            sin_a = ux[k] * uy[j] - uy[k] * ux[j]
            if sin_a <= 0.0:
                good = False
                break
            turned += np.arctan2(sin_a, ux[k] * ux[j] + uy[k] * uy[j])
        if not good or abs(turned - 2.0 * np.pi) > 1e-6:
            continue
        for t in range(n_d):
            s = -deltas[t]
            for j in range(n):  # edge j moved s to its left, inwards
                qx[j] = float(pts[a + j, 0] - x0) - s * uy[j]
                qy[j] = float(pts[a + j, 1] - y0) + s * ux[j]
            head = 0
            tail = 0  # dq[head:tail]: the lines kept so far, in order
            for j in range(n):
                while good and tail - head >= 2:  # corners outside line j go
                    x, y = _meet(qx, qy, ux, uy, dq[tail - 2], dq[tail - 1])
                    good = not np.isnan(x)
                    if good and _outside(qx, qy, ux, uy, j, x, y) < 0.0:
                        break
                    tail -= 1
                while good and tail - head >= 2:
                    x, y = _meet(qx, qy, ux, uy, dq[head], dq[head + 1])
                    good = not np.isnan(x)
                    if good and _outside(qx, qy, ux, uy, j, x, y) < 0.0:
                        break
                    head += 1
                if good and tail > head:
                    k = dq[tail - 1]
                    if (
                        abs(ux[k] * uy[j] - uy[k] * ux[j]) < 1e-9
                        and ux[k] * ux[j] + uy[k] * uy[j] < 0
                    ):
                        # opposite edges next to each other: every line between them
                        # went, so nothing is left this far inside
                        head = tail = 0
                        break
                dq[tail] = j
                tail += 1
            # close the ring: the last lines against the first, the first against the last
            while good and tail - head >= 3:
                x, y = _meet(qx, qy, ux, uy, dq[tail - 2], dq[tail - 1])
                good = not np.isnan(x)
                if good and _outside(qx, qy, ux, uy, dq[head], x, y) < 0.0:
                    break
                tail -= 1
            while good and tail - head >= 3:
                x, y = _meet(qx, qy, ux, uy, dq[head], dq[head + 1])
                good = not np.isnan(x)
                if good and _outside(qx, qy, ux, uy, dq[tail - 1], x, y) < 0.0:
                    break
                head += 1
            if not good:
                break
            m = tail - head
            begin = w
            if m >= 3:
                for j in range(m):
                    x, y = _meet(qx, qy, ux, uy, dq[head + (j - 1) % m], dq[head + j])
                    if np.isnan(x):
                        good = False
                        break
                    out[w, 0] = x0 + _round_away(x)
                    out[w, 1] = y0 + _round_away(y)
                    # corners of an edge shorter than a unit round to one point: keep it once
                    if w == begin or out[w, 0] != out[w - 1, 0] or out[w, 1] != out[w - 1, 1]:
                        w += 1
                while w - begin > 1 and (
                    out[w - 1, 0] == out[begin, 0] and out[w - 1, 1] == out[begin, 1]
                ):
                    w -= 1
                m = w - begin
                # too small to keep its shape once rounded: clipper would drop it
                area2 = 0
                for j in range(m if good and m >= 3 else 0):
                    p = begin + j
                    q = begin + (j + 1) % m
                    px, py = out[p, 0] - x0, out[p, 1] - y0
                    area2 += px * (out[q, 1] - y0) - (out[q, 0] - x0) * py
                if not good or area2 <= 0:
                    w = begin
            if not good:
                break
            out_start[i * n_d + t + 1] = w
        if not good:
            w = out_start[i * n_d]
            for t in range(n_d):
                out_start[i * n_d + t + 1] = w
            continue
        ok[i] = True
    return out[:w].copy(), out_start, ok


@kernel("b1[::1](i8[:, ::1], i8[::1], i8[::1])")
def apart_contours(pts: I64, start: I64, layer: I64) -> B1:
    """Contours whose bounding box meets no other contour's box in their layer.

    Such a contour is an island's whole outline, nested in nothing and holding
    nothing, so it can be offset inwards on its own. One sweep in x per layer.
    """
    n = start.shape[0] - 1
    lo = np.empty((n, 2), np.int64)
    hi = np.empty((n, 2), np.int64)
    for i in range(n):
        lo[i, 0] = pts[start[i] : start[i + 1], 0].min()
        lo[i, 1] = pts[start[i] : start[i + 1], 1].min()
        hi[i, 0] = pts[start[i] : start[i + 1], 0].max()
        hi[i, 1] = pts[start[i] : start[i + 1], 1].max()
    apart = np.ones(n, np.bool_)
    for k in range(layer.shape[0] - 1):
        a = layer[k]
        order = a + np.argsort(lo[a : layer[k + 1], 0])
        for p in range(order.shape[0]):
            i = order[p]
            for q in range(p + 1, order.shape[0]):
                j = order[q]
                if lo[j, 0] > hi[i, 0]:
                    break  # sorted by left edge: no later box reaches back to i
                if lo[j, 1] <= hi[i, 1] and lo[i, 1] <= hi[j, 1]:
                    apart[i] = False
                    apart[j] = False
    return apart


def apart_contours_ref(pts: I64, start: I64, layer: I64) -> B1:
    """Reference for ``apart_contours``: every pair of boxes of a layer compared."""
    lo = np.array([pts[start[i] : start[i + 1]].min(0) for i in range(len(start) - 1)])
    hi = np.array([pts[start[i] : start[i + 1]].max(0) for i in range(len(start) - 1)])
    apart = np.ones(len(start) - 1, np.bool_)
    for k in range(len(layer) - 1):
        idx = np.arange(layer[k], layer[k + 1])
        for i in idx:
            others = idx[idx != i]
            meet = (lo[others] <= hi[i]).all(axis=1) & (lo[i] <= hi[others]).all(axis=1)
            apart[i] = not meet.any()
    return apart

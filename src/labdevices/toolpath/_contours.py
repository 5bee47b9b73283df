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
    "orient_contours",
    "orient_contours_ref",
    "signed_areas",
    "signed_areas_ref",
    "simplify_contours",
    "simplify_contours_ref",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


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

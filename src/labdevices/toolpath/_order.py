"""Travel ordering of islands and wells: nearest neighbour, then 2-opt — numba kernels with numpy references.

The tour is open (the printer does not return to where it started) and begins
at a fixed point, the nozzle's current position.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

__all__ = [
    "nearest_neighbour",
    "nearest_neighbour_ref",
    "order_points",
    "tour_length",
    "two_opt",
    "two_opt_ref",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
_EPS = 1e-9  # an improvement must beat rounding noise, or 2-opt can cycle


@njit(cache=True)
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


@njit(cache=True)
def _dist(pts: F64, i: int, j: int, x0: float, y0: float) -> float:
    # index -1 is the fixed start point
    ax, ay = (x0, y0) if i < 0 else (pts[i, 0], pts[i, 1])
    bx, by = (x0, y0) if j < 0 else (pts[j, 0], pts[j, 1])
    return float(np.sqrt((ax - bx) ** 2 + (ay - by) ** 2))


@njit(cache=True)
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

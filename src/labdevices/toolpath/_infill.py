"""Numba kernels for rectilinear infill: scanlines clipped to polygons, linked into zig-zags.

Regions are stacked contours as in ``_contours`` (``xy``, ``start``, ``layer``), with
holes; the even-odd rule decides inside. Each kernel has a reference ``*_ref``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from labdevices.toolpath._kernel import kernel

__all__ = [
    "clip_lines",
    "clip_lines_ref",
    "infill_paths",
    "link_lines",
    "link_lines_ref",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@kernel("Tuple((i8[::1], i8[::1], f8[:, ::1]))(f8[:, ::1], i8[::1], i8[::1], f8[::1], f8, f8)")
def clip_lines(
    xy: F64, start: I64, layer: I64, angles: F64, spacing: float, min_len: float
) -> tuple[I64, I64, F64]:
    """Clip parallel lines to each layer's region (even-odd), all layers in one call.

    Layer k's lines run at ``angles[k]`` (radians), ``spacing`` apart, on a grid
    fixed to the origin so that layers of the same angle line up. Work happens in
    the frame rotated by ``-angles[k]``, where lines are rows ``v = (j + 1/2) *
    spacing``. Returns (layer_seg (L + 1,), row (S,): j of each segment, u (S, 2):
    its ends along the row, u0 < u1), sorted by row then u; pieces shorter than
    ``min_len`` are dropped.
    """
    n_layers = layer.shape[0] - 1
    # first pass: count crossings to size the buffers
    total = 0
    for k in range(n_layers):
        c = np.cos(angles[k])
        s = np.sin(angles[k])
        for i in range(layer[k], layer[k + 1]):
            a = start[i]
            b = start[i + 1]
            for p in range(a, b):
                q = p + 1 if p + 1 < b else a
                vp = -xy[p, 0] * s + xy[p, 1] * c
                vq = -xy[q, 0] * s + xy[q, 1] * c
                jp = int(np.ceil(vp / spacing - 0.5))
                jq = int(np.ceil(vq / spacing - 0.5))
                total += abs(jq - jp)
    rows = np.empty(total, np.int64)
    us = np.empty(total, np.float64)
    layer_seg = np.zeros(n_layers + 1, np.int64)
    seg_row = np.empty(total // 2 + 1, np.int64)
    seg_u = np.empty((total // 2 + 1, 2), np.float64)
    n_seg = 0
    for k in range(n_layers):
        c = np.cos(angles[k])
        s = np.sin(angles[k])
        n = 0
        for i in range(layer[k], layer[k + 1]):
            a = start[i]
            b = start[i + 1]
            for p in range(a, b):
                q = p + 1 if p + 1 < b else a
                up = xy[p, 0] * c + xy[p, 1] * s
                vp = -xy[p, 0] * s + xy[p, 1] * c
                uq = xy[q, 0] * c + xy[q, 1] * s
                vq = -xy[q, 0] * s + xy[q, 1] * c
                # rows j with v_j in [min(vp, vq), max(vp, vq)): each vertex counts once
                jp = int(np.ceil(vp / spacing - 0.5))
                jq = int(np.ceil(vq / spacing - 0.5))
                j0 = min(jp, jq)
                j1 = max(jp, jq)
                for j in range(j0, j1):
                    v = (j + 0.5) * spacing
                    rows[n] = j
                    us[n] = up + (v - vp) * (uq - up) / (vq - vp)
                    n += 1
        r = rows[:n]
        u = us[:n]
        order = np.argsort(u)
        order = order[np.argsort(r[order], kind="mergesort")]
        for m in range(0, n - 1, 2):
            i0 = order[m]
            i1 = order[m + 1]
            if u[i1] - u[i0] >= min_len:
                seg_row[n_seg] = r[i0]
                seg_u[n_seg, 0] = u[i0]
                seg_u[n_seg, 1] = u[i1]
                n_seg += 1
        layer_seg[k + 1] = n_seg
    return layer_seg, seg_row[:n_seg].copy(), seg_u[:n_seg].copy()


def clip_lines_ref(
    xy: F64, start: I64, layer: I64, angles: F64, spacing: float, min_len: float
) -> tuple[I64, I64, F64]:
    """Reference for ``clip_lines``: numpy crossings of every edge with each row."""
    layer_seg = [0]
    rows_out: list[int] = []
    u_out: list[tuple[float, float]] = []
    for k in range(len(layer) - 1):
        c, s = np.cos(angles[k]), np.sin(angles[k])
        p_list, q_list = [], []
        for i in range(layer[k], layer[k + 1]):
            ring = xy[start[i] : start[i + 1]]
            p_list.append(ring)
            q_list.append(np.roll(ring, -1, axis=0))
        if not p_list:
            layer_seg.append(len(rows_out))
            continue
        p = np.concatenate(p_list)
        q = np.concatenate(q_list)
        up, vp = p @ [c, s], p @ [-s, c]
        uq, vq = q @ [c, s], q @ [-s, c]
        jlo = int(np.floor(min(vp.min(), vq.min()) / spacing)) - 1
        jhi = int(np.ceil(max(vp.max(), vq.max()) / spacing)) + 1
        for j in range(jlo, jhi + 1):
            v = (j + 0.5) * spacing
            hit = (np.minimum(vp, vq) <= v) & (v < np.maximum(vp, vq))
            with np.errstate(divide="ignore", invalid="ignore"):
                ux = up + (v - vp) * (uq - up) / (vq - vp)
            x = np.sort(ux[hit])
            for m in range(0, len(x) - 1, 2):
                if x[m + 1] - x[m] >= min_len:
                    rows_out.append(j)
                    u_out.append((x[m], x[m + 1]))
        layer_seg.append(len(rows_out))
    return (
        np.array(layer_seg, np.int64),
        np.array(rows_out, np.int64),
        np.array(u_out, np.float64).reshape(-1, 2),
    )


@kernel("Tuple((f8[:, ::1], i8[::1], i8[::1]))(i8[::1], i8[::1], f8[:, ::1], f8[::1], f8, f8)")
def link_lines(
    layer_seg: I64, seg_row: I64, seg_u: F64, angles: F64, spacing: float, max_link: float
) -> tuple[F64, I64, I64]:
    """Link clipped lines of adjacent rows into zig-zag polylines, back in the xy frame.

    Segment a (row j) links to b (row j + 1) when they overlap along the row, each
    overlaps no other segment of the other row, and the hop between their ends is at
    most ``max_link`` long along the row: then the hop runs along the region's edge.
    Returns (xy (N, 2), path_start (P + 1,), layer_path (L + 1,)).
    """
    n_layers = layer_seg.shape[0] - 1
    n_seg = seg_row.shape[0]
    nxt = np.full(n_seg, -1, np.int64)
    has_prev = np.zeros(n_seg, np.bool_)
    down = np.zeros(n_seg, np.int64)
    up = np.zeros(n_seg, np.int64)
    cand = np.full(n_seg, -1, np.int64)
    for k in range(n_layers):
        a0 = layer_seg[k]
        a1 = layer_seg[k + 1]
        # two pointers over consecutive rows: segments are sorted by (row, u0)
        i = a0
        while i < a1:
            row = seg_row[i]
            i_end = i
            while i_end < a1 and seg_row[i_end] == row:
                i_end += 1
            j = i_end
            j_end = j
            while j_end < a1 and seg_row[j_end] == row + 1:
                j_end += 1
            if j < j_end:
                jj = j
                for a in range(i, i_end):
                    while jj < j_end and seg_u[jj, 1] < seg_u[a, 0]:
                        jj += 1
                    b = jj
                    while b < j_end and seg_u[b, 0] <= seg_u[a, 1]:
                        down[a] += 1
                        up[b] += 1
                        cand[a] = b
                        b += 1
            i = i_end
    for a in range(n_seg):
        b = cand[a]
        if down[a] == 1 and b >= 0 and up[b] == 1:
            nxt[a] = b
            has_prev[b] = True
    pts = np.empty((2 * n_seg, 2), np.float64)
    path_start = np.empty(n_seg + 1, np.int64)
    path_start[0] = 0
    layer_path = np.zeros(n_layers + 1, np.int64)
    n_pts = 0
    n_path = 0
    for k in range(n_layers):
        c = np.cos(angles[k])
        s = np.sin(angles[k])
        for a in range(layer_seg[k], layer_seg[k + 1]):
            if has_prev[a]:
                continue
            cur = a
            forward = True
            while cur >= 0:
                v = (seg_row[cur] + 0.5) * spacing
                for e in range(2):
                    u = seg_u[cur, e if forward else 1 - e]
                    pts[n_pts, 0] = u * c - v * s
                    pts[n_pts, 1] = u * s + v * c
                    n_pts += 1
                b = nxt[cur]
                if b >= 0:
                    end_u = seg_u[cur, 1 if forward else 0]
                    next_u = seg_u[b, 1 if forward else 0]
                    if abs(next_u - end_u) > max_link:
                        # b sorts after cur (next row), so the loop reaches it later
                        has_prev[b] = False
                        b = -1
                        nxt[cur] = -1
                if b >= 0:
                    forward = not forward
                else:
                    n_path += 1
                    path_start[n_path] = n_pts
                cur = b
        layer_path[k + 1] = n_path
    return pts[:n_pts].copy(), path_start[: n_path + 1].copy(), layer_path


def link_lines_ref(
    layer_seg: I64, seg_row: I64, seg_u: F64, angles: F64, spacing: float, max_link: float
) -> list[list[F64]]:
    """Reference for ``link_lines`` in plain Python: the polylines of each layer."""
    out: list[list[F64]] = []
    for k in range(len(layer_seg) - 1):
        segs = list(range(int(layer_seg[k]), int(layer_seg[k + 1])))
        overlaps: dict[int, list[int]] = {a: [] for a in segs}
        overlapped_by: dict[int, list[int]] = {a: [] for a in segs}
        for a in segs:
            for other in segs:
                if seg_row[other] == seg_row[a] + 1 and (
                    seg_u[other, 0] <= seg_u[a, 1] and seg_u[other, 1] >= seg_u[a, 0]
                ):
                    overlaps[a].append(other)
                    overlapped_by[other].append(a)
        link = {
            a: overlaps[a][0]
            for a in segs
            if len(overlaps[a]) == 1 and len(overlapped_by[overlaps[a][0]]) == 1
        }
        linked_to = set(link.values())
        c, s = np.cos(angles[k]), np.sin(angles[k])
        paths: list[tuple[int, F64]] = []
        pending = [a for a in segs if a not in linked_to]
        while pending:
            first = pending.pop(0)
            cur: int | None = first
            forward = True
            pts = []
            while cur is not None:
                v = (seg_row[cur] + 0.5) * spacing
                ends = seg_u[cur] if forward else seg_u[cur][::-1]
                pts += [(u * c - v * s, u * s + v * c) for u in ends]
                b: int | None = link.get(cur)
                if b is not None:
                    side = 1 if forward else 0
                    if abs(seg_u[b, side] - seg_u[cur, side]) > max_link:
                        pending.insert(0, b)
                        b = None
                forward = not forward
                cur = b
            paths.append((first, np.array(pts)))
        out.append([p for _, p in sorted(paths, key=lambda fp: fp[0])])
    return out


@kernel("Tuple((f8[:, ::1], i8[::1], i8[::1]))(f8[:, ::1], i8[::1], i8[::1], f8[::1], f8, f8, f8)")
def infill_paths(
    xy: F64,
    start: I64,
    layer: I64,
    angles: F64,
    spacing: float,
    min_len: float,
    max_link: float,
) -> tuple[F64, I64, I64]:
    """``clip_lines`` then ``link_lines`` in one numba entry point (one cache load)."""
    layer_seg, seg_row, seg_u = clip_lines(xy, start, layer, angles, spacing, min_len)
    return link_lines(layer_seg, seg_row, seg_u, angles, spacing, max_link)

"""Numba kernels that cut a triangle mesh into closed contours, one set per layer.

Each kernel works on flat arrays and has a plain-numpy (or plain-Python)
reference implementation beside it, named ``*_ref``, which the tests compare it to.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from labdevices.toolpath._kernel import kernel

__all__ = [
    "chain_segments",
    "chain_segments_ref",
    "edge_ids",
    "edge_ids_ref",
    "merge_vertices",
    "merge_vertices_ref",
    "slice_segments",
    "slice_segments_ref",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]

# --- vertex merging --------------------------------------------------------------------------
# STL repeats every vertex in each triangle; slicing needs shared vertices so that the
# crossing point of an edge is identified by the edge, not by a float comparison.


@kernel("u8(u8)")
def _mix(h: np.uint64) -> np.uint64:
    # splitmix64 finaliser: cheap, spreads the float bit patterns over the table
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


@kernel("u4(u4)")
def _unsigned_zero(bits: np.uint32) -> np.uint32:
    # -0.0 (sign bit only) is the same vertex as 0.0
    return np.uint32(0) if bits == np.uint32(0x80000000) else bits


@kernel("u8(u4[:, ::1], i8)")
def _corner_hash(bits: npt.NDArray[np.uint32], i: int) -> np.uint64:
    # of corner i's coordinate bits, -0.0 as 0.0
    a = np.uint64(_unsigned_zero(bits[i, 0]))
    b = np.uint64(_unsigned_zero(bits[i, 1]))
    c = np.uint64(_unsigned_zero(bits[i, 2]))
    return _mix(a ^ _mix(b ^ _mix(c)))


@kernel("Tuple((f8[:, ::1], i4[:, ::1]))(f4[:, :, ::1])")
def merge_vertices(corners: npt.NDArray[np.float32]) -> tuple[F64, I32]:
    """Merge bitwise-equal corners of (F, 3, 3) float32 triangles.

    Returns (vertices (V, 3) float64, faces (F, 3) int32); vertices are numbered
    in order of first appearance.
    """
    n_tri = corners.shape[0]
    n = n_tri * 3
    flat = corners.reshape(n, 3)  # a view: a copy would hold 12 bytes per corner more
    bits = flat.view(np.uint32)
    # a closed mesh has about one vertex per six corners: a table for a third of the corners
    # is at most half full; it doubles when it is (a triangle soup: every corner new)
    size = 16
    while size < n // 3:
        size *= 2
    mask = np.uint64(size - 1)
    # int32 slots and corners: half the memory, for meshes of up to 700 million triangles
    table = np.full(size, -1, np.int32)
    index = np.empty(n, np.int32)
    first = np.empty(n, np.int32)  # corner that introduced each vertex
    n_vert = 0
    for i in range(n):
        a = _unsigned_zero(bits[i, 0])
        b = _unsigned_zero(bits[i, 1])
        c = _unsigned_zero(bits[i, 2])
        h = _corner_hash(bits, i) & mask
        while True:
            slot = table[h]
            if slot < 0:
                table[h] = n_vert
                first[n_vert] = i
                index[i] = n_vert
                n_vert += 1
                if 2 * n_vert > size:
                    size *= 2
                    mask = np.uint64(size - 1)
                    table = np.full(size, -1, np.int32)
                    for v in range(n_vert):
                        hv = _corner_hash(bits, first[v]) & mask
                        while table[hv] >= 0:
                            hv = (hv + np.uint64(1)) & mask
                        table[hv] = v
                break
            j = first[slot]
            if (
                _unsigned_zero(bits[j, 0]) == a
                and _unsigned_zero(bits[j, 1]) == b
                and _unsigned_zero(bits[j, 2]) == c
            ):
                index[i] = slot
                break
            h = (h + np.uint64(1)) & mask
    verts = np.empty((n_vert, 3), np.float64)
    for v in range(n_vert):
        for k in range(3):
            verts[v, k] = flat[first[v], k] + 0.0  # -0.0 as 0.0
    return verts, index.reshape(n_tri, 3)


def merge_vertices_ref(corners: npt.NDArray[np.float32]) -> tuple[F64, I64]:
    """Reference for ``merge_vertices`` with ``np.unique``."""
    flat = corners.reshape(-1, 3) + np.float32(0.0)
    uniq, first, inverse = np.unique(flat, axis=0, return_index=True, return_inverse=True)
    # renumber in order of first appearance, as the kernel does
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    faces = rank[inverse.reshape(-1)].reshape(-1, 3).astype(np.int64)
    return uniq[order].astype(np.float64), faces


# --- edges -----------------------------------------------------------------------------------


@kernel("u8(i8, i8)")
def _edge_hash(a: int, b: int) -> np.uint64:
    return _mix(np.uint64(a) * np.uint64(0x9E3779B97F4A7C15) ^ np.uint64(b))


@kernel("Tuple((i4[:, ::1], i4[:, ::1], i4[::1]))(i4[:, ::1])")
def edge_ids(faces: I32) -> tuple[I32, I32, I32]:
    """Number the undirected edges of a triangle mesh.

    Returns (tri_edges (F, 3): edge of corner pair (0,1), (1,2), (2,0); edges (E, 2)
    with the lower vertex first; face_count (E,): how many triangles use each edge —
    2 everywhere on a closed manifold mesh).
    """
    n_tri = faces.shape[0]
    n = 3 * n_tri
    # a closed mesh has one edge per two corner pairs: a table for every corner pair is at
    # most half full; it doubles when it is (a triangle soup: every pair new)
    size = 16
    while size < n:
        size *= 2
    mask = np.uint64(size - 1)
    table = np.full(size, -1, np.int32)
    # room for every corner pair, about half of it used: the rest is never touched, never
    # resident, and the results are views of it rather than copies
    edges = np.empty((n, 2), np.int32)
    count = np.empty(n, np.int32)
    tri_edges = np.empty((n_tri, 3), np.int32)
    n_edge = 0
    for t in range(n_tri):
        for k in range(3):
            a = faces[t, k]
            b = faces[t, (k + 1) % 3]
            if a > b:
                a, b = b, a
            h = _edge_hash(a, b) & mask
            while True:
                slot = table[h]
                if slot < 0:
                    table[h] = n_edge
                    edges[n_edge, 0] = a
                    edges[n_edge, 1] = b
                    count[n_edge] = 1
                    tri_edges[t, k] = n_edge
                    n_edge += 1
                    if 2 * n_edge > size:
                        size *= 2
                        mask = np.uint64(size - 1)
                        table = np.full(size, -1, np.int32)
                        for e in range(n_edge):
                            he = _edge_hash(edges[e, 0], edges[e, 1]) & mask
                            while table[he] >= 0:
                                he = (he + np.uint64(1)) & mask
                            table[he] = e
                    break
                if edges[slot, 0] == a and edges[slot, 1] == b:
                    count[slot] += 1
                    tri_edges[t, k] = slot
                    break
                h = (h + np.uint64(1)) & mask
    return tri_edges, edges[:n_edge], count[:n_edge]


def edge_ids_ref(faces: I64) -> tuple[I64, I64, I64]:
    """Reference for ``edge_ids`` with ``np.unique``, edges numbered by first appearance."""
    a = faces
    b = np.roll(faces, -1, axis=1)
    pairs = np.stack([np.minimum(a, b), np.maximum(a, b)], axis=-1).reshape(-1, 2)
    uniq, first, inverse, count = np.unique(
        pairs, axis=0, return_index=True, return_inverse=True, return_counts=True
    )
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    tri_edges = rank[inverse.reshape(-1)].reshape(-1, 3).astype(np.int64)
    return tri_edges, uniq[order].astype(np.int64), count[order].astype(np.int64)


# --- triangle / plane intersection -----------------------------------------------------------
# A vertex exactly on a plane counts as above it (symbolic perturbation), so every crossing
# triangle has exactly two crossing edges and no segment degenerates topologically.


@kernel("i8(f8, f8, f8)")
def _first_level(z: float, z0: float, h: float) -> int:
    # smallest k with z0 + k*h > z, i.e. levels strictly above z
    k = int(np.floor((z - z0) / h)) + 1
    while k > 0 and z0 + (k - 1) * h > z:
        k -= 1
    while z0 + k * h <= z:
        k += 1
    return k


@kernel("Tuple((i8[::1], i4[:, ::1], f8[:, ::1]))(f8[:, ::1], i4[:, ::1], i4[:, ::1], f8, f8, i8)")
def slice_segments(
    verts: F64, faces: I32, tri_edges: I32, z0: float, h: float, n_layers: int
) -> tuple[I64, I32, F64]:
    """Cut every triangle with the planes z = z0 + k*h, k < n_layers, in one sweep.

    Returns (layer_start (n_layers + 1,): segments of layer k are
    ``layer_start[k]:layer_start[k + 1]``; seg_edge (S, 2): edge crossed at each end;
    seg_xy (S, 4): x0, y0, x1, y1).
    """
    n_tri = faces.shape[0]
    counts = np.zeros(n_layers + 1, np.int64)
    klo = np.empty(n_tri, np.int32)
    khi = np.empty(n_tri, np.int32)
    for t in range(n_tri):
        za = verts[faces[t, 0], 2]
        zb = verts[faces[t, 1], 2]
        zc = verts[faces[t, 2], 2]
        zmin = min(za, min(zb, zc))
        zmax = max(za, max(zb, zc))
        # planes p with zmin < p <= zmax: the lowest vertex strictly below, another at or above
        lo = _first_level(zmin, z0, h)
        hi = _first_level(zmax, z0, h)  # first level strictly above zmax
        lo = max(lo, 0)
        hi = min(hi, n_layers)
        klo[t] = lo
        khi[t] = hi
        for k in range(lo, hi):
            counts[k] += 1
    layer_start = np.zeros(n_layers + 1, np.int64)
    for k in range(n_layers):
        layer_start[k + 1] = layer_start[k] + counts[k]
    n_seg = layer_start[n_layers]
    seg_edge = np.empty((n_seg, 2), np.int32)
    seg_xy = np.empty((n_seg, 4), np.float64)
    fill = layer_start[:n_layers].copy()
    for t in range(n_tri):
        for k in range(klo[t], khi[t]):
            zp = z0 + k * h
            s = fill[k]
            fill[k] += 1
            m = 0
            for e in range(3):
                a = faces[t, e]
                b = faces[t, (e + 1) % 3]
                if a > b:
                    a, b = b, a
                above_a = verts[a, 2] >= zp
                above_b = verts[b, 2] >= zp
                if above_a != above_b:
                    za = verts[a, 2]
                    u = (zp - za) / (verts[b, 2] - za)
                    seg_edge[s, m] = tri_edges[t, e]
                    seg_xy[s, 2 * m] = verts[a, 0] + u * (verts[b, 0] - verts[a, 0])
                    seg_xy[s, 2 * m + 1] = verts[a, 1] + u * (verts[b, 1] - verts[a, 1])
                    m += 1
    return layer_start, seg_edge, seg_xy


def slice_segments_ref(
    verts: F64, faces: I32, tri_edges: I32, z0: float, h: float, n_layers: int
) -> tuple[I64, I32, F64]:
    """Reference for ``slice_segments``: one vectorised numpy pass per plane."""
    starts = [0]
    all_edges = []
    all_xy = []
    for k in range(n_layers):
        zp = z0 + k * h
        tz = verts[faces, 2]
        above = tz >= zp
        crossing = above.any(axis=1) & ~above.all(axis=1)
        f = faces[crossing]
        te = tri_edges[crossing]
        ea = f
        eb = np.roll(f, -1, axis=1)
        lo = np.minimum(ea, eb)
        hi = np.maximum(ea, eb)
        cross = (verts[lo, 2] >= zp) != (verts[hi, 2] >= zp)  # exactly two per row
        u = (zp - verts[lo, 2]) / np.where(cross, verts[hi, 2] - verts[lo, 2], 1.0)
        pts = verts[lo, :2] + u[..., None] * (verts[hi, :2] - verts[lo, :2])
        rows, cols = np.nonzero(cross)
        edges = te[rows, cols].reshape(-1, 2)
        xy = pts[rows, cols].reshape(-1, 4)
        all_edges.append(edges)
        all_xy.append(xy)
        starts.append(starts[-1] + len(edges))
    return (
        np.array(starts, np.int64),
        np.concatenate(all_edges).astype(np.int32) if all_edges else np.zeros((0, 2), np.int32),
        np.concatenate(all_xy) if all_xy else np.zeros((0, 4)),
    )


# --- chaining --------------------------------------------------------------------------------


@kernel("none(i8, i4[:, ::1], f8[:, ::1], i4[:, ::1])")
def _flip(s: int, seg_edge: I32, seg_xy: F64, inc: I32) -> None:
    # reverse segment s in place and keep the incidence records naming the right end
    tmp = seg_edge[s, 0]
    seg_edge[s, 0] = seg_edge[s, 1]
    seg_edge[s, 1] = tmp
    for q in range(2):
        tx = seg_xy[s, q]
        seg_xy[s, q] = seg_xy[s, 2 + q]
        seg_xy[s, 2 + q] = tx
    for q in range(2):
        ee = seg_edge[s, q]
        for r in range(2):
            if inc[ee, r] >= 0 and inc[ee, r] // 2 == s:
                inc[ee, r] = 2 * s + q


@kernel("i8(i8, i8, i4[:, ::1], i4[:, ::1])")
def _partner(s: int, end: int, seg_edge: I32, inc: I32) -> int:
    e = seg_edge[s, end]
    other = inc[e, 0]
    if other == 2 * s + end:
        other = inc[e, 1]
    return int(other)


@kernel(
    "Tuple((f8[:, ::1], i8[::1], i8[::1], b1[::1], b1[::1]))(i8[::1], i4[:, ::1], f8[:, ::1], i8)"
)
def chain_segments(
    layer_start: I64, seg_edge: I32, seg_xy: F64, n_edges: int
) -> tuple[F64, I64, I64, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Join each layer's segments into contours through their shared edge crossings.

    Linking is undirected (orientation is fixed afterwards by nesting), so flipped
    triangles do not break contours. ``seg_edge`` and ``seg_xy`` are reordered in
    place. Returns (xy (N, 2): points; chain_start (C + 1,); layer_chain (L + 1,):
    chains of layer k are ``layer_chain[k]:layer_chain[k + 1]``; closed (C,): the
    chain is a closed contour (an open one means a hole in the mesh); nonmanifold
    (L,): some edge crossing of the layer is shared by more than two segments).
    """
    n_layers = layer_start.shape[0] - 1
    n_seg = seg_edge.shape[0]
    # up to two segment ends per edge crossing, each stored as 2*segment + end
    inc = np.full((n_edges, 2), -1, np.int32)
    used = np.zeros(n_seg, np.bool_)
    xy = np.empty((2 * n_seg + 1, 2), np.float64)  # an open chain has one point more
    chain_start = np.empty(n_seg + 1, np.int64)
    chain_start[0] = 0
    closed_flag = np.zeros(n_seg, np.bool_)
    layer_chain = np.zeros(n_layers + 1, np.int64)
    nonmanifold = np.zeros(n_layers, np.bool_)
    n_pts = 0
    n_chain = 0
    for k in range(n_layers):
        s0 = layer_start[k]
        s1 = layer_start[k + 1]
        for s in range(s0, s1):
            for end in range(2):
                e = seg_edge[s, end]
                if inc[e, 0] < 0:
                    inc[e, 0] = 2 * s + end
                elif inc[e, 1] < 0:
                    inc[e, 1] = 2 * s + end
                else:
                    nonmanifold[k] = True
        # two passes: open chains first, from a free end, then the closed loops
        for sweep in range(2):
            for s in range(s0, s1):
                if used[s]:
                    continue
                if sweep == 0:
                    free0 = _partner(s, 0, seg_edge, inc) < 0
                    free1 = _partner(s, 1, seg_edge, inc) < 0
                    if not (free0 or free1):
                        continue
                    if not free0:
                        _flip(s, seg_edge, seg_xy, inc)
                begin = n_pts
                cur = s
                closed = False
                while True:
                    used[cur] = True
                    xy[n_pts, 0] = seg_xy[cur, 0]
                    xy[n_pts, 1] = seg_xy[cur, 1]
                    n_pts += 1
                    other = _partner(cur, 1, seg_edge, inc)
                    if other < 0:
                        break
                    nxt = other // 2
                    if nxt == s:
                        closed = True
                        break
                    if used[nxt]:
                        break
                    if other % 2 == 1:
                        _flip(nxt, seg_edge, seg_xy, inc)
                    cur = nxt
                if not closed:
                    # an open chain keeps its last end point too
                    xy[n_pts, 0] = seg_xy[cur, 2]
                    xy[n_pts, 1] = seg_xy[cur, 3]
                    n_pts += 1
                if closed and n_pts - begin < 3:
                    n_pts = begin  # a sliver with no area
                    continue
                closed_flag[n_chain] = closed
                n_chain += 1
                chain_start[n_chain] = n_pts
        layer_chain[k + 1] = n_chain
        for s in range(s0, s1):
            for end in range(2):
                e = seg_edge[s, end]
                inc[e, 0] = -1
                inc[e, 1] = -1
    return (
        xy[:n_pts].copy(),
        chain_start[: n_chain + 1].copy(),
        layer_chain,
        closed_flag[:n_chain].copy(),
        nonmanifold,
    )


def chain_segments_ref(
    layer_start: I64, seg_edge: I32, seg_xy: F64, n_edges: int
) -> list[list[F64]]:
    """Reference for ``chain_segments`` in plain Python: closed contours per layer.

    Contours are returned as point arrays; the kernel may start them at another
    point or run them the other way, so compare them as rings.
    """
    layers: list[list[F64]] = []
    for k in range(layer_start.shape[0] - 1):
        segs = range(int(layer_start[k]), int(layer_start[k + 1]))
        by_edge: dict[int, list[tuple[int, int]]] = {}
        for s in segs:
            for end in (0, 1):
                by_edge.setdefault(int(seg_edge[s, end]), []).append((s, end))
        seen: set[int] = set()
        contours: list[F64] = []
        for s in segs:
            if s in seen:
                continue
            pts = []
            cur, entry = s, 0
            closed = False
            while True:
                seen.add(cur)
                pts.append(seg_xy[cur, 2 * entry : 2 * entry + 2])
                exit_edge = int(seg_edge[cur, 1 - entry])
                nbrs = [x for x in by_edge[exit_edge] if x[0] != cur]
                if len(nbrs) != 1:
                    break
                nxt, nxt_end = nbrs[0]
                if nxt == s:
                    closed = True
                    break
                if nxt in seen:
                    break
                cur, entry = nxt, nxt_end
            if closed and len(pts) >= 3:
                contours.append(np.array(pts))
        layers.append(contours)
    return layers

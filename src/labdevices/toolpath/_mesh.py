"""Slice an STL mesh into layer paths: contours, perimeters by polygon offset, rectilinear infill.

Python here only orchestrates: the numba kernels of ``_slice``, ``_contours`` and
``_infill`` do the per-triangle and per-point work; convex contours apart from the rest are
offset by a kernel of ``_contours``, all others by pyclipper.
"""

from __future__ import annotations

import heapq
import math
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyclipper

from labdevices.errors import ConfigurationError
from labdevices.toolpath._contours import apart_contours, offset_convex
from labdevices.toolpath._infill import infill_paths
from labdevices.toolpath._order import order_layer, order_points, path_islands, reorder_points
from labdevices.toolpath._paths import ROLE_INFILL, ROLE_PERIMETER, LayerPaths
from labdevices.toolpath._slice import merge_vertices
from labdevices.toolpath._slice_pipeline import contours_from_faces, finish_contours

__all__ = [
    "MeshError",
    "MeshSlices",
    "load_stl",
    "mesh_contours",
    "slice_mesh",
    "slice_mesh_walls",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
MeshInput = str | Path | tuple[npt.ArrayLike, npt.ArrayLike] | Any

# Contour points closer than this to the simplified outline are dropped: far below
# a strand's width, yet it removes most points of finely tessellated curved meshes.
# Print jobs choose theirs (MeshObject.contour_resolution_mm).
RESOLUTION_MM = 0.002
# pyclipper works on integers: 1 unit = 10 nm
_SCALE = 1e5
# threads offsetting layers at once (at most one per core)
_THREADS = 4


class MeshError(ConfigurationError):
    """A mesh cannot be sliced: unreadable, open where it cannot be repaired, or non-manifold."""

    code = "mesh"


@dataclass
class MeshSlices:
    """Closed contours of every layer, oriented: outer boundaries CCW, holes CW.

    ``z``: (L,) slicing height of each layer in the mesh's frame; contour ``i`` is
    ``xy[start[i]:start[i + 1]]``; layer ``k`` holds contours ``layer[k]:layer[k + 1]``;
    ``area``: (C,) signed area of each contour in mm².
    """

    z: F64
    xy: F64
    start: I64
    layer: I64
    area: F64

    def layer_area(self) -> F64:
        """Net cross-section area of each layer (holes subtracted), mm²."""
        out = np.zeros(len(self.z))
        for k in range(len(self.z)):
            out[k] = self.area[self.layer[k] : self.layer[k + 1]].sum()
        return out


# triangles read from a binary STL at a time: the file is never in memory whole
_STL_CHUNK = 1 << 16
_STL_RECORD = np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])


def load_stl(path: str | Path) -> npt.NDArray[np.float32]:
    """Read a binary or ASCII STL file into (F, 3, 3) float32 triangle corners."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(84)
            if len(head) == 84:
                n = int(np.frombuffer(head, np.uint32, 1, 80)[0])
                if size == 84 + 50 * n:
                    return _check_corners(_read_binary_stl(fh, n, p), p)
            data = head + fh.read()
    except OSError as exc:
        raise MeshError(f"{p}: cannot read STL file: {exc.strerror}", file=str(p)) from exc
    if data.lstrip()[:5].lower() != b"solid":
        raise MeshError(
            f"{p}: not an STL file: neither binary (size does not match the triangle count) "
            "nor ASCII (does not start with 'solid')",
            file=str(p),
        )
    found = re.findall(rb"vertex\s+(\S+)\s+(\S+)\s+(\S+)", data)
    try:
        flat = np.array(found, dtype=np.float64).astype(np.float32)
    except ValueError as exc:
        raise MeshError(f"{p}: ASCII STL has a malformed vertex: {exc}", file=str(p)) from exc
    if len(flat) % 3:
        raise MeshError(
            f"{p}: ASCII STL has {len(flat)} vertices, not a multiple of 3", file=str(p)
        )
    return _check_corners(flat.reshape(-1, 3, 3), p)


def _read_binary_stl(fh: Any, n: int, p: Path) -> npt.NDArray[np.float32]:
    """The corners of a binary STL's ``n`` triangles, read a chunk at a time."""
    corners = np.empty((n, 3, 3), np.float32)
    for i in range(0, n, _STL_CHUNK):
        m = min(_STL_CHUNK, n - i)
        rec = np.fromfile(fh, _STL_RECORD, m)
        if len(rec) < m:
            raise MeshError(f"{p}: STL file ends early (it changed while read)", file=str(p))
        corners[i : i + m] = rec["v"]
    return corners


def _check_corners(corners: npt.NDArray[np.float32], p: Path) -> npt.NDArray[np.float32]:
    if len(corners) == 0:
        raise MeshError(f"{p}: STL file has no triangles", file=str(p))
    if not np.isfinite(corners).all():
        raise MeshError(f"{p}: STL file has non-finite coordinates", file=str(p))
    return corners


def _mesh_corners(mesh: MeshInput) -> tuple[npt.NDArray[np.float32], str]:
    if isinstance(mesh, str | Path):
        return load_stl(mesh), str(mesh)
    if isinstance(mesh, tuple):
        v = np.asarray(mesh[0], dtype=np.float64)
        f = np.asarray(mesh[1], dtype=np.int64)
    elif hasattr(mesh, "vertices") and hasattr(mesh, "faces"):  # trimesh.Trimesh and alike
        v = np.asarray(mesh.vertices, dtype=np.float64)
        f = np.asarray(mesh.faces, dtype=np.int64)
    else:
        raise MeshError(
            f"mesh must be an STL path, a (vertices, faces) pair or a trimesh, not {type(mesh).__name__}"
        )
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise MeshError("mesh: vertices must be (V, 3) and faces (F, 3) with F > 0")
    if f.min() < 0 or f.max() >= len(v):
        raise MeshError("mesh: faces index vertices that do not exist")
    # as in an STL file: corners are merged again by value, so repeated coordinates share edges
    return np.ascontiguousarray(v[f], dtype=np.float32), "mesh"


def mesh_contours(
    mesh: MeshInput,
    layer_height_mm: float,
    *,
    repair_gap_mm: float = 0.0,
    resolution_mm: float = RESOLUTION_MM,
) -> MeshSlices:
    """Slice ``mesh`` at mid-layer heights into oriented closed contours.

    Planes are at ``zmin + h/2 + k*h`` for every k below the top, as PrusaSlicer and
    CuraEngine slice. Open chains whose ends lie within ``repair_gap_mm`` of each
    other are closed with a straight segment; anything else that is open or
    non-manifold raises ``MeshError`` naming the file and the height. Points within
    ``resolution_mm`` of the simplified outline are dropped (0 keeps them all).
    """
    if not layer_height_mm > 0:
        raise MeshError(f"layer height must be positive, got {layer_height_mm}")
    corners, name = _mesh_corners(mesh)
    h = float(layer_height_mm)
    verts, faces = merge_vertices(corners)
    del corners  # 36 bytes a triangle, not needed any more while the mesh is sliced
    edges, count, z0, n_layers, xy, start, layer, closed, nonmanifold = contours_from_faces(
        verts, faces, h
    )
    del faces
    shared = count > 2
    if shared.any():
        e = int(np.flatnonzero(shared)[0])
        x, y, z_ = verts[edges[e, 0]]
        raise MeshError(
            f"{name}: non-manifold mesh: {int(shared.sum())} edges are shared by more than "
            f"two triangles (first at x={x:.3f} y={y:.3f} z={z_:.3f} mm)",
            file=name,
        )
    z = np.empty(n_layers)
    z[:] = z0 + h * np.arange(n_layers)
    if nonmanifold.any():
        k = int(np.flatnonzero(nonmanifold)[0])
        raise MeshError(
            f"{name}: non-manifold mesh: at z={z[k]:.3f} mm contours touch along an edge "
            "or cross themselves",
            file=name,
        )
    if not closed.all():
        n_open_edges = int(np.count_nonzero(count == 1))
        xy, start, layer = _repair(xy, start, layer, closed, z, repair_gap_mm, n_open_edges, name)
    xy, start, layer, area = finish_contours(xy, start, layer, float(resolution_mm))
    return MeshSlices(z, xy, start, layer, area)


def _repair(
    xy: F64,
    start: I64,
    layer: I64,
    closed: npt.NDArray[np.bool_],
    z: F64,
    gap: float,
    n_open_edges: int,
    name: str,
) -> tuple[F64, I64, I64]:
    """Close open chains end to end across gaps up to ``gap``, or raise ``MeshError``."""
    out_pts: list[F64] = []
    out_layer = [0]
    for k in range(len(layer) - 1):
        chains = [xy[start[i] : start[i + 1]] for i in range(layer[k], layer[k + 1])]
        flags = [bool(closed[i]) for i in range(layer[k], layer[k + 1])]
        done = [c for c, f in zip(chains, flags, strict=True) if f]
        open_ = [c for c, f in zip(chains, flags, strict=True) if not f]
        n_open_pts = sum(len(c) - 1 for c in open_)
        while open_:
            cur = open_.pop()
            while True:
                end = cur[-1]
                best, best_d, flip = -1, float(np.hypot(*(cur[0] - end))), False
                for j, c in enumerate(open_):
                    for rev, pt in ((False, c[0]), (True, c[-1])):
                        d = float(np.hypot(*(pt - end)))
                        if d < best_d:
                            best, best_d, flip = j, d, rev
                if best_d > gap:
                    raise MeshError(
                        f"{name}: open mesh: at z={z[k]:.3f} mm {n_open_pts} segments could not "
                        f"be closed into contours (gap of {best_d:.3f} mm > repair_gap_mm="
                        f"{gap}; the mesh has {n_open_edges} open edges)",
                        file=name,
                    )
                if best < 0:
                    done.append(cur[:-1] if best_d == 0.0 else cur)
                    break
                nxt = open_.pop(best)
                cur = np.vstack([cur, nxt[::-1] if flip else nxt])
        out_pts.extend(c for c in done if len(c) >= 3)
        out_layer.append(out_layer[-1] + sum(1 for c in done if len(c) >= 3))
    lengths = np.array([len(c) for c in out_pts], np.int64)
    new_start = np.zeros(len(out_pts) + 1, np.int64)
    np.cumsum(lengths, out=new_start[1:])
    pts = np.concatenate(out_pts) if out_pts else np.zeros((0, 2))
    return np.ascontiguousarray(pts), new_start, np.array(out_layer, np.int64)


def _groups(lo: F64, hi: F64) -> list[I64]:
    """Contours (by their bounding boxes ``lo``, ``hi``) in groups that offset inwards
    independently: split wherever a gap in x or in y separates bounding boxes.

    Offsetting inwards keeps every result inside its own contours, so nothing of one
    group can meet another (a hole's box lies inside its outline's: they stay together).
    """
    todo, groups = [np.arange(len(lo))], []
    while todo:
        idx = todo.pop()
        parts = _split_at_gap(idx, lo, hi)
        if parts:
            todo.extend(parts)
        else:
            groups.append(idx)
    return groups


def _split_at_gap(idx: I64, lo: F64, hi: F64) -> list[I64]:
    """``idx`` split at every gap in x that no bounding box crosses, else in y; [] if none."""
    if len(idx) > 1:
        for axis in (0, 1):
            order = idx[np.argsort(lo[idx, axis], kind="stable")]
            reach = np.maximum.accumulate(hi[order, axis])
            cut = np.flatnonzero(lo[order[1:], axis] > reach[:-1]) + 1
            if len(cut):
                return np.split(order, cut)
    return []


def _batches(groups: list[I64], lo: F64, hi: F64) -> list[I64]:
    """Groups batched for clipper: those whose y ranges do not overlap share a batch
    (clipper sweeps in y, so a batch costs what its groups would apart, in one call
    instead of one per island); few contours go in one batch."""
    if sum(len(g) for g in groups) < 8:
        return [np.sort(np.concatenate(groups))] if groups else []
    # interval partitioning on y: each group joins the batch that ended lowest, if below it
    y0 = np.array([lo[g, 1].min() for g in groups])
    y1 = np.array([hi[g, 1].max() for g in groups])
    batches: list[list[I64]] = []
    tops: list[tuple[float, int]] = []  # heap of (top of a batch, batch)
    for gi in np.argsort(y0, kind="stable"):
        if tops and tops[0][0] < y0[gi]:
            _, bi = heapq.heappop(tops)
            batches[bi].append(groups[gi])
        else:
            bi = len(batches)
            batches.append([groups[gi]])
        heapq.heappush(tops, (float(y1[gi]), bi))
    out = [np.sort(np.concatenate(bt)) for bt in batches]
    out.sort(key=lambda g: int(g[0]))
    return out


def _offsets(sl: MeshSlices, deltas: F64) -> list[list[list[I64]]]:
    """Every layer's contours offset by each of ``deltas`` (mm, negative inwards): per
    layer, per delta, the resulting polygons in clipper's integer units.

    Convex contours apart from all others (the islands of many parts, pillars, most
    round parts) are offset by a kernel in one call for the whole mesh; the rest by
    clipper, layer by layer, on every core (clipper lets go of the GIL).
    """
    n_layers, n_d = len(sl.z), len(deltas)
    pts = np.round(sl.xy * _SCALE).astype(np.int64)
    scaled = np.asarray(deltas, np.float64) * _SCALE
    # the kernel shrinks (outward offsets would need clipper's miter limit)
    inward = bool((scaled <= 0).all())
    which = (
        np.flatnonzero(apart_contours(pts, sl.start, sl.layer)) if inward else np.zeros(0, np.int64)
    )
    got, got_start, ok = offset_convex(pts, sl.start, which, scaled)
    fast, rows = which[ok], np.flatnonzero(ok)
    done = np.zeros(len(sl.start) - 1, np.bool_)
    done[fast] = True
    first_fast = np.searchsorted(fast, sl.layer)
    out: list[list[list[I64]]] = []
    for k in range(n_layers):
        per_delta: list[list[I64]] = [[] for _ in range(n_d)]
        for r in rows[first_fast[k] : first_fast[k + 1]]:
            for t in range(n_d):
                p, q = got_start[r * n_d + t], got_start[r * n_d + t + 1]
                if q > p:  # else nothing is left that far inside
                    per_delta[t].append(got[p:q])
        out.append(per_delta)

    def by_clipper(k: int) -> None:
        rest = np.arange(sl.layer[k], sl.layer[k + 1])
        rest = rest[~done[rest]]
        lo = np.array([pts[sl.start[i] : sl.start[i + 1]].min(0) for i in rest])
        hi = np.array([pts[sl.start[i] : sl.start[i + 1]].max(0) for i in rest])
        for batch in _batches(_groups(lo, hi), lo, hi):
            off = pyclipper.PyclipperOffset()
            off.AddPaths(
                [pts[sl.start[rest[i]] : sl.start[rest[i] + 1]] for i in batch],
                pyclipper.JT_MITER,
                pyclipper.ET_CLOSEDPOLYGON,
            )
            for t, d in enumerate(scaled):
                out[k][t].extend(np.asarray(p, np.int64) for p in off.Execute(d))

    todo = [k for k in range(n_layers) if not done[sl.layer[k] : sl.layer[k + 1]].all()]
    if len(todo) > 1:
        with ThreadPoolExecutor(min(os.cpu_count() or 1, _THREADS, len(todo))) as pool:
            list(pool.map(by_clipper, todo))  # in any order: each writes its own layer
    elif todo:
        by_clipper(todo[0])
    return out


def slice_mesh(
    mesh: MeshInput,
    layer_height_mm: float,
    line_width_mm: float,
    perimeters: int = 2,
    infill_spacing_mm: float | None = None,
    infill_angle_deg: float = 45.0,
    tool: int = 0,
    progress: Callable[[int, int], None] | None = None,
    *,
    repair_gap_mm: float | None = None,
    resolution_mm: float = RESOLUTION_MM,
) -> list[LayerPaths]:
    """Slice a mesh into layer paths: ``perimeters`` closed loops, then rectilinear infill.

    ``mesh``: an STL file (binary or ASCII), a (vertices, faces) pair or a trimesh.
    The mesh sits on the bed: its lowest point is z = 0 and ``LayerPaths.z`` is each
    layer's top. Perimeter loop i runs at ``(i + 1/2) * line_width_mm`` inside the
    outline (outermost first); infill fills the region inside the innermost loop with
    lines ``infill_spacing_mm`` apart (default 5 line widths: 20 %) at
    ``infill_angle_deg``, turned by 90° every other layer, linked into zig-zags.
    Open chains with gaps up to ``repair_gap_mm`` (default half a line width) are
    closed; larger gaps and non-manifold meshes raise ``MeshError``. Contour points
    within ``resolution_mm`` of the simplified outline are dropped.
    ``progress(done, total)`` is called after each layer.
    """
    layers, _ = slice_mesh_walls(
        mesh,
        layer_height_mm,
        line_width_mm,
        perimeters,
        infill_spacing_mm,
        infill_angle_deg,
        tool,
        progress,
        repair_gap_mm=repair_gap_mm,
        resolution_mm=resolution_mm,
    )
    return layers


def slice_mesh_walls(
    mesh: MeshInput,
    layer_height_mm: float,
    line_width_mm: float,
    perimeters: int = 2,
    infill_spacing_mm: float | None = None,
    infill_angle_deg: float = 45.0,
    tool: int = 0,
    progress: Callable[[int, int], None] | None = None,
    *,
    repair_gap_mm: float | None = None,
    resolution_mm: float = RESOLUTION_MM,
) -> tuple[list[LayerPaths], list[npt.NDArray[np.bool_]]]:
    """``slice_mesh``, also returning which paths of each layer are outer walls.

    The outer walls are the loops half a line width inside the outline; the
    benchmark measures the area they enclose. Each layer is printed island by
    island (a short tour between them), its walls nearest-first (so the walls of
    one hole follow each other), then its infill.
    """
    if not line_width_mm > 0:
        raise MeshError(f"line width must be positive, got {line_width_mm}")
    if perimeters < 0:
        raise MeshError(f"perimeters must be >= 0, got {perimeters}")
    spacing = 5.0 * line_width_mm if infill_spacing_mm is None else float(infill_spacing_mm)
    if not spacing >= 0.5 * line_width_mm:
        # closer lines only overlap, and a tiny spacing would ask for billions of them
        raise MeshError(
            f"infill spacing must be at least half the line width ({0.5 * line_width_mm:g} mm), "
            f"got {infill_spacing_mm}"
        )
    gap = 0.5 * line_width_mm if repair_gap_mm is None else float(repair_gap_mm)
    sl = mesh_contours(mesh, layer_height_mm, repair_gap_mm=gap, resolution_mm=resolution_mm)
    n_layers = len(sl.z)
    w = float(line_width_mm)
    # the walls' centre lines, then the edge of the region the infill fills
    deltas = np.array([-(i + 0.5) * w for i in range(perimeters)] + [-perimeters * w])

    perim: list[list[npt.NDArray[np.int64]]] = []
    perim_level: list[list[int]] = []
    region_parts: list[npt.NDArray[np.int64]] = []
    region_len: list[int] = []
    region_layer = [0]
    for *walls, inner in _offsets(sl, deltas):
        loops: list[npt.NDArray[np.int64]] = []
        levels: list[int] = []
        for i, got in enumerate(walls):
            loops.extend(got)
            levels.extend([i] * len(got))
        region_parts.extend(inner)
        region_len.extend(len(p) for p in inner)
        region_layer.append(region_layer[-1] + len(inner))
        perim.append(loops)
        perim_level.append(levels)

    lengths = np.array(region_len, np.int64)
    rstart = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=rstart[1:])
    rxy = (
        np.concatenate(region_parts).astype(np.float64) / _SCALE
        if region_parts
        else np.zeros((0, 2))
    )
    base = math.radians(infill_angle_deg)
    angles = np.empty(n_layers)
    angles[:] = base + (np.arange(n_layers) % 2) * (math.pi / 2)
    ipts, ipath, ilayer = infill_paths(
        rxy, rstart, np.array(region_layer, np.int64), angles, spacing, 0.5 * w, 2.0 * spacing
    )

    layers: list[LayerPaths] = []
    outer: list[npt.NDArray[np.bool_]] = []
    nozzle = (float(sl.xy[:, 0].min()), float(sl.xy[:, 1].min())) if len(sl.xy) else (0.0, 0.0)
    for k in range(n_layers):
        loops = perim[k]
        n_loop = len(loops)
        p0, p1 = int(ilayer[k]), int(ilayer[k + 1])
        n_inf = p1 - p0
        counts = np.empty(n_loop + n_inf, np.int64)
        counts[:n_loop] = [len(p) for p in loops]
        counts[n_loop:] = np.diff(ipath[p0 : p1 + 1])
        start = np.zeros(n_loop + n_inf + 1, np.int64)
        np.cumsum(counts, out=start[1:])
        inf_xy = ipts[ipath[p0] : ipath[p1]]
        loop_xy = np.concatenate(loops).astype(np.float64) / _SCALE if loops else np.zeros((0, 2))
        xy = np.ascontiguousarray(np.concatenate([loop_xy, inf_xy]))
        rank = np.full(n_loop + n_inf, perimeters, np.int64)
        rank[:n_loop] = perim_level[k]
        closed = np.zeros(n_loop + n_inf, np.bool_)
        closed[:n_loop] = True
        island = np.zeros(n_loop + n_inf, np.int32)
        if n_loop + n_inf:
            r0, r1 = int(region_layer[k]), int(region_layer[k + 1])
            xy, start, closed, rank, island, nozzle = _order_layer(
                xy,
                start,
                closed,
                rank,
                rxy[rstart[r0] : rstart[r1]],
                rstart[r0 : r1 + 1] - rstart[r0],
                nozzle,
            )
        role = np.where(rank < perimeters, ROLE_PERIMETER, ROLE_INFILL).astype(np.int8)
        layers.append(
            LayerPaths(
                z=(k + 1) * float(layer_height_mm),
                xy=xy,
                start=start,
                tool=np.full(n_loop + n_inf, tool, np.int32),
                role=role,
                closed=closed,
                island=island,
                outer=rank == 0 if perimeters else np.zeros(n_loop + n_inf, np.bool_),
            )
        )
        outer.append(rank == 0 if perimeters else np.zeros(n_loop + n_inf, np.bool_))
        if progress is not None:
            progress(k + 1, n_layers)
    return layers, outer


def _signed_areas(xy: F64, start: I64) -> F64:
    """Shoelace area of every closed polygon ``xy[start[i]:start[i + 1]]`` at once."""
    if len(start) < 2:
        return np.zeros(0)
    nxt = np.arange(1, len(xy) + 1)
    nxt[start[1:] - 1] = start[:-1]
    cross = xy[:, 0] * xy[nxt, 1] - xy[nxt, 0] * xy[:, 1]
    return 0.5 * np.add.reduceat(cross, start[:-1])


def _order_layer(
    xy: F64,
    start: I64,
    closed: npt.NDArray[np.bool_],
    rank: I64,
    region_xy: F64,
    region_start: I64,
    nozzle: tuple[float, float],
) -> tuple[F64, I64, npt.NDArray[np.bool_], I64, npt.NDArray[np.int32], tuple[float, float]]:
    """Islands in a short tour, then the walls and the infill of each, nearest first.

    Islands are the counter-clockwise outer walls (or, without walls, the infill
    regions); returns the reordered points, starts, closed flags, ranks, islands and
    the nozzle's last position.
    """
    n = len(start) - 1
    if (closed & (rank == 0)).any():
        cand = closed & (rank == 0)
        area = np.zeros(n)
        area[cand] = _signed_areas(xy, start)[cand]
        is_outline = cand & (area > 0)
        pxy, pstart = xy, start
    else:
        # no walls: the infill regions (not printed) stand for the islands
        ra = _signed_areas(region_xy, region_start)
        pxy = np.ascontiguousarray(np.concatenate([xy, region_xy]))
        pstart = np.concatenate([start, start[-1] + region_start[1:]])
        area = np.concatenate([np.zeros(n), ra])
        is_outline = np.concatenate([np.zeros(n, np.bool_), ra > 0])
    if not is_outline.any():
        island = np.zeros(n, np.int64)
        centres = np.zeros((1, 2))
    else:
        island = path_islands(pxy, pstart, is_outline, area)[:n]
        outl = np.flatnonzero(is_outline)
        lo = np.minimum.reduceat(pxy, pstart[:-1], axis=0)[outl]
        hi = np.maximum.reduceat(pxy, pstart[:-1], axis=0)[outl]
        centres = 0.5 * (lo + hi)
    tour = order_points(centres, nozzle[0], nozzle[1])
    # walls of any rank form one group, infill another: the walls round one hole follow each
    # other, instead of a tour round every hole for each rank
    group = (~closed).astype(np.int64)
    order, first, rev, x, y = order_layer(
        xy, start, closed, island, group, tour, nozzle[0], nozzle[1]
    )
    gather, new_start = reorder_points(start, order, first, rev)
    return (
        np.ascontiguousarray(xy[gather]),
        new_start,
        closed[order],
        rank[order],
        island[order].astype(np.int32),
        (float(x), float(y)),
    )

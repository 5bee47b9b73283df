"""The slicing kernels chained into two entry points: a mesh is sliced in three calls
from Python (``merge_vertices`` first, so that the triangle corners can go).

The kernels themselves, and their references, live in ``_slice`` and ``_contours``.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from labdevices.toolpath._contours import orient_contours, simplify_contours
from labdevices.toolpath._kernel import kernel
from labdevices.toolpath._slice import chain_segments, edge_ids, slice_segments

__all__ = ["contours_from_faces", "finish_contours"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
B = npt.NDArray[np.bool_]


@kernel(
    "Tuple((i4[:, ::1], i4[::1], f8, i8, f8[:, ::1], i8[::1], i8[::1], b1[::1], b1[::1]))(f8[:, ::1], i4[:, ::1], f8)"
)
def contours_from_faces(
    verts: F64, faces: I32, h: float
) -> tuple[I32, I32, float, int, F64, I64, I64, B, B]:
    """Number edges, cut at ``zmin + h/2 + k*h`` and chain, in one call (after
    ``merge_vertices``: the caller lets the triangle corners go first).

    Returns (edges, face count per edge, z of the first plane, number of layers, then
    ``chain_segments``' xy, start, layer, closed, nonmanifold).
    """
    # triangles that lost a corner in merging have no area and would fake extra edge uses
    keep = np.empty(faces.shape[0], np.bool_)
    for t in range(faces.shape[0]):
        a = faces[t, 0]
        b = faces[t, 1]
        c = faces[t, 2]
        keep[t] = a != b and b != c and c != a
    if not keep.all():
        faces = faces[keep]
    tri_edges, edges, count = edge_ids(faces)
    zmin = verts[:, 2].min()
    zmax = verts[:, 2].max()
    n_layers = max(0, math.ceil((zmax - zmin) / h - 0.5 - 1e-9))
    z0 = zmin + h / 2
    layer_start, seg_edge, seg_xy = slice_segments(verts, faces, tri_edges, z0, h, n_layers)
    xy, start, layer, closed, nonmanifold = chain_segments(
        layer_start, seg_edge, seg_xy, edges.shape[0]
    )
    return edges, count, z0, n_layers, xy, start, layer, closed, nonmanifold


@kernel("Tuple((f8[:, ::1], i8[::1], i8[::1], f8[::1]))(f8[:, ::1], i8[::1], i8[::1], f8)")
def finish_contours(
    xy: F64, start: I64, layer: I64, resolution: float
) -> tuple[F64, I64, I64, F64]:
    """Simplify (when ``resolution`` > 0) and orient by nesting: (xy, start, layer, area)."""
    if resolution > 0:
        xy, start, layer = simplify_contours(xy, start, layer, resolution)
    xy, _, area = orient_contours(xy, start, layer)
    return xy, start, layer, area

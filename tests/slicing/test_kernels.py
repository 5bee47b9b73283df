"""Each slicing kernel against its plain-numpy or plain-Python reference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from labdevices.toolpath import _contours, _infill, _slice


@pytest.fixture(scope="module")
def torus_mesh(shapes: Any) -> tuple[Any, Any, Any]:
    t = shapes["torus"](15.0, 5.0, 48, 24)
    corners = t.corners
    corners[::5] = corners[::5, ::-1]  # some flipped triangles for the chaining to untangle
    verts, faces = _slice.merge_vertices(corners)
    return corners, verts, faces


def test_merge_vertices(torus_mesh: Any) -> None:
    corners, verts, faces = torus_mesh
    ref_v, ref_f = _slice.merge_vertices_ref(corners)
    np.testing.assert_array_equal(verts, ref_v)
    np.testing.assert_array_equal(faces, ref_f)
    np.testing.assert_array_equal(verts[faces].astype(np.float32), corners)


def test_edge_ids(torus_mesh: Any) -> None:
    _, _, faces = torus_mesh
    got = _slice.edge_ids(faces)
    ref = _slice.edge_ids_ref(faces)
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_array_equal(a, b)
    assert (got[2] == 2).all()


def test_hash_tables_grow_for_a_triangle_soup() -> None:
    # every corner distinct and every edge its own: both tables fill and double, twice or more
    rng = np.random.default_rng(5)
    corners = rng.uniform(-10, 10, (5000, 3, 3)).astype(np.float32)
    verts, faces = _slice.merge_vertices(corners)
    ref_v, ref_f = _slice.merge_vertices_ref(corners)
    np.testing.assert_array_equal(verts, ref_v)
    np.testing.assert_array_equal(faces, ref_f)
    assert len(verts) == 15000
    got = _slice.edge_ids(faces)
    for a, b in zip(got, _slice.edge_ids_ref(faces), strict=True):
        np.testing.assert_array_equal(a, b)
    assert (got[2] == 1).all()


def _slice_all(verts: Any, faces: Any, z0: float, h: float, n: int) -> Any:
    tri_edges, edges, _ = _slice.edge_ids(faces)
    return tri_edges, edges, _slice.slice_segments(verts, faces, tri_edges, z0, h, n)


def test_slice_segments(torus_mesh: Any) -> None:
    _, verts, faces = torus_mesh
    tri_edges, _, got = _slice_all(verts, faces, -4.9, 0.35, 29)
    ref = _slice.slice_segments_ref(verts, faces, tri_edges, -4.9, 0.35, 29)
    np.testing.assert_array_equal(got[0], ref[0])

    # same segments per layer, in any order
    def key(edges: Any, xy: Any) -> Any:
        return sorted(
            zip(map(tuple, edges.tolist()), map(tuple, np.round(xy, 9).tolist()), strict=True)
        )

    for k in range(29):
        a, b = got[0][k], got[0][k + 1]
        assert key(got[1][a:b], got[2][a:b]) == key(ref[1][a:b], ref[2][a:b])


def test_vertex_on_a_plane_counts_as_above() -> None:
    # an octahedron whose equator lies exactly on the plane z = 0
    v = np.array([[1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], np.float64)
    f = np.array(
        [[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4], [1, 0, 5], [2, 1, 5], [3, 2, 5], [0, 3, 5]]
    )
    _, edges, (ls, se, sx) = _slice_all(v, f, 0.0, 1.0, 1)
    xy, start, layer, closed, nonmanifold = _slice.chain_segments(ls, se, sx, len(edges))
    assert closed.all()
    assert not nonmanifold.any()
    xy, start, layer = _contours.simplify_contours(xy, start, layer, 1e-9)
    _, _, area = _contours.orient_contours(xy, start, layer)
    np.testing.assert_allclose(area, [2.0])


def _ring_key(ring: Any) -> Any:
    # a contour as a ring: start point and direction do not matter
    return sorted(map(tuple, np.round(ring, 9).tolist()))


def test_chain_segments(torus_mesh: Any) -> None:
    _, verts, faces = torus_mesh
    _, edges, (ls, se, sx) = _slice_all(verts, faces, -4.9, 0.35, 29)
    ref = _slice.chain_segments_ref(ls, se, sx, len(edges))
    xy, start, layer, closed, nonmanifold = _slice.chain_segments(
        ls, se.copy(), sx.copy(), len(edges)
    )
    assert closed.all()
    assert not nonmanifold.any()
    for k in range(29):
        got = [_ring_key(xy[start[i] : start[i + 1]]) for i in range(layer[k], layer[k + 1])]
        assert sorted(got) == sorted(_ring_key(c) for c in ref[k])
        assert len(got) == 2


def test_chain_segments_reports_open_chains(torus_mesh: Any) -> None:
    _, verts, faces = torus_mesh
    _, edges, (ls, se, sx) = _slice_all(verts, faces[1:], -4.9, 0.35, 29)
    _, start, _, closed, _ = _slice.chain_segments(ls, se, sx, len(edges))
    assert not closed.all()
    # the open chain is kept whole: from one free end to the other
    i = int(np.flatnonzero(~closed)[0])
    assert start[i + 1] - start[i] > 10


@pytest.fixture(scope="module")
def contours() -> tuple[Any, Any, Any]:
    rng = np.random.default_rng(1)
    rings, layer = [], [0]
    for _ in range(4):
        n_here = 0
        for cx, cy, r, ccw in (
            (0, 0, 10, False),
            (0, 0, 6, True),
            (1, 1, 2, True),
            (20, 0, 3, False),
        ):
            t = np.sort(rng.uniform(0, 2 * np.pi, 80))
            rr = r * (1 + 0.02 * rng.standard_normal(80))
            ring = np.stack([cx + rr * np.cos(t), cy + rr * np.sin(t)], 1)
            rings.append(ring if ccw else ring[::-1])
            n_here += 1
        layer.append(layer[-1] + n_here)
    start = np.zeros(len(rings) + 1, np.int64)
    np.cumsum([len(r) for r in rings], out=start[1:])
    return np.concatenate(rings), start, np.array(layer, np.int64)


def test_signed_areas_and_orientation(contours: Any) -> None:
    xy, start, layer = contours
    np.testing.assert_allclose(
        _contours.signed_areas(xy, start), _contours.signed_areas_ref(xy, start)
    )
    got = _contours.orient_contours(xy, start, layer)
    ref = _contours.orient_contours_ref(xy, start, layer)
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_allclose(a, b)
    # outer, hole, island in the hole, separate part
    np.testing.assert_array_equal(got[1][:4], [0, 1, 2, 0])
    assert (np.sign(got[2][:4]) == [1, -1, 1, 1]).all()


def test_simplify_contours(contours: Any) -> None:
    xy, start, layer = contours
    for tol in (1e-3, 0.05, 0.5):
        got = _contours.simplify_contours(xy, start, layer, tol)
        ref = _contours.simplify_contours_ref(xy, start, layer, tol)
        for a, b in zip(got, ref, strict=True):
            np.testing.assert_array_equal(a, b)
    fine = _contours.simplify_contours(xy, start, layer, 1e-12)
    np.testing.assert_array_equal(fine[0], xy)


def test_clip_and_link_lines(contours: Any) -> None:
    xy, start, layer = contours
    xy, _, _ = _contours.orient_contours(xy, start, layer)
    angles = np.radians([0.0, 90.0, 45.0, 30.0])
    got = _infill.clip_lines(xy, start, layer, angles, 0.7, 0.1)
    ref = _infill.clip_lines_ref(xy, start, layer, angles, 0.7, 0.1)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_allclose(got[2], ref[2], rtol=1e-12, atol=1e-12)
    pts, path_start, layer_path = _infill.link_lines(*got, angles, 0.7, 1.4)
    ref_paths = _infill.link_lines_ref(*got, angles, 0.7, 1.4)
    for k in range(4):
        mine = [
            pts[path_start[i] : path_start[i + 1]] for i in range(layer_path[k], layer_path[k + 1])
        ]
        assert len(mine) == len(ref_paths[k])
        for a, b in zip(mine, ref_paths[k], strict=True):
            np.testing.assert_allclose(a, b, atol=1e-12)
        # linking makes fewer paths than lines
        assert len(mine) < got[0][k + 1] - got[0][k]

"""Slicing meshes: contour areas against exact and analytic cross-sections, STL input, bad meshes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from labdevices.errors import ConfigurationError
from labdevices.toolpath._mesh import MeshError, load_stl, mesh_contours, slice_mesh
from labdevices.toolpath._paths import ROLE_INFILL, ROLE_PERIMETER


def _check_areas(mesh: Any, analytic: Any, h: float = 0.2) -> None:
    sl = mesh_contours((mesh.vertices, mesh.faces), h, resolution_mm=0.0)
    zmin = mesh.vertices[:, 2].min()
    zmax = mesh.vertices[:, 2].max()
    assert len(sl.z) == round((zmax - zmin) / h)
    got = sl.layer_area()
    exact = np.array([mesh.exact_area(z) for z in sl.z])
    want = analytic(sl.z)
    # float32 storage of the vertices bounds the agreement with the exact tessellated area
    np.testing.assert_allclose(got, exact, rtol=1e-5)
    assert np.max(np.abs(got / want - 1)) < 0.005
    # simplified contours, as slice_mesh uses them, stay within the tolerance too
    simple = mesh_contours((mesh.vertices, mesh.faces), h).layer_area()
    assert np.max(np.abs(simple / want - 1)) < 0.005


def test_sphere_layer_areas_match_cross_section(small_sphere: Any) -> None:
    _check_areas(small_sphere, lambda z: np.pi * (100.0 - z**2))


def test_cylinder_layer_areas_match_cross_section(small_cylinder: Any) -> None:
    _check_areas(small_cylinder, lambda z: np.full_like(z, np.pi * 64.0))


def test_torus_layers_have_a_hole(small_torus: Any) -> None:
    _check_areas(small_torus, lambda z: 4 * np.pi * 15.0 * np.sqrt(25.0 - z**2))
    sl = mesh_contours((small_torus.vertices, small_torus.faces), 0.2)
    for k in range(len(sl.z)):
        areas = sl.area[sl.layer[k] : sl.layer[k + 1]]
        # one outer boundary (counter-clockwise) and one hole (clockwise) per layer
        assert len(areas) == 2
        assert (areas > 0).sum() == 1
        assert (areas < 0).sum() == 1


def test_binary_and_ascii_stl_slice_alike(small_torus: Any, tmp_path: Path) -> None:
    binary = small_torus.write_binary_stl(tmp_path / "t.stl")
    ascii_ = small_torus.write_ascii_stl(tmp_path / "t_ascii.stl")
    np.testing.assert_array_equal(load_stl(binary), load_stl(ascii_))
    a = mesh_contours(binary, 0.25).layer_area()
    b = mesh_contours(ascii_, 0.25).layer_area()
    c = mesh_contours((small_torus.vertices, small_torus.faces), 0.25).layer_area()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, c, rtol=1e-12)


def test_flipped_and_inside_out_triangles_still_slice(small_sphere: Any) -> None:
    faces = small_sphere.faces.copy()
    faces[::3] = faces[::3, ::-1]  # inconsistent orientation
    a = mesh_contours((small_sphere.vertices, faces), 0.5).layer_area()
    b = mesh_contours((small_sphere.vertices, small_sphere.faces[:, ::-1]), 0.5).layer_area()
    want = mesh_contours((small_sphere.vertices, small_sphere.faces), 0.5).layer_area()
    assert (want > 0).all()
    np.testing.assert_allclose(a, want, rtol=1e-12)
    np.testing.assert_allclose(b, want, rtol=1e-12)


def test_open_mesh_is_an_error_naming_file_and_height(shapes: Any, tmp_path: Path) -> None:
    cyl = shapes["cylinder"](8.0, 2.0, 64)
    side = np.flatnonzero(np.ptp(cyl.vertices[cyl.faces][:, :, 2], axis=1) > 0)
    cyl.faces = np.delete(cyl.faces, side[:1], axis=0)  # a hole ~0.8 mm wide in the side
    path = cyl.write_binary_stl(tmp_path / "holey.stl")
    with pytest.raises(MeshError, match=r"holey\.stl: open mesh: at z=0\.100 mm") as info:
        slice_mesh(path, 0.2, 0.4)
    assert isinstance(info.value, ConfigurationError)
    assert info.value.file == str(path)
    assert "2 open edges" not in str(info.value)  # it counts them
    assert "3 open edges" in str(info.value)


def test_tiny_gaps_are_repaired(shapes: Any) -> None:
    cyl = shapes["cylinder"](8.0, 2.0, 64)
    v = cyl.vertices.copy()
    # split the side along a seam: the faces after the seam get their own vertices, 1 µm off
    seam = np.flatnonzero((np.abs(v[:, 1]) < 1e-9) & (v[:, 0] > 0))
    extra = v[seam] + [0.0, 1e-3, 0.0]
    remap = {int(s): len(v) + i for i, s in enumerate(seam)}
    faces = cyl.faces.copy()
    centroid_y = v[faces][:, :, 1].mean(axis=1)
    for t in np.flatnonzero(centroid_y > 0):
        faces[t] = [remap.get(int(i), int(i)) for i in faces[t]]
    verts = np.vstack([v, extra])
    with pytest.raises(MeshError, match="could not be closed"):
        mesh_contours((verts, faces), 0.2, repair_gap_mm=1e-4)
    sl = mesh_contours((verts, faces), 0.2, repair_gap_mm=0.01)
    np.testing.assert_allclose(sl.layer_area(), cyl.exact_area(1.0), rtol=1e-4)
    layers = slice_mesh((verts, faces), 0.2, 0.4)  # default: half a line width
    assert len(layers) == 10


def test_non_manifold_mesh_is_an_error() -> None:
    # two tetrahedra sharing one edge: four triangles meet there
    v = np.array([[0, 0, 0], [0, 0, 2], [1, 0, 1], [0, 1, 1], [-1, 0, 1], [0, -1, 1]], np.float64)
    f = np.array(
        [[0, 1, 2], [0, 2, 3], [0, 3, 1], [1, 3, 2], [0, 4, 1], [0, 5, 4], [0, 1, 5], [1, 4, 5]]
    )
    with pytest.raises(MeshError, match="non-manifold mesh: 1 edges"):
        mesh_contours((v, f), 0.2)


def test_not_an_stl_file_names_it(tmp_path: Path) -> None:
    bad = tmp_path / "notes.stl"
    bad.write_text("hello")
    with pytest.raises(MeshError, match=r"notes\.stl: not an STL file"):
        load_stl(bad)
    with pytest.raises(MeshError, match=r"missing\.stl: cannot read"):
        slice_mesh(tmp_path / "missing.stl", 0.2, 0.4)


def test_layer_paths_have_perimeters_and_linked_infill(small_cylinder: Any) -> None:
    w, h, spacing = 0.4, 0.2, 2.0
    done: list[tuple[int, int]] = []
    layers = slice_mesh(
        (small_cylinder.vertices, small_cylinder.faces),
        h,
        w,
        perimeters=2,
        infill_spacing_mm=spacing,
        tool=1,
        progress=lambda k, n: done.append((k, n)),
    )
    assert len(layers) == 30
    assert done[-1] == (30, 30)
    assert [lp.z for lp in layers[:2]] == pytest.approx([0.2, 0.4])
    r = 8.0 * np.sqrt(np.sin(2 * np.pi / 256) * 256 / (2 * np.pi))  # equal-area radius
    for k, lp in enumerate(layers):
        assert (lp.tool == 1).all()
        per = np.flatnonzero(lp.role == ROLE_PERIMETER)
        inf = np.flatnonzero(lp.role == ROLE_INFILL)
        assert len(per) == 2
        assert lp.closed[per].all()
        assert not lp.closed[inf].any()
        lengths = sorted(
            float(np.sum(np.hypot(*np.diff(np.vstack([p, p[:1]]), axis=0).T)))
            for p in (lp.path(i) for i in per)
        )
        np.testing.assert_allclose(
            lengths, [2 * np.pi * (r - 1.5 * w), 2 * np.pi * (r - 0.5 * w)], rtol=2e-3
        )
        # the disc's infill is one zig-zag strand, inside the innermost perimeter
        assert len(inf) == 1
        pts = lp.path(int(inf[0]))
        assert np.hypot(pts[:, 0], pts[:, 1]).max() <= r - 2 * w + 1e-6
        d = np.diff(pts, axis=0)
        angle = np.degrees(np.arctan2(d[0, 1], d[0, 0])) % 180
        assert angle == pytest.approx(45.0 if k % 2 == 0 else 135.0)
        # lines spacing apart across the disc, joined by short hops along its edge
        area = np.pi * (r - 2 * w) ** 2
        seg = np.hypot(*d.T)
        assert float(np.sum(seg[0::2])) == pytest.approx(area / spacing, rel=0.05)
        assert seg[1::2].max() <= np.hypot(2 * spacing, spacing)


def test_a_binary_stl_is_read_in_chunks_whole_and_checked(tmp_path: Path) -> None:
    from labdevices.toolpath import _mesh

    rng = np.random.default_rng(3)
    n = 2 * _mesh._STL_CHUNK + 17  # three chunks, the last one short
    rec = np.zeros(n, _mesh._STL_RECORD)
    rec["v"] = rng.uniform(-50, 50, (n, 3, 3)).astype(np.float32)
    path = tmp_path / "big.stl"
    path.write_bytes(b"\0" * 80 + np.uint32(n).tobytes() + rec.tobytes())
    np.testing.assert_array_equal(load_stl(path), rec["v"])
    rec["v"][-1, 2, 1] = np.nan  # in the last chunk
    path.write_bytes(b"\0" * 80 + np.uint32(n).tobytes() + rec.tobytes())
    with pytest.raises(MeshError, match=r"big\.stl: STL file has non-finite coordinates"):
        load_stl(path)

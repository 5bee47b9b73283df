"""Procedural benchmark meshes, written as binary STL: a torus and a gyroid lattice block.

Heights are exact multiples of the layer height so that every slicer makes the same
number of layers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt


def write_binary_stl(path: Path, corners: npt.NDArray[np.float32]) -> Path:
    rec = np.zeros(len(corners), [("n", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    rec["v"] = corners
    e1 = corners[:, 1] - corners[:, 0]
    e2 = corners[:, 2] - corners[:, 0]
    n = np.cross(e1, e2)
    rec["n"] = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)
    with path.open("wb") as fh:
        fh.write(b"labdevices slicing benchmark".ljust(80, b" "))
        fh.write(np.uint32(len(corners)).tobytes())
        fh.write(rec.tobytes())
    return path


def torus(
    major: float = 20.0, minor: float = 8.0, n_major: int = 1000, n_minor: int = 100
) -> npt.NDArray[np.float32]:
    """2 * n_major * n_minor triangles; z from 0 to 2 * minor exactly (a ring at each pole)."""
    u = 2 * np.pi * np.arange(n_major) / n_major
    v = 2 * np.pi * np.arange(n_minor) / n_minor - np.pi / 2
    uu, vv = np.meshgrid(u, v, indexing="ij")
    rho = major + minor * np.cos(vv)
    pts = np.stack([rho * np.cos(uu), rho * np.sin(uu), minor + minor * np.sin(vv)], -1)
    i = np.arange(n_major)[:, None]
    j = np.arange(n_minor)[None, :]
    a = pts[i, j]
    b = pts[(i + 1) % n_major, j]
    c = pts[(i + 1) % n_major, (j + 1) % n_minor]
    d = pts[i, (j + 1) % n_minor]
    tris = np.concatenate(
        [np.stack([a, b, c], -2).reshape(-1, 3, 3), np.stack([a, c, d], -2).reshape(-1, 3, 3)]
    )
    return tris.astype(np.float32)


def gyroid_block(
    size: float = 40.0,
    height: float = 20.0,
    period: float = 10.0,
    thickness: float = 0.6,
    step: float = 0.19,
) -> npt.NDArray[np.float32]:
    """A block of solid gyroid network, closed at the block's faces, by marching cubes."""
    from skimage.measure import marching_cubes

    pad = 2 * step
    xs = np.arange(-pad, size + pad + step / 2, step)
    zs = np.arange(-pad, height + pad + step / 2, step)
    x, y, z = np.meshgrid(xs, xs, zs, indexing="ij")
    k = 2 * np.pi / period
    g = (
        np.sin(k * x) * np.cos(k * y)
        + np.sin(k * y) * np.cos(k * z)
        + np.sin(k * z) * np.cos(k * x)
    )
    inside_gyroid = g - thickness  # solid where g < thickness
    # box faces half a step off the grid nodes, so marching cubes never meets a zero there
    lo, hi, top = step / 2, size + step / 2, height + step / 2
    box = np.maximum.reduce([lo - x, x - hi, lo - y, y - hi, lo - z, z - top])  # negative inside
    field = np.maximum(inside_gyroid, box)
    verts, faces, _, _ = marching_cubes(field, 0.0, spacing=(step, step, step))
    verts -= pad
    tris = verts[faces]
    # outward normals: positive signed volume
    vol = np.einsum("ij,ij->i", tris[:, 0], np.cross(tris[:, 1], tris[:, 2])).sum()
    if vol < 0:
        tris = tris[:, ::-1]
    # stretch z so the height is exactly `height` (marching cubes stops a little short)
    zmin, zmax = tris[..., 2].min(), tris[..., 2].max()
    tris[..., 2] = (tris[..., 2] - zmin) * (height / (zmax - zmin))
    return tris.astype(np.float32)


def make(work: Path) -> dict[str, Path]:
    """Generate the benchmark meshes into ``work`` (reused when present)."""
    work.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, gen in (("torus_200k", torus), ("gyroid_1m", gyroid_block)):
        path = work / f"{name}.stl"
        if not path.exists():
            write_binary_stl(path, gen())
        out[name] = path
    return out


if __name__ == "__main__":
    import sys

    for name, p in make(
        Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/labdevices-bench-slicing")
    ).items():
        n = (p.stat().st_size - 84) // 50
        print(f"{name}: {p} ({n} triangles)")

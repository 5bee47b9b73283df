"""Procedural benchmark meshes, written as binary STL: a torus and a gyroid lattice block (numpy only).

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


# tetrahedron edges as corner pairs, and the 6 tetrahedra of a cube along its main diagonal
_TET_EDGES = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
_AXES = ((1, 0, 0), (0, 1, 0), (0, 0, 1))
_KUHN = [(a, b) for a in range(3) for b in range(3) if a != b]


def _tet_cases() -> list[list[tuple[int, int, int]]]:
    """For each of the 16 inside/outside patterns, triangles as triples of edge numbers."""
    edge_of = {frozenset(e): i for i, e in enumerate(_TET_EDGES)}
    cases: list[list[tuple[int, int, int]]] = []
    for code in range(16):
        ins = [c for c in range(4) if code >> c & 1]
        out = [c for c in range(4) if not code >> c & 1]
        if len(ins) in (1, 3):
            one, rest = (ins[0], out) if len(ins) == 1 else (out[0], ins)
            cases.append([tuple(edge_of[frozenset((one, r))] for r in rest)])  # type: ignore[misc]
        elif len(ins) == 2:
            (a, b), (c, d) = ins, out
            ac, ad, bd, bc = (edge_of[frozenset(p)] for p in ((a, c), (a, d), (b, d), (b, c)))
            cases.append([(ac, ad, bd), (ac, bd, bc)])
        else:
            cases.append([])
    return cases


def gyroid_block(
    size: float = 40.0,
    height: float = 20.0,
    period: float = 10.0,
    thickness: float = 0.6,
    step: float = 0.33,
) -> npt.NDArray[np.float32]:
    """A block of solid gyroid network, closed at the block's faces, by marching tetrahedra.

    Marching tetrahedra (6 per grid cube, split along the same diagonal) gives a
    closed manifold surface as long as no grid value is exactly zero.
    """
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
    # box faces half a step off the grid nodes, so no grid value is zero there
    lo, hi, top = step / 2, size + step / 2, height + step / 2
    box = np.maximum.reduce([lo - x, x - hi, lo - y, y - hi, lo - z, z - top])  # negative inside
    field = np.maximum(g - thickness, box)  # solid where negative
    _, ny, nz = field.shape
    node = np.arange(field.size).reshape(field.shape)
    pts = np.stack([x, y, z], -1).reshape(-1, 3)
    f = field.reshape(-1)
    base = node[:-1, :-1, :-1].reshape(-1)
    stride = np.array([ny * nz, nz, 1])
    cases = _tet_cases()
    out = []
    for a, b in _KUHN:
        c = 3 - a - b
        offs = [0, stride[a], stride[a] + stride[b], stride[a] + stride[b] + stride[c]]
        corners = base[:, None] + np.array(offs)[None, :]  # (cubes, 4) node ids
        code = ((f[corners] < 0) * (1 << np.arange(4))).sum(axis=1)
        for cs in range(1, 15):
            sel = corners[code == cs]
            if len(sel) == 0:
                continue
            for tri in cases[cs]:
                verts = []
                for e in tri:
                    i, j = _TET_EDGES[e]
                    na = np.minimum(
                        sel[:, i], sel[:, j]
                    )  # canonical order: same point in every tet
                    nb = np.maximum(sel[:, i], sel[:, j])
                    t = f[na] / (f[na] - f[nb])
                    verts.append(pts[na] + t[:, None] * (pts[nb] - pts[na]))
                tris = np.stack(verts, 1)
                # normals point from inside to outside
                n = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
                inside = pts[sel[np.arange(len(sel)), int(np.log2(cs & -cs))]]
                flip = np.einsum("ij,ij->i", n, tris[:, 0] - inside) < 0
                tris[flip] = tris[flip][:, ::-1]
                out.append(tris)
    tris = np.concatenate(out)
    # stretch z so the height is exactly `height` (the surface stops a little short of the box)
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

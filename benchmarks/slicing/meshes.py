"""The benchmark corpus: procedural meshes of different character, written as binary STL (numpy only).

Many islands, thin walls, holes, tall and thin, high triangle counts, branching
tubes, an organic blob, a lattice. Generated, so under the project's licence.
Heights are exact multiples of the layer height so that every slicer makes the
same number of layers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

F = npt.NDArray[np.float64]


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


def marching_tets(
    field_fn: Callable[[F, F, F], F],
    lo: tuple[float, float, float],
    hi: tuple[float, float, float],
    step: float,
    height: float | None = None,
) -> npt.NDArray[np.float32]:
    """The surface field = 0 (solid where negative) over the box lo…hi, by marching tetrahedra.

    Marching tetrahedra (6 per grid cube, split along the same diagonal) gives a
    closed manifold surface as long as no grid value is exactly zero. ``height``
    stretches z so that the part is exactly that tall, from z = 0.
    """
    xs = np.arange(lo[0], hi[0] + step / 2, step)
    ys = np.arange(lo[1], hi[1] + step / 2, step)
    zs = np.arange(lo[2], hi[2] + step / 2, step)
    x, y, z = np.meshgrid(xs, ys, zs, indexing="ij")
    field = field_fn(x, y, z)
    field[field == 0] = 1e-9
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
                    # canonical order: the same point in every tetrahedron
                    na = np.minimum(sel[:, i], sel[:, j])
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
    zmin, zmax = tris[..., 2].min(), tris[..., 2].max()
    if height is not None:
        tris[..., 2] = (tris[..., 2] - zmin) * (height / (zmax - zmin))
    else:
        tris[..., 2] -= zmin
    return tris.astype(np.float32)


def gyroid_block(
    size: float = 40.0,
    height: float = 20.0,
    period: float = 10.0,
    thickness: float = 0.6,
    step: float = 0.33,
) -> npt.NDArray[np.float32]:
    """A block of solid gyroid network, closed at the block's faces (1.06M triangles)."""
    k = 2 * np.pi / period
    # box faces half a step off the grid nodes, so no grid value is zero there
    blo, bhi, top = step / 2, size + step / 2, height + step / 2

    def field(x: F, y: F, z: F) -> F:
        g = (
            np.sin(k * x) * np.cos(k * y)
            + np.sin(k * y) * np.cos(k * z)
            + np.sin(k * z) * np.cos(k * x)
        )
        box = np.maximum.reduce([blo - x, x - bhi, blo - y, y - bhi, blo - z, z - top])
        return np.maximum(g - thickness, box)

    pad = 2 * step
    return marching_tets(
        field, (-pad, -pad, -pad), (size + pad, size + pad, height + pad), step, height
    )


def uv_sphere(
    radius: float, n_lat: int, n_lon: int, centre: tuple[float, float, float] = (0, 0, 0)
) -> npt.NDArray[np.float32]:
    """A sphere of 2·n_lon·(n_lat − 1) triangles (fans at the poles), z from centre − r to centre + r."""
    th = np.pi * np.arange(n_lat + 1) / n_lat  # 0 at the north pole
    ph = 2 * np.pi * np.arange(n_lon) / n_lon
    tt, pp = np.meshgrid(th, ph, indexing="ij")
    pts = np.stack([np.sin(tt) * np.cos(pp), np.sin(tt) * np.sin(pp), np.cos(tt)], -1) * radius
    pts += np.asarray(centre)
    i = np.arange(n_lat)[:, None]
    j = np.arange(n_lon)[None, :]
    a, b = pts[i, j], pts[i + 1, j]
    c, d = pts[i + 1, (j + 1) % n_lon], pts[i, (j + 1) % n_lon]
    upper = np.stack([a, b, c], -2)[:-1].reshape(-1, 3, 3)  # last row: b = c, the south pole
    lower = np.stack([a, c, d], -2)[1:].reshape(-1, 3, 3)  # row 0: a = d, the north pole
    return np.concatenate([upper, lower]).astype(np.float32)


def sphere_330k() -> npt.NDArray[np.float32]:
    """A 30 mm sphere of 330k triangles: high triangle count, one island."""
    return uv_sphere(15.0, 288, 576, (0.0, 0.0, 15.0))


def islands_400() -> npt.NDArray[np.float32]:
    """400 spheres of 2 mm in a 20 x 20 grid, 2.5 mm apart: many small islands."""
    one = uv_sphere(1.0, 12, 24, (0.0, 0.0, 1.0))
    g = 2.5 * (np.arange(20) - 9.5)
    shifts = np.array([(x, y, 0.0) for x in g for y in g], np.float32)
    return (one[None] + shifts[:, None, None, :]).reshape(-1, 3, 3)


def _prism(outline: F, height: float, hole: F | None = None) -> npt.NDArray[np.float32]:
    """Extrude a CCW outline (n, 2) to ``height``; ``hole``: an inner CW ring with the same n."""
    n = len(outline)
    lo3 = np.column_stack([outline, np.zeros(n)])
    hi3 = np.column_stack([outline, np.full(n, height)])
    j = (np.arange(n) + 1) % n
    tris = [np.stack([lo3, lo3[j], hi3[j]], 1), np.stack([lo3, hi3[j], hi3], 1)]
    if hole is None:
        c_lo, c_hi = np.r_[outline.mean(0), 0.0], np.r_[outline.mean(0), height]
        tris += [np.stack([np.broadcast_to(c_lo, lo3.shape), lo3[j], lo3], 1)]
        tris += [np.stack([np.broadcast_to(c_hi, hi3.shape), hi3, hi3[j]], 1)]
    else:
        ilo = np.column_stack([hole, np.zeros(n)])
        ihi = np.column_stack([hole, np.full(n, height)])
        tris += [np.stack([ilo, ihi[j], ilo[j]], 1), np.stack([ilo, ihi, ihi[j]], 1)]
        # rings joining outline i to hole (reversed order: same angle)
        tris += [np.stack([lo3, ilo, lo3[j]], 1), np.stack([lo3[j], ilo, ilo[j]], 1)]
        tris += [np.stack([hi3, hi3[j], ihi], 1), np.stack([hi3[j], ihi[j], ihi], 1)]
    return np.concatenate(tris).astype(np.float32)


def _circle(r: float, n: int) -> F:
    a = 2 * np.pi * np.arange(n) / n
    return np.column_stack([r * np.cos(a), r * np.sin(a)])


def thin_walls() -> npt.NDArray[np.float32]:
    """Five concentric tubes, walls 1.0 to 1.6 mm thick, 15 mm tall: thin walls."""
    parts = []
    for k in range(5):
        r_out = 6.0 + 4.0 * k
        wall = 1.0 + 0.15 * k
        n = 256 + 64 * k
        parts.append(_prism(_circle(r_out, n), 15.0, _circle(r_out - wall, n)))
    return np.concatenate(parts)


def tall_pillars() -> npt.NDArray[np.float32]:
    """Four twisted square pillars, 3 mm across and 60 mm tall: tall and thin."""
    parts = []
    for cx, cy in ((-6, -6), (6, -6), (-6, 6), (6, 6)):
        n_z = 240
        z = np.linspace(0, 60.0, n_z + 1)
        ang = np.radians(90.0) * z / 60.0
        sq = 1.5 * np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], float)
        ring = np.stack(
            [
                np.column_stack(
                    [
                        np.cos(a) * sq[:, 0] - np.sin(a) * sq[:, 1] + cx,
                        np.sin(a) * sq[:, 0] + np.cos(a) * sq[:, 1] + cy,
                        np.full(4, zz),
                    ]
                )
                for a, zz in zip(ang, z, strict=True)
            ]
        )
        j = (np.arange(4) + 1) % 4
        lo, hi = ring[:-1], ring[1:]
        side = np.concatenate(
            [np.stack([lo, lo[:, j], hi[:, j]], 2), np.stack([lo, hi[:, j], hi], 2)], 1
        ).reshape(-1, 3, 3)
        b, t = ring[0], ring[-1]
        caps = np.array(
            [[b[0], b[2], b[1]], [b[0], b[3], b[2]], [t[0], t[1], t[2]], [t[0], t[2], t[3]]]
        )
        parts.append(np.concatenate([side, caps]))
    return np.concatenate(parts).astype(np.float32)


def perforated_plate() -> npt.NDArray[np.float32]:
    """A 40 x 40 x 3 mm plate with 144 round holes of 1.6 mm (marching tetrahedra): holes."""
    step = 0.2
    g = 40.0 / 12 * (np.arange(12) - 5.5)

    def field(x: F, y: F, z: F) -> F:
        box = np.maximum.reduce([-20 - x, x - 20, -20 - y, y - 20, -z, z - 3.0])
        # distance to the nearest hole axis of the grid
        hx = x - g[np.clip(np.rint((x - g[0]) / (g[1] - g[0])).astype(int), 0, 11)]
        hy = y - g[np.clip(np.rint((y - g[0]) / (g[1] - g[0])).astype(int), 0, 11)]
        return np.maximum(box, 0.8 - np.hypot(hx, hy))

    return marching_tets(field, (-20.3, -20.3, -0.3), (20.3, 20.3, 3.3), step, 3.0)


def _capsule_distance(x: F, y: F, z: F, a: tuple[float, ...], b: tuple[float, ...]) -> F:
    pa = np.stack([x - a[0], y - a[1], z - a[2]], -1)
    ba = np.array(b) - np.array(a)
    t = np.clip(pa @ ba / (ba @ ba), 0, 1)
    return np.linalg.norm(pa - t[..., None] * ba, axis=-1)


def vessel_tree() -> npt.NDArray[np.float32]:
    """A hollow branching vessel: a trunk splitting twice, walls 0.9 mm, 24 mm tall: branching tubes."""
    segs = [
        ((0, 0, -2), (0, 0, 8), 2.4),
        ((0, 0, 8), (7, 0, 16), 1.9),
        ((0, 0, 8), (-6, 3, 16), 1.9),
        ((7, 0, 16), (11, 4, 26), 1.5),
        ((7, 0, 16), (10, -5, 26), 1.5),
        ((-6, 3, 16), (-9, 7, 26), 1.5),
        ((-6, 3, 16), (-10, -2, 26), 1.5),
    ]
    wall = 0.9

    def field(x: F, y: F, z: F) -> F:
        d = np.full(x.shape, np.inf)
        for a, b, r in segs:
            d = np.minimum(d, _capsule_distance(x, y, z, a, b) - r)
        shell = np.abs(d + wall / 2) - wall / 2  # the tube wall, open inside
        return np.maximum(shell, np.maximum(-z, z - 24.0))  # cut flat at the bottom and top

    return marching_tets(field, (-14.1, -10.1, -0.35), (15.1, 12.1, 24.35), 0.18, 24.0)


def organic_blob() -> npt.NDArray[np.float32]:
    """A lumpy organic shape from 40 random metaballs (a stand-in for a scanned organ): organic."""
    rng = np.random.default_rng(7)
    centres = rng.normal(0, 1, (40, 3)) * (8.0, 6.0, 5.0) + (0, 0, 10.0)
    radii = rng.uniform(2.5, 5.0, 40)

    def field(x: F, y: F, z: F) -> F:
        s = np.zeros(x.shape)
        for c, r in zip(centres, radii, strict=True):
            s += np.exp(-(((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) / r**2))
        s += 0.05 * np.sin(2.1 * x) * np.sin(1.7 * y) * np.sin(2.3 * z)  # scan-like ripples
        return np.maximum(0.5 - s, -z + 0.01)

    return marching_tets(field, (-30.1, -25.1, 0.0), (30.1, 25.1, 30.0), 0.25, 20.0)


CORPUS: dict[str, Callable[[], npt.NDArray[np.float32]]] = {
    "torus_200k": torus,
    "sphere_330k": sphere_330k,
    "islands_400": islands_400,
    "thin_walls": thin_walls,
    "tall_pillars": tall_pillars,
    "perforated_plate": perforated_plate,
    "vessel_tree": vessel_tree,
    "organic_blob": organic_blob,
    "gyroid_1m": gyroid_block,
}


def make(work: Path) -> dict[str, Path]:
    """Generate the benchmark meshes into ``work`` (reused when present)."""
    work.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, gen in CORPUS.items():
        path = work / f"{name}.stl"
        if not path.exists():
            tris = gen()
            # centred on the origin in XY: every slicer then centres it on its bed alike
            lo, hi = tris.reshape(-1, 3).min(axis=0), tris.reshape(-1, 3).max(axis=0)
            tris[..., :2] -= 0.5 * (lo[:2] + hi[:2])
            write_binary_stl(path, tris)
        out[name] = path
    return out


if __name__ == "__main__":
    import sys

    for name, p in make(
        Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/labdevices-bench-slicing")
    ).items():
        n = (p.stat().st_size - 84) // 50
        print(f"{name}: {p} ({n} triangles)")

"""Procedural meshes for the slicing tests: solids of revolution with known cross-sections."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


class Revolved:
    """A closed mesh made by turning a (rho, z) profile around the z axis in ``n`` steps.

    Every quad between two profile rings is a planar trapezoid, so a cross-section
    between rings is exactly a set of regular n-gons: ``exact_area`` is the true
    area of the tessellated solid, not an approximation.
    """

    def __init__(self, profile: F64, n: int, closed: bool) -> None:
        self.profile = profile
        self.n = n
        self.closed = closed
        verts: list[F64] = []
        index: list[I64] = []
        phi = 2 * np.pi * np.arange(n) / n
        for rho, z in profile:
            base = sum(len(v) for v in verts)
            if rho == 0.0:
                verts.append(np.array([[0.0, 0.0, z]]))
                index.append(np.full(n, base))
            else:
                verts.append(np.stack([rho * np.cos(phi), rho * np.sin(phi), np.full(n, z)], 1))
                index.append(base + np.arange(n))
        faces = []
        m = len(profile)
        for j in range(m if closed else m - 1):
            a, b = index[j], index[(j + 1) % m]
            a1, b1 = np.roll(a, -1), np.roll(b, -1)
            for tri in (np.stack([a, a1, b1], 1), np.stack([a, b1, b], 1)):
                keep = (
                    (tri[:, 0] != tri[:, 1]) & (tri[:, 1] != tri[:, 2]) & (tri[:, 0] != tri[:, 2])
                )
                faces.append(tri[keep])
        self.vertices = np.concatenate(verts)
        f = np.concatenate(faces).astype(np.int64)
        # orient outwards: positive signed volume
        v = self.vertices[f]
        if np.einsum("ij,ij->i", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum() < 0:
            f = f[:, ::-1].copy()
        self.faces = f

    @property
    def corners(self) -> npt.NDArray[np.float32]:
        return self.vertices[self.faces].astype(np.float32)

    def exact_area(self, z: float) -> float:
        """Cross-section area of the tessellated solid at height z."""
        p = self.profile
        q = np.roll(p, -1, axis=0) if self.closed else p[1:]
        p = p if self.closed else p[:-1]
        total = 0.0
        for (r0, z0), (r1, z1) in zip(p, q, strict=True):
            if min(z0, z1) <= z < max(z0, z1):
                rho = r0 + (z - z0) / (z1 - z0) * (r1 - r0)
                total += np.sign(z1 - z0) * rho * rho
        return abs(total) * self.n / 2 * np.sin(2 * np.pi / self.n)

    def write_binary_stl(self, path: Path) -> Path:
        c = self.corners
        rec = np.zeros(len(c), [("n", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
        rec["v"] = c
        with path.open("wb") as fh:
            fh.write(b"binary stl written by the labdevices tests".ljust(80, b" "))
            fh.write(np.uint32(len(c)).tobytes())
            fh.write(rec.tobytes())
        return path

    def write_ascii_stl(self, path: Path) -> Path:
        lines = ["solid test"]
        for tri in self.corners:
            lines.append("  facet normal 0 0 0\n    outer loop")
            lines.extend(f"      vertex {x!r} {y!r} {z!r}" for x, y, z in tri.tolist())
            lines.append("    endloop\n  endfacet")
        lines.append("endsolid test")
        path.write_text("\n".join(lines))
        return path


def sphere(r: float, n: int, rings: int) -> Revolved:
    theta = np.linspace(0, np.pi, rings + 1)
    prof = np.stack([r * np.sin(theta), -r * np.cos(theta)], 1)
    prof[0, 0] = prof[-1, 0] = 0.0
    return Revolved(prof, n, closed=False)


def cylinder(r: float, height: float, n: int) -> Revolved:
    prof = np.array([[0.0, 0.0], [r, 0.0], [r, height], [0.0, height]])
    return Revolved(prof, n, closed=False)


def torus(major: float, minor: float, n: int, rings: int) -> Revolved:
    v = 2 * np.pi * np.arange(rings) / rings - np.pi / 2
    prof = np.stack([major + minor * np.cos(v), minor * np.sin(v)], 1)
    return Revolved(prof, n, closed=True)


@pytest.fixture(scope="session")
def small_sphere() -> Revolved:
    return sphere(10.0, 256, 160)


@pytest.fixture(scope="session")
def small_cylinder() -> Revolved:
    return cylinder(8.0, 6.0, 256)


@pytest.fixture(scope="session")
def small_torus() -> Revolved:
    return torus(15.0, 5.0, 256, 160)


@pytest.fixture(scope="session")
def shapes() -> dict[str, object]:
    """The generators, for tests that build their own variant."""
    return {"sphere": sphere, "cylinder": cylinder, "torus": torus}

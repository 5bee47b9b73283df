"""Parametric lattice scaffolds: rectangle, disc or annulus, with any layer-angle sequence.

Strands of one layer are linked into serpentine paths wherever the link stays
inside the shape, because every start and stop of a pneumatic valve leaves a blob.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import ConfigurationError
from ._job import ScaffoldObject
from ._order import order_points
from ._paths import ROLE_INFILL, ROLE_PERIMETER, LayerPaths

__all__ = ["ScaffoldInfo", "printability_index", "scaffold_layers", "spacing_for_porosity"]

F64 = npt.NDArray[np.float64]
_CHORD_TOL_MM = 0.005  # circle polygon deviation: far below any strand width


@dataclass(frozen=True)
class ScaffoldInfo:
    """What was designed: spacing, porosity, pore size and the printability index Pr of the pores."""

    strand_spacing_mm: float
    porosity: float
    pore_size_mm: float
    printability: float


def spacing_for_porosity(porosity: float, strand_width_mm: float) -> float:
    """Strand spacing giving an in-plane porosity: a layer of strands of width w at spacing s
    covers w/s of the plane, so s = w / (1 − p) (strands seen from above as bands)."""
    return strand_width_mm / (1.0 - porosity)


def printability_index(angles_deg: list[float], n_layers: int) -> float:
    """Mean printability Pr = L² / (16·A) of the pores between consecutive layers.

    Two crossing strand families of gap g at angle Δ leave parallelogram pores of
    side g/sin Δ: L = 4g/sin Δ, A = g²/sin Δ, so Pr = 1/sin Δ (1 = square pores,
    Ouyang et al. 2016, Biofabrication 8, 035020). Parallel neighbours are skipped;
    NaN if every pair is parallel.
    """
    vals = []
    for i in range(max(n_layers - 1, 0)):
        a = math.radians(angles_deg[i % len(angles_deg)])
        b = math.radians(angles_deg[(i + 1) % len(angles_deg)])
        s = abs(math.sin(b - a))
        if s > 1e-6:
            vals.append(1.0 / s)
    return float(np.mean(vals)) if vals else math.nan


class _Region:
    """The area strand centres may occupy: the shape inset by ``inset`` mm."""

    def __init__(self, obj: ScaffoldObject, inset: float) -> None:
        self.shape = obj.shape
        self.cx, self.cy = obj.center_mm
        self.inset = inset
        if obj.shape == "rectangle":
            assert obj.size_mm is not None
            self.hx = obj.size_mm[0] / 2 - inset
            self.hy = obj.size_mm[1] / 2 - inset
            self.extent = math.hypot(self.hx, self.hy)
        else:
            assert obj.diameter_mm is not None
            self.r_out = obj.diameter_mm / 2 - inset
            self.r_in = (
                (obj.inner_diameter_mm or 0.0) / 2 + inset if obj.shape == "annulus" else 0.0
            )
            self.extent = self.r_out

    def empty(self) -> bool:
        if self.shape == "rectangle":
            return self.hx <= 0 or self.hy <= 0
        return self.r_out <= self.r_in

    def inside(self, p: F64) -> npt.NDArray[np.bool_]:
        x, y = p[:, 0] - self.cx, p[:, 1] - self.cy
        tol = 1e-6
        if self.shape == "rectangle":
            return (np.abs(x) <= self.hx + tol) & (np.abs(y) <= self.hy + tol)
        r = np.hypot(x, y)
        return (r <= self.r_out + tol) & (r >= self.r_in - tol)

    def chords(self, c: float, theta: float) -> list[tuple[float, float]]:
        """Intervals of t where centre + c·normal + t·direction lies inside."""
        ux, uy = math.cos(theta), math.sin(theta)
        px, py = -uy * c, ux * c
        if self.shape == "rectangle":
            lo, hi = -math.inf, math.inf
            for p0, u, h in ((px, ux, self.hx), (py, uy, self.hy)):
                if abs(u) < 1e-12:
                    if abs(p0) > h:
                        return []
                    continue
                a, b = (-h - p0) / u, (h - p0) / u
                lo, hi = max(lo, min(a, b)), min(hi, max(a, b))
            return [(lo, hi)] if hi - lo > 1e-9 else []
        if abs(c) >= self.r_out:
            return []
        to = math.sqrt(self.r_out**2 - c * c)
        if abs(c) >= self.r_in:
            return [(-to, to)]
        ti = math.sqrt(self.r_in**2 - c * c)
        return [(-to, -ti), (ti, to)]

    def outlines(self) -> list[F64]:
        """Closed outlines of the region (hole included), as point arrays without the repeated first point."""
        if self.shape == "rectangle":
            x0, x1 = self.cx - self.hx, self.cx + self.hx
            y0, y1 = self.cy - self.hy, self.cy + self.hy
            return [np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])]
        out = [self._circle(self.r_out)]
        if self.r_in > 0:
            out.append(self._circle(self.r_in)[::-1].copy())
        return out

    def _circle(self, r: float) -> F64:
        n = max(12, math.ceil(math.pi / math.acos(max(1 - _CHORD_TOL_MM / r, -1.0))))
        a = np.linspace(0, 2 * math.pi, n, endpoint=False)
        return np.column_stack([self.cx + r * np.cos(a), self.cy + r * np.sin(a)])


def _split_by_band(
    poly: F64, closed: bool, bands: list[int] | None, x0: float, width: float
) -> list[tuple[F64, int, bool]]:
    """Split a polyline where it crosses the X bands of ``bands`` (tool per band)."""
    if bands is None:
        return [(poly, -1, closed)]
    pts = np.vstack([poly, poly[:1]]) if closed else poly
    # insert the crossings of band boundaries so that every segment lies in one band
    edges = x0 + width * np.arange(1, len(bands))
    out_pts = [pts[0]]
    for a, b in itertools.pairwise(pts):
        lo, hi = sorted((a[0], b[0]))
        cross = edges[(edges > lo) & (edges < hi)]
        ts = sorted((cross - a[0]) / (b[0] - a[0]))
        out_pts.extend(a + t * (b - a) for t in ts)
        out_pts.append(b)
    p = np.array(out_pts)
    mid = 0.5 * (p[:-1, 0] + p[1:, 0])
    band = np.clip(((mid - x0) / width).astype(np.int64), 0, len(bands) - 1)
    pieces = []
    start = 0
    for i in range(1, len(band) + 1):
        if i == len(band) or band[i] != band[start]:
            pieces.append((p[start : i + 1], bands[int(band[start])], False))
            start = i
    if closed and len(pieces) == 1:
        return [(poly, pieces[0][1], True)]
    return pieces


def _link(
    pieces: list[tuple[int, F64]], region: _Region, max_link: float, continuous: bool
) -> list[F64]:
    """Chain strand pieces (scan index, 2×2 ends) into serpentines; links must stay inside."""
    pieces.sort(key=lambda p: (p[0], float(p[1][0, 0]), float(p[1][0, 1])))
    used = [False] * len(pieces)
    by_scan: dict[int, list[int]] = {}
    for i, (k, _) in enumerate(pieces):
        by_scan.setdefault(k, []).append(i)
    chains = []
    for i0 in range(len(pieces)):
        if used[i0]:
            continue
        used[i0] = True
        chain = [pieces[i0][1][0], pieces[i0][1][1]]
        k = pieces[i0][0]
        while continuous:
            end = chain[-1]
            best, best_d, flip = -1, max_link, False
            for j in by_scan.get(k + 1, []):
                if used[j]:
                    continue
                seg = pieces[j][1]
                for f in (False, True):
                    d = float(np.hypot(*(seg[1 if f else 0] - end)))
                    if d <= best_d:
                        best, best_d, flip = j, d, f
            if best < 0:
                break
            seg = pieces[best][1][::-1] if flip else pieces[best][1]
            probe = end + np.linspace(0.1, 0.9, 5)[:, None] * (seg[0] - end)
            if not region.inside(probe).all():
                break
            used[best] = True
            chain.extend([seg[0], seg[1]])
            k += 1
        chains.append(np.array(chain))
    return chains


def _check_fits(obj: ScaffoldObject, infill: _Region, spacing: float, w: float, rims: bool) -> None:
    """A scaffold must hold at least two strands per layer direction: one strand has no pores,
    and none at all would print nothing."""
    size = (
        f"{obj.size_mm[0]:g} x {obj.size_mm[1]:g} mm"
        if obj.size_mm is not None
        else f"{obj.diameter_mm:g} mm across"
    )
    if infill.empty():
        if rims:
            return
        raise ConfigurationError(
            f"object: the {obj.shape} scaffold ({size}) is too small for one strand of "
            f"{w:g} mm inside {obj.perimeters} perimeter(s)"
        )
    for angle in sorted(set(obj.angles_deg)):
        theta = math.radians(angle)
        kmax = math.ceil(infill.extent / spacing) + 1
        strands = 0
        for k in range(-kmax, kmax + 1):
            for t0, t1 in infill.chords(k * spacing, theta):
                strands += t1 - t0 >= w / 2
        if strands < 2:
            field = "strand_spacing_mm" if obj.strand_spacing_mm is not None else "porosity"
            raise ConfigurationError(
                f"object.{field}: strands {spacing:g} mm apart leave "
                f"{'one strand' if strands else 'no strand'} at {angle:g} deg in this "
                f"{obj.shape} scaffold ({size}): no pores (make the spacing smaller than the part)"
            )


def scaffold_layers(
    obj: ScaffoldObject, layer_height_mm: float, strand_width_mm: float, tool: int
) -> tuple[list[LayerPaths], ScaffoldInfo]:
    """Layer paths of a scaffold, each layer in printing order (perimeters, then strands)."""
    w = strand_width_mm
    spacing = obj.strand_spacing_mm or spacing_for_porosity(obj.porosity or 0.0, w)
    n_ang = len(obj.angles_deg)
    infill = _Region(obj, obj.perimeters * w + w / 2)
    # a link may run a quarter strand closer to the outline than the strands do, so
    # that short chords along a hole's edge (which dip in by their sagitta) still link
    link_region = _Region(obj, obj.perimeters * w + w / 4)
    if obj.shape == "rectangle":
        assert obj.size_mm is not None
        bx0, bw = obj.center_mm[0] - obj.size_mm[0] / 2, obj.size_mm[0]
    else:
        assert obj.diameter_mm is not None
        bx0, bw = obj.center_mm[0] - obj.diameter_mm / 2, obj.diameter_mm
    bands = obj.region_tools
    band_w = bw / len(bands) if bands else bw
    perimeter_loops: list[F64] = []
    for k in range(obj.perimeters):
        ring = _Region(obj, (k + 0.5) * w)
        if not ring.empty():
            perimeter_loops.extend(ring.outlines())

    _check_fits(obj, infill, spacing, w, bool(perimeter_loops))
    layers = []
    prev_tool = -1
    for li in range(obj.layers):
        z = (li + 1) * layer_height_mm
        layer_tool = obj.layer_tools[li % len(obj.layer_tools)] if obj.layer_tools else tool
        theta = math.radians(obj.angles_deg[li % n_ang])
        shift = (obj.layer_offset_mm * (li // n_ang)) % spacing
        paths: list[F64] = []
        tools: list[int] = []
        roles: list[int] = []
        closed: list[bool] = []
        for loop in perimeter_loops:
            for piece, t, cl in _split_by_band(loop, True, bands, bx0, band_w):
                paths.append(piece)
                tools.append(layer_tool if t < 0 else t)
                roles.append(ROLE_PERIMETER)
                closed.append(cl)
        if not infill.empty():
            ux, uy = math.cos(theta), math.sin(theta)
            kmax = math.ceil(infill.extent / spacing) + 1
            by_tool: dict[int, list[tuple[int, F64]]] = {}
            for k in range(-kmax, kmax + 1):
                c = k * spacing + shift
                for t0, t1 in infill.chords(c, theta):
                    base = np.array([infill.cx - uy * c, infill.cy + ux * c])
                    seg = np.array([base + t0 * np.array([ux, uy]), base + t1 * np.array([ux, uy])])
                    for piece, t, _ in _split_by_band(seg, False, bands, bx0, band_w):
                        if np.hypot(*(piece[-1] - piece[0])) < w / 2:
                            continue  # a stub shorter than the strand is wide prints as a blob
                        by_tool.setdefault(layer_tool if t < 0 else t, []).append(
                            (k, piece[[0, -1]])
                        )
            max_link = 3.0 * spacing
            for t, pieces in sorted(by_tool.items()):
                chains = _link(pieces, link_region, max_link, obj.continuous)
                starts = np.array([c[0] for c in chains])
                last = paths[-1][-1] if paths else np.asarray(obj.center_mm, np.float64)
                for i in order_points(starts, float(last[0]), float(last[1])):
                    paths.append(chains[int(i)])
                    tools.append(t)
                    roles.append(ROLE_INFILL)
                    closed.append(False)
        # one printhead after the other (each switch costs a purge and an offset move),
        # starting with the one that ended the previous layer; perimeters first
        first = {t: i for i, t in reversed(list(enumerate(tools)))}
        if prev_tool in first:
            first[prev_tool] = -1
        order = sorted(range(len(paths)), key=lambda i: (first[tools[i]], roles[i]))
        layers.append(
            LayerPaths.from_paths(
                z,
                [paths[i] for i in order],
                [tools[i] for i in order],
                [roles[i] for i in order],
                [closed[i] for i in order],
            )
        )
        if order:
            prev_tool = tools[order[-1]]
    info = ScaffoldInfo(
        strand_spacing_mm=spacing,
        porosity=max(0.0, 1.0 - w / spacing),
        pore_size_mm=max(0.0, spacing - w),
        printability=printability_index(obj.angles_deg, obj.layers),
    )
    return layers, info

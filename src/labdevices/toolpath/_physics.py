"""Deposition physics: strand flow, nozzle pressure, wall shear, print time — per segment, numba with a numpy reference.

Equations and sources are in the docstrings here and in ``docs/deposition.md``.
Units: lengths in mm and speeds in mm/s at the interfaces, SI (m, Pa, m³/s)
inside the rheology formulas, pressures reported in kPa, flows in mm³/s (= µL/s).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ._kernel import kernel

if TYPE_CHECKING:
    from ._job import Nozzle, Rheology

__all__ = [
    "DEPOSITION_COLUMNS",
    "NozzleFlow",
    "crossing_fraction",
    "crossing_fraction_ref",
    "deposition_kernel",
    "deposition_ref",
    "flow_for_pressure",
    "junction_speeds",
    "needle_flow_power_law",
    "nozzle_sections",
    "nozzle_volume_mm3",
    "pressure_for_flow",
    "strand_area_mm2",
    "trapezoid_time_ref",
]

F64 = npt.NDArray[np.float64]

# Columns of the per-segment deposition array.
DEPOSITION_COLUMNS = (
    "flow_mm3_s",
    "volume_mm3",
    "time_s",
    "pressure_kpa",
    "wall_shear_pa",
    "wall_shear_rate_1_s",
    "residence_s",
    "e_mm",
)
_HB_ITER = 64  # bisection steps: interval shrinks by 2**-64, below float resolution
_CONE_SLICES = 48  # Herschel–Bulkley in a cone: the lubrication integral by slices


def strand_area_mm2(width_mm: float, height_mm: float) -> float:
    """Cross-section of a deposited strand.

    Stadium ("rounded rectangle", Slic3r's extrusion model) when the strand is at
    least as wide as the layer is high: a rectangle (w − h)·h with semicircular
    sides, A = (w − h)·h + π·h²/4. A strand narrower than the layer height is an
    ellipse with axes w and h, A = π·w·h/4. Both agree at w = h.
    """
    w, h = width_mm, height_mm
    if w >= h:
        return (w - h) * h + math.pi * h * h / 4.0
    return math.pi * w * h / 4.0


def nozzle_sections(nozzle: Nozzle) -> F64:
    """The nozzle as conduits in series, (3, 3) rows [r_in, r_out, length] in metres.

    Row 0 the syringe barrel (bioink column), row 1 the taper of a conical tip
    (zero length for a needle), row 2 the cylindrical needle or straight outlet.
    """
    rs = nozzle.syringe_diameter_mm / 2e3
    r0 = nozzle.inner_diameter_mm / 2e3
    out = np.zeros((3, 3))
    out[0] = (rs, rs, nozzle.ink_column_mm / 1e3)
    if nozzle.kind == "conical":
        assert nozzle.inlet_diameter_mm is not None
        out[1] = (nozzle.inlet_diameter_mm / 2e3, r0, nozzle.length_mm / 1e3)
        out[2] = (r0, r0, nozzle.outlet_length_mm / 1e3)
    else:
        out[1] = (r0, r0, 0.0)
        out[2] = (r0, r0, nozzle.length_mm / 1e3)
    return out


def nozzle_volume_mm3(sections: F64) -> float:
    """Volume of taper and needle (not the barrel): what a cell passes through under high shear."""
    v = 0.0
    for r1, r2, length in sections[1:]:
        v += math.pi * length * (r1 * r1 + r1 * r2 + r2 * r2) / 3.0
    return v * 1e9


def needle_flow_power_law(
    dp_pa: float, radius_m: float, length_m: float, k: float, n: float
) -> float:
    """Power-law flow through a cylindrical needle [m³/s].

    Q = (π n R³ / (3n + 1)) · (R ΔP / (2 K L))^(1/n)
    (Bird, Armstrong & Hassager, Dynamics of Polymeric Liquids vol. 1, 1987, §4.2;
    Chhabra & Richardson, Non-Newtonian Flow and Applied Rheology, 2008, eq. 3.8).
    """
    return float(
        math.pi * n * radius_m**3 / (3 * n + 1) * (radius_m * dp_pa / (2 * k * length_m)) ** (1 / n)
    )


# --- scalar kernels (numba) -------------------------------------------------------


@kernel("UniTuple(f8, 2)(f8, f8, f8, f8, f8)")
def _hb_flow(tau_w: float, r: float, k: float, n: float, ty: float) -> tuple[float, float]:
    """Herschel–Bulkley tube flow at wall stress tau_w, and its slope dQ/dτw.

    Q = π R³/τw³ · ((τw − τy)/K)^(1/n) · (τw − τy) · [(τw − τy)²/(3 + m) + 2τy(τw − τy)/(2 + m)
    + τy²/(1 + m)], m = 1/n (Chhabra & Richardson 2008, eq. 3.12). The slope follows
    from the Rabinowitsch form Q = π R³/τw³ ∫₀^τw τ² γ̇(τ) dτ:
    dQ/dτw = (π R³ γ̇w − 3Q)/τw, with γ̇w the wall shear rate.
    """
    if tau_w <= ty:
        return 0.0, 0.0
    m = 1.0 / n
    d = tau_w - ty
    gw = (d / k) ** m
    pr3 = math.pi * r * r * r
    q = (
        pr3
        / (tau_w * tau_w * tau_w)
        * gw
        * d
        * (d * d / (3.0 + m) + 2.0 * ty * d / (2.0 + m) + ty * ty / (1.0 + m))
    )
    return q, (pr3 * gw - 3.0 * q) / tau_w


@kernel("f8(f8, f8, f8, f8, f8)")
def _wall_stress(q: float, r: float, k: float, n: float, ty: float) -> float:
    """Wall shear stress for flow q [m³/s] through radius r: closed form for a power law.

    Herschel–Bulkley has no closed inverse. Q grows like a power of the excess
    stress d = τw − τy, so Newton's method on ln Q against ln d converges in three
    or four steps from the power law's stress, where Newton on τw itself crawls
    (near plug flow Q ∝ d^(1 + 1/n)). A step that leaves the bracket found so far
    bisects instead. The numpy reference bisects throughout: an independent check.
    """
    tpl = float(k * (q * (3.0 * n + 1.0) / (math.pi * n * r**3)) ** n)
    if ty <= 0.0 or q <= 0.0:
        return tpl
    d = tpl
    lo = 0.0
    hi = math.inf
    for _ in range(100):
        qd, dq = _hb_flow(ty + d, r, k, n, ty)
        if qd == q:
            break
        if qd > q:
            hi = min(hi, d)
        else:
            lo = max(lo, d)
        nxt = 2.0 * d
        if qd > 0.0 and dq > 0.0:
            nxt = d * (q / qd) ** (qd / (d * dq))  # slope of ln Q over ln d is d·Q'/Q
        if not lo < nxt < hi:
            nxt = 0.5 * (lo + hi) if hi < math.inf else 2.0 * d
        elif abs(nxt - d) <= 1e-6 * d:
            # quadratic convergence: after a step this small the error is below 1e-12 of d
            return ty + nxt
        if hi < math.inf and hi - lo <= 1e-15 * hi:  # bisected down to float resolution
            return ty + nxt
        d = nxt
    return ty + d


@kernel("UniTuple(f8, 2)(f8, f8, f8, f8, f8, f8, f8)")
def _section_dp(
    q: float, r_in: float, r_out: float, length: float, k: float, n: float, ty: float
) -> tuple[float, float]:
    """Pressure drop [Pa] over one conduit, and the wall stress at its outlet [Pa]."""
    if length <= 0.0:
        return 0.0, 0.0
    if abs(r_in - r_out) < 1e-12:
        tw = _wall_stress(q, r_out, k, n, ty)
        return 2.0 * length * tw / r_out, tw
    tw_out = _wall_stress(q, r_out, k, n, ty)
    if ty <= 0.0:
        # lubrication approximation: the local tube law integrated along a linear taper
        c = 2.0 * k * ((3.0 * n + 1.0) * q / (math.pi * n)) ** n
        dp = c * length / (3.0 * n * (r_in - r_out)) * (r_out ** (-3.0 * n) - r_in ** (-3.0 * n))
        return dp, tw_out
    # slices equal in log radius: the drop concentrates near the narrow end
    dp = 0.0
    rho = r_out / r_in
    for j in range(_CONE_SLICES):
        ra = r_in * rho ** (j / _CONE_SLICES)
        rb = r_in * rho ** ((j + 1) / _CONE_SLICES)
        r = math.sqrt(ra * rb)
        dz = length * (ra - rb) / (r_in - r_out)
        dp += 2.0 * dz * _wall_stress(q, r, k, n, ty) / r
    return dp, tw_out


@kernel("UniTuple(f8, 2)(f8, f8[:, ::1], f8, f8, f8)")
def _nozzle_dp(q: float, sections: F64, k: float, n: float, ty: float) -> tuple[float, float]:
    """Pressure drop [Pa] over the nozzle's conduits in series, and the wall stress at its outlet [Pa]."""
    dp = 0.0
    tw = 0.0
    for s in range(3):
        d, w = _section_dp(q, sections[s, 0], sections[s, 1], sections[s, 2], k, n, ty)
        dp += d
        if sections[s, 2] > 0.0 and s > 0:
            tw = w
    return dp, tw


@kernel("f8(f8, f8, f8, f8, f8)")
def _trapezoid(length: float, v: float, v0: float, v1: float, a: float) -> float:
    """Time [s] to cover length at cruise speed v with entry/exit speeds v0, v1 and acceleration a."""
    if length <= 0.0 or v <= 0.0:
        return 0.0
    v0 = min(v0, v)
    v1 = min(v1, v)
    da = (v * v - v0 * v0) / (2.0 * a)
    dd = (v * v - v1 * v1) / (2.0 * a)
    if da + dd <= length:
        return (v - v0) / a + (v - v1) / a + (length - da - dd) / v
    vp = math.sqrt((2.0 * a * length + v0 * v0 + v1 * v1) / 2.0)
    if vp < max(v0, v1):
        return 2.0 * length / (v0 + v1)
    return (vp - v0) / a + (vp - v1) / a


@kernel(
    "f8[:, ::1](f8[::1], f8[::1], f8[::1], i4[::1], f8[::1], f8[::1], f8[::1], f8[::1], f8[::1], f8[::1], f8[:, :, ::1], f8[::1], f8[::1], f8)"
)
def deposition_kernel(
    seg_len: F64,
    seg_speed: F64,
    seg_scale: F64,
    seg_tool: npt.NDArray[np.int32],
    v_in: F64,
    v_out: F64,
    tool_area: F64,
    tool_k: F64,
    tool_n: F64,
    tool_ty: F64,
    tool_sections: F64,
    tool_nozzle_vol: F64,
    tool_syringe_area: F64,
    accel: float,
) -> F64:
    """Per-segment deposition, (S, 8) in the order of ``DEPOSITION_COLUMNS``.

    ``seg_speed`` is the feed [mm/s]; ``seg_scale`` the fraction of the nominal
    strand deposited (crossing compensation); flow is area · speed · scale.
    Rheology is solved once per (tool, flow) and remembered: most segments share it.
    """
    n_seg = seg_len.shape[0]
    n_tool = tool_area.shape[0]
    out = np.empty((n_seg, 8))
    # A power-law ink's pressure drops and wall stress all scale as q^n, its wall shear
    # rate as q: solved once for q = 1 m³/s, then one pow per flow.
    pl_dp = np.zeros(n_tool)
    pl_tw = np.zeros(n_tool)
    pl_rate = np.zeros(n_tool)
    for t in range(n_tool):
        if tool_ty[t] <= 0.0:
            pl_dp[t], pl_tw[t] = _nozzle_dp(1.0, tool_sections[t], tool_k[t], tool_n[t], 0.0)
            pl_rate[t] = (pl_tw[t] / tool_k[t]) ** (1.0 / tool_n[t])
    # two remembered flows per tool: a strand's own and the one over crossings
    c_q = np.full((n_tool, 2), -1.0)
    c_v = np.zeros((n_tool, 2, 3))
    c_next = np.zeros(n_tool, np.int64)
    for i in range(n_seg):
        t = seg_tool[i]
        q = tool_area[t] * seg_speed[i] * seg_scale[i]
        if q == c_q[t, 0]:
            slot = 0
        elif q == c_q[t, 1]:
            slot = 1
        else:
            slot = c_next[t]
            c_next[t] = 1 - slot
            k = tool_k[t]
            n = tool_n[t]
            ty = tool_ty[t]
            q_si = q * 1e-9
            c_q[t, slot] = q
            if ty <= 0.0:
                qn = q_si**n
                c_v[t, slot, 0] = pl_dp[t] * qn
                c_v[t, slot, 1] = pl_tw[t] * qn
                c_v[t, slot, 2] = pl_rate[t] * q_si
            else:
                dp, tw = _nozzle_dp(q_si, tool_sections[t], k, n, ty)
                c_v[t, slot, 0] = dp
                c_v[t, slot, 1] = tw
                c_v[t, slot, 2] = ((tw - ty) / k) ** (1.0 / n) if tw > ty else 0.0
        vol = tool_area[t] * seg_len[i] * seg_scale[i]
        out[i, 0] = q
        out[i, 1] = vol
        out[i, 2] = _trapezoid(seg_len[i], seg_speed[i], v_in[i], v_out[i], accel)
        out[i, 3] = c_v[t, slot, 0] * 1e-3
        out[i, 4] = c_v[t, slot, 1]
        out[i, 5] = c_v[t, slot, 2]
        out[i, 6] = tool_nozzle_vol[t] / q if q > 0.0 else 0.0
        out[i, 7] = vol / tool_syringe_area[t] if tool_syringe_area[t] > 0.0 else 0.0
    return out


# --- numpy reference --------------------------------------------------------------


def _hb_flow_np(tau_w: F64, r: F64, k: float, n: float, ty: float) -> F64:
    m = 1.0 / n
    tw = np.maximum(tau_w, ty)
    d = tw - ty
    with np.errstate(divide="ignore", invalid="ignore"):
        q = (
            np.pi
            * r**3
            / tw**3
            * (d / k) ** m
            * d
            * (d * d / (3 + m) + 2 * ty * d / (2 + m) + ty * ty / (1 + m))
        )
    return np.where(tau_w > ty, q, 0.0)


def _wall_stress_np(q: F64, r: F64 | np.float64, k: float, n: float, ty: float) -> F64:
    q = np.asarray(q, np.float64)
    r = np.broadcast_to(np.asarray(r, np.float64), q.shape)
    tpl = k * (q * (3 * n + 1) / (np.pi * n * r**3)) ** n
    if ty <= 0.0:
        return tpl
    lo = np.full(q.shape, ty)
    hi = ty + tpl
    while True:
        short = _hb_flow_np(hi, r, k, n, ty) < q
        if not short.any():
            break
        hi = np.where(short, hi * 2, hi)
    for _ in range(_HB_ITER):
        mid = 0.5 * (lo + hi)
        below = _hb_flow_np(mid, r, k, n, ty) < q
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return np.where(q > 0, 0.5 * (lo + hi), tpl)


def _section_dp_np(
    q: F64, r_in: float, r_out: float, length: float, k: float, n: float, ty: float
) -> tuple[F64, F64]:
    zero = np.zeros_like(q)
    if length <= 0:
        return zero, zero
    tw_out = _wall_stress_np(q, np.float64(r_out), k, n, ty)
    if abs(r_in - r_out) < 1e-12:
        return 2 * length * tw_out / r_out, tw_out
    if ty <= 0:
        c = 2 * k * ((3 * n + 1) * q / (np.pi * n)) ** n
        return c * length / (3 * n * (r_in - r_out)) * (
            r_out ** (-3 * n) - r_in ** (-3 * n)
        ), tw_out
    dp = zero.copy()
    edges = r_in * (r_out / r_in) ** (np.arange(_CONE_SLICES + 1) / _CONE_SLICES)
    for ra, rb in itertools.pairwise(edges):
        r = math.sqrt(ra * rb)
        dz = length * (ra - rb) / (r_in - r_out)
        dp += 2 * dz * _wall_stress_np(q, np.float64(r), k, n, ty) / r
    return dp, tw_out


def trapezoid_time_ref(length: F64, v: F64, v0: F64, v1: F64, a: float) -> F64:
    """Reference of the trapezoidal motion time, vectorised."""
    v0 = np.minimum(v0, v)
    v1 = np.minimum(v1, v)
    da = (v * v - v0 * v0) / (2 * a)
    dd = (v * v - v1 * v1) / (2 * a)
    with np.errstate(divide="ignore", invalid="ignore"):
        full = (v - v0) / a + (v - v1) / a + (length - da - dd) / v
        vp = np.sqrt((2 * a * length + v0 * v0 + v1 * v1) / 2)
        tri = (vp - v0) / a + (vp - v1) / a
        tri = np.where(vp < np.maximum(v0, v1), 2 * length / (v0 + v1), tri)
        t = np.where(da + dd <= length, full, tri)
    return np.where((length > 0) & (v > 0), t, 0.0)


def deposition_ref(
    seg_len: F64,
    seg_speed: F64,
    seg_scale: F64,
    seg_tool: npt.NDArray[np.int32],
    v_in: F64,
    v_out: F64,
    tool_area: F64,
    tool_k: F64,
    tool_n: F64,
    tool_ty: F64,
    tool_sections: F64,
    tool_nozzle_vol: F64,
    tool_syringe_area: F64,
    accel: float,
) -> F64:
    """Plain-numpy reference of ``deposition_kernel`` (same arguments, same result)."""
    out = np.zeros((seg_len.shape[0], 8))
    area = tool_area[seg_tool]
    q = area * seg_speed * seg_scale
    vol = area * seg_len * seg_scale
    out[:, 0] = q
    out[:, 1] = vol
    out[:, 2] = trapezoid_time_ref(seg_len, seg_speed, v_in, v_out, accel)
    for t in np.flatnonzero(np.bincount(seg_tool)):  # (np.unique would import numpy.ma)
        sel = seg_tool == t
        k, n, ty = float(tool_k[t]), float(tool_n[t]), float(tool_ty[t])
        qs = q[sel] * 1e-9
        dp = np.zeros_like(qs)
        tw = np.zeros_like(qs)
        for s in range(3):
            r_in, r_out, length = tool_sections[t, s]
            d, w = _section_dp_np(qs, float(r_in), float(r_out), float(length), k, n, ty)
            dp += d
            if length > 0 and s > 0:
                tw = w
        out[sel, 3] = dp * 1e-3
        out[sel, 4] = tw
        with np.errstate(invalid="ignore"):
            out[sel, 5] = np.where(tw > ty, (np.maximum(tw - ty, 0) / k) ** (1 / n), 0.0)
        with np.errstate(divide="ignore"):
            out[sel, 6] = np.where(q[sel] > 0, tool_nozzle_vol[t] / q[sel], 0.0)
        if tool_syringe_area[t] > 0:
            out[sel, 7] = vol[sel] / tool_syringe_area[t]
    return out


def junction_speeds(
    d: F64, speed: F64, first: npt.NDArray[np.bool_], last: npt.NDArray[np.bool_]
) -> tuple[F64, F64]:
    """Entry and exit speed of each segment [mm/s].

    A junction is passed at min(v_prev, v_next)·max(0, cos θ), θ the turn angle
    (a simple stand-in for a firmware's junction deviation); paths start and end
    at rest. ``d``: (S, 2) segment vectors; ``first``/``last``: the segment opens
    or closes its path.
    """
    n = d.shape[0]
    v_j = np.zeros(n + 1)  # junction speed before segment i
    if n > 1:
        a, b = d[:-1], d[1:]
        la = np.hypot(a[:, 0], a[:, 1])
        lb = np.hypot(b[:, 0], b[:, 1])
        with np.errstate(divide="ignore", invalid="ignore"):
            cos = np.where((la > 0) & (lb > 0), np.sum(a * b, axis=1) / (la * lb), 0.0)
        v_j[1:-1] = np.minimum(speed[:-1], speed[1:]) * np.clip(cos, 0.0, 1.0)
        v_j[1:-1][first[1:]] = 0.0
    v_in = v_j[:-1].copy()
    v_out = v_j[1:].copy()
    v_in[first] = 0.0
    v_out[last] = 0.0
    return v_in, v_out


# --- whole-nozzle helpers ---------------------------------------------------------


@dataclass(frozen=True)
class NozzleFlow:
    """The state of the bioink in a nozzle at one flow rate."""

    flow_mm3_s: float
    pressure_kpa: float
    wall_shear_pa: float
    wall_shear_rate_1_s: float
    residence_s: float


def pressure_for_flow(flow_mm3_s: float, nozzle: Nozzle, rheology: Rheology) -> NozzleFlow:
    """Pressure needed to push ``flow_mm3_s`` through the nozzle (barrel + taper + needle drops)."""
    sec = nozzle_sections(nozzle)
    res = deposition_ref(
        np.zeros(1),
        np.ones(1),
        np.ones(1),
        np.zeros(1, np.int32),
        np.zeros(1),
        np.zeros(1),
        np.array([flow_mm3_s]),
        np.array([rheology.consistency_pa_sn]),
        np.array([rheology.flow_index]),
        np.array([rheology.yield_stress_pa]),
        sec[None],
        np.array([nozzle_volume_mm3(sec)]),
        np.zeros(1),
        1.0,
    )[0]
    return NozzleFlow(flow_mm3_s, float(res[3]), float(res[4]), float(res[5]), float(res[6]))


def flow_for_pressure(pressure_kpa: float, nozzle: Nozzle, rheology: Rheology) -> float:
    """Flow [mm³/s] that ``pressure_kpa`` drives through the nozzle (inverse of ``pressure_for_flow``).

    Bisection in log flow on the numba pressure kernel (``pressure_for_flow`` runs the
    numpy reference, which is too slow for ~90 evaluations of a yield-stress ink in a cone).
    """
    if pressure_kpa <= 0:
        return 0.0
    sec = np.ascontiguousarray(nozzle_sections(nozzle))
    k, n, ty = rheology.consistency_pa_sn, rheology.flow_index, rheology.yield_stress_pa

    def kpa(q_mm3_s: float) -> float:
        return float(_nozzle_dp(q_mm3_s * 1e-9, sec, k, n, ty)[0]) * 1e-3

    lo, hi = 1e-9, 1.0
    while kpa(hi) < pressure_kpa:
        hi *= 4.0
        if hi > 1e9:
            return math.inf
    if kpa(lo) >= pressure_kpa:
        return 0.0  # below the yield pressure
    for _ in range(80):
        mid = math.sqrt(lo * hi)
        if kpa(mid) < pressure_kpa:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * hi:
            break
    return math.sqrt(lo * hi)


# --- flow compensation where strands cross the layer below ----------------------------


@kernel("f8[::1](f8[:, ::1], f8[:, ::1], f8)")
def crossing_fraction(a: F64, b: F64, width: float) -> F64:
    """Fraction of each segment of ``a`` lying on a crossing with a segment of ``b``.

    ``a``, ``b``: (S, 4) and (M, 4) segments [x0, y0, x1, y1]. A crossing at angle
    θ covers width/|sin θ| of the upper strand's length; there the strand rests on
    the one below instead of filling the gap down to the layer before, so it needs
    less bioink (strands of one direction stack only every other layer).
    """
    n = a.shape[0]
    out = np.zeros(n)
    for i in range(n):
        dax = a[i, 2] - a[i, 0]
        day = a[i, 3] - a[i, 1]
        la = math.hypot(dax, day)
        if la <= 0.0:
            continue
        acc = 0.0
        for j in range(b.shape[0]):
            dbx = b[j, 2] - b[j, 0]
            dby = b[j, 3] - b[j, 1]
            den = dax * dby - day * dbx
            lb = math.hypot(dbx, dby)
            if lb <= 0.0 or abs(den) <= 1e-6 * la * lb:
                continue
            ex = b[j, 0] - a[i, 0]
            ey = b[j, 1] - a[i, 1]
            t = (ex * dby - ey * dbx) / den
            u = (ex * day - ey * dax) / den
            if 0.0 <= t <= 1.0 and 0.0 <= u <= 1.0:
                acc += width * la * lb / abs(den)
        out[i] = min(acc / la, 1.0)
    return out


def crossing_fraction_ref(a: F64, b: F64, width: float) -> F64:
    """Reference of ``crossing_fraction``, all pairs at once."""
    da = a[:, None, 2:] - a[:, None, :2]
    db = b[None, :, 2:] - b[None, :, :2]
    la = np.hypot(da[..., 0], da[..., 1])
    lb = np.hypot(db[..., 0], db[..., 1])
    den = da[..., 0] * db[..., 1] - da[..., 1] * db[..., 0]
    e = b[None, :, :2] - a[:, None, :2]
    ok = (lb > 0) & (np.abs(den) > 1e-6 * la * lb) & (la > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (e[..., 0] * db[..., 1] - e[..., 1] * db[..., 0]) / den
        u = (e[..., 0] * da[..., 1] - e[..., 1] * da[..., 0]) / den
        hit = ok & (t >= 0) & (t <= 1) & (u >= 0) & (u <= 1)
        acc = np.where(hit, width * la * lb / np.abs(den), 0.0).sum(axis=1)
        frac = np.where(la[:, 0] > 0, acc / la[:, 0], 0.0)
    return np.minimum(frac, 1.0)

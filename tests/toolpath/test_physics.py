"""Deposition physics against hand-computed values, and each numba kernel against its numpy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labdevices.toolpath import (
    Nozzle,
    Rheology,
    flow_for_pressure,
    needle_flow_power_law,
    pressure_for_flow,
    strand_area_mm2,
)
from labdevices.toolpath._physics import (
    _wall_stress,
    _wall_stress_np,
    crossing_fraction,
    crossing_fraction_ref,
    deposition_kernel,
    deposition_ref,
    junction_speeds,
    nozzle_sections,
    nozzle_volume_mm3,
)

# Alginate 1.5 % w/v, power-law fit over 30–50,000 1/s: K = 0.924272 Pa·s^n, n = 0.686
# (Int. J. Bioprinting 9(4), 2023, "Impingement shear stress during microvalve-based
# bioprinting", Table 1).
ALGINATE = Rheology(consistency_pa_sn=0.924272, flow_index=0.686)
NEEDLE_22G = Nozzle(kind="needle", inner_diameter_mm=0.41, length_mm=12.7)


def test_power_law_needle_matches_hand_computation() -> None:
    # By hand, Q = 1 µL/s = 1e-9 m³/s, R = 0.205 mm, L = 12.7 mm:
    # ΔP = 2KL/R · (Q(3n+1)/(π n R³))^n = 3797.8 Pa; τw = RΔP/(2L) = 30.65 Pa;
    # γ̇w = (3n+1)/(4n) · 4Q/(πR³) = 164.70 1/s; residence πR²L/Q = 1.677 s.
    f = pressure_for_flow(1.0, NEEDLE_22G, ALGINATE)
    assert f.pressure_kpa == pytest.approx(3.7978, rel=1e-4)
    assert f.wall_shear_pa == pytest.approx(30.652, rel=1e-4)
    assert f.wall_shear_rate_1_s == pytest.approx(164.70, rel=1e-4)
    assert f.residence_s == pytest.approx(1.6767, rel=1e-4)
    # the forward equation, and the inverse
    q = needle_flow_power_law(3797.844, 0.205e-3, 12.7e-3, 0.924272, 0.686)
    assert q == pytest.approx(1e-9, rel=1e-6)
    assert flow_for_pressure(f.pressure_kpa, NEEDLE_22G, ALGINATE) == pytest.approx(1.0, rel=1e-9)


def test_newtonian_is_hagen_poiseuille() -> None:
    mu = 0.15  # Pa·s, GelMA-like
    f = pressure_for_flow(2.0, NEEDLE_22G, Rheology(consistency_pa_sn=mu, flow_index=1.0))
    r, length, q = 0.205e-3, 12.7e-3, 2e-9
    assert f.pressure_kpa * 1e3 == pytest.approx(8 * mu * length * q / (math.pi * r**4), rel=1e-9)


def test_bingham_matches_buckingham_reiner() -> None:
    # Bingham plastic (Herschel–Bulkley with n = 1): Q = πR⁴ΔP/(8μL)·(1 − 4φ/3 + φ⁴/3), φ = τy/τw
    mu, ty = 2.0, 40.0
    ink = Rheology(consistency_pa_sn=mu, flow_index=1.0, yield_stress_pa=ty)
    f = pressure_for_flow(1.5, NEEDLE_22G, ink)
    r, length = 0.205e-3, 12.7e-3
    dp = f.pressure_kpa * 1e3
    phi = ty / (r * dp / (2 * length))
    q = math.pi * r**4 * dp / (8 * mu * length) * (1 - 4 * phi / 3 + phi**4 / 3)
    assert q * 1e9 == pytest.approx(1.5, rel=1e-8)
    assert f.wall_shear_rate_1_s == pytest.approx((f.wall_shear_pa - ty) / mu, rel=1e-9)


def test_conical_tip_against_slices_and_yield_limit() -> None:
    cone = Nozzle(kind="conical", inner_diameter_mm=0.25, inlet_diameter_mm=2.0, length_mm=15.0)
    k, n = 30.0, 0.45
    ink = Rheology(consistency_pa_sn=k, flow_index=n)
    q = 0.8e-9
    # independent: many thin cylinders along the taper
    z = np.linspace(0, 1, 20001)
    rz = 1.0e-3 + (0.125e-3 - 1.0e-3) * 0.5 * (z[1:] + z[:-1])
    dp_slices = np.sum(2 * k * (q * (3 * n + 1) / (np.pi * n * rz**3)) ** n / rz * 15e-3 / 20000)
    assert pressure_for_flow(0.8, cone, ink).pressure_kpa * 1e3 == pytest.approx(
        dp_slices, rel=1e-6
    )
    tiny_yield = Rheology(consistency_pa_sn=k, flow_index=n, yield_stress_pa=1e-6)
    assert pressure_for_flow(0.8, cone, tiny_yield).pressure_kpa == pytest.approx(
        dp_slices / 1e3, rel=2e-3
    )


def test_tapered_tip_adds_barrel_taper_and_needle() -> None:
    parts = dict(inner_diameter_mm=0.25, inlet_diameter_mm=2.0, length_mm=10.0)
    bare = Nozzle(kind="conical", **parts)
    full = Nozzle(kind="conical", outlet_length_mm=5.0, ink_column_mm=30.0, **parts)
    needle = Nozzle(kind="needle", inner_diameter_mm=0.25, length_mm=5.0)
    barrel = Nozzle(kind="needle", inner_diameter_mm=9.6, length_mm=30.0)
    total = sum(pressure_for_flow(1.0, x, ALGINATE).pressure_kpa for x in (bare, needle, barrel))
    assert pressure_for_flow(1.0, full, ALGINATE).pressure_kpa == pytest.approx(total, rel=1e-9)


def test_strand_area_models() -> None:
    assert strand_area_mm2(0.5, 0.3) == pytest.approx(0.2 * 0.3 + math.pi * 0.09 / 4)
    assert strand_area_mm2(0.2, 0.3) == pytest.approx(math.pi * 0.2 * 0.3 / 4)
    assert strand_area_mm2(0.3, 0.3) == pytest.approx(math.pi * 0.09 / 4)


def _random_segments(rng: np.random.Generator, n: int) -> tuple:
    tools = rng.integers(0, 3, n).astype(np.int32)
    length = rng.uniform(0, 5, n)
    speed = rng.choice([5.0, 8.0, 12.5], n)
    scale = rng.choice([1.0, 0.6], n)
    v_in = speed * rng.uniform(0, 1, n)
    v_out = speed * rng.uniform(0, 1, n)
    nozzles = [
        NEEDLE_22G,
        Nozzle(kind="conical", inner_diameter_mm=0.25, inlet_diameter_mm=2.0, length_mm=15.0),
        Nozzle(kind="needle", inner_diameter_mm=0.6, length_mm=6.0, ink_column_mm=20.0),
    ]
    sections = np.stack([nozzle_sections(z) for z in nozzles])
    vol = np.array([nozzle_volume_mm3(s) for s in sections])
    return (
        length,
        speed,
        scale,
        tools,
        v_in,
        v_out,
        np.array([0.12, 0.08, 0.2]),
        np.array([0.924272, 30.0, 25.0]),
        np.array([0.686, 0.45, 0.25]),
        np.array([0.0, 20.0, 100.0]),  # Herschel–Bulkley in a cone and in a needle
        sections,
        vol,
        np.array([0.0, 0.0, 72.4]),  # tool 2 is a piston
        800.0,
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_deposition_kernel_matches_reference(seed: int) -> None:
    args = _random_segments(np.random.default_rng(seed), 3000)
    np.testing.assert_allclose(deposition_kernel(*args), deposition_ref(*args), rtol=1e-9)


def test_trapezoid_time() -> None:
    args = list(_random_segments(np.random.default_rng(0), 3))
    args[0] = np.array([100.0, 100.0, 0.01])  # long segment, long segment, very short
    args[1] = np.array([10.0, 10.0, 10.0])
    args[4] = np.array([0.0, 10.0, 0.0])
    args[5] = np.array([0.0, 10.0, 0.0])
    t = deposition_kernel(*args)[:, 2]
    a = args[-1]
    assert t[0] == pytest.approx(100 / 10 + 10 / a)  # accelerate from and stop at rest
    assert t[1] == pytest.approx(10.0)  # cruise through
    assert t[2] == pytest.approx(2 * math.sqrt(0.01 / a))  # triangle profile


def test_junction_speeds() -> None:
    d = np.array([[1.0, 0], [1, 0], [0, 1], [1, 0]])
    first = np.array([True, False, False, True])
    last = np.array([False, False, True, True])
    v_in, v_out = junction_speeds(d, np.full(4, 10.0), first, last)
    np.testing.assert_allclose(v_in, [0, 10, 0, 0])
    np.testing.assert_allclose(v_out, [10, 0, 0, 0], atol=1e-12)


def test_crossing_fraction_matches_reference() -> None:
    rng = np.random.default_rng(3)
    a = rng.uniform(0, 10, (300, 4))
    b = rng.uniform(0, 10, (200, 4))
    np.testing.assert_allclose(crossing_fraction(a, b, 0.4), crossing_fraction_ref(a, b, 0.4))
    # a strand crossing one at right angles covers one strand width of it
    up = np.array([[0.0, 0.0, 10.0, 0.0]])
    below = np.array([[5.0, -1.0, 5.0, 1.0]])
    assert crossing_fraction(up, below, 0.4)[0] == pytest.approx(0.04)


@settings(max_examples=300, deadline=None)
@given(
    q=st.floats(1e-15, 1e-6),
    r=st.floats(5e-5, 1e-2),
    k=st.floats(0.01, 500.0),
    n=st.floats(0.15, 1.5),
    ty=st.floats(1e-3, 2000.0),
)
def test_herschel_bulkley_root_matches_bisection(
    q: float, r: float, k: float, n: float, ty: float
) -> None:
    """The kernel's Newton iteration (log-log, with an early exit) against the reference's bisection."""
    got = _wall_stress(q, r, k, n, ty)
    want = float(_wall_stress_np(np.array([q]), np.float64(r), k, n, ty)[0])
    assert got == pytest.approx(want, rel=1e-11)

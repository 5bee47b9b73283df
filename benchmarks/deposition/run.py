"""Deposition kernel throughput: numba kernel against its plain-numpy reference, and G-code emission.

Run: .venv/bin/python benchmarks/deposition/run.py [--segments N]
Prints a Markdown table; RESULTS.md holds the figures measured with the machine noted.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import numpy as np

from labdevices.profiles import GcodeProfile, load_profile
from labdevices.toolpath import LayerPaths, Nozzle, PrintJob, plan_layers
from labdevices.toolpath._physics import (
    deposition_kernel,
    deposition_ref,
    nozzle_sections,
    nozzle_volume_mm3,
)


def segments(n: int, case: str, seed: int = 0) -> tuple:
    """Synthetic segments of three printheads.

    ``print``: as in a real plan — runs of one tool at one flow, with every tenth
    segment crossing a strand below (flow compensation changes the flow there).
    ``random``: every segment at a different flow, the worst case for the kernel.
    """
    rng = np.random.default_rng(seed)
    run = 400
    tools = np.repeat(rng.integers(0, 3, n // run + 1), run)[:n].astype(np.int32)
    speed = np.array([8.0, 10.0, 12.0])[tools]
    scale = np.ones(n)
    if case == "print":
        scale[::10] = 0.7
    else:
        speed = speed * rng.uniform(0.5, 1.5, n)
    length = rng.uniform(0.05, 3.0, n)
    v_in = speed * rng.uniform(0, 1, n)
    v_out = speed * rng.uniform(0, 1, n)
    nozzles = [
        Nozzle(kind="needle", inner_diameter_mm=0.41, length_mm=12.7),
        Nozzle(kind="conical", inner_diameter_mm=0.25, inlet_diameter_mm=2.0, length_mm=15.0),
        Nozzle(kind="needle", inner_diameter_mm=0.6, length_mm=6.0, ink_column_mm=20.0),
    ]
    sec = np.stack([nozzle_sections(z) for z in nozzles])
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
        np.array([0.0, 0.0, 100.0]),  # power law, power law in a cone, Herschel–Bulkley
        sec,
        np.array([nozzle_volume_mm3(s) for s in sec]),
        np.array([0.0, 0.0, 72.4]),
        800.0,
    )


def best_of(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def emission(n_layers: int, pts_per_layer: int) -> tuple[int, int, float]:
    """Plan + G-code for zig-zag layers of ``pts_per_layer`` points; (lines, bytes, seconds)."""
    x = np.linspace(20, 120, pts_per_layer)
    y = 40 + 30 * (np.arange(pts_per_layer) % 2)
    xy = np.column_stack([x, y])
    paths = [xy[i : i + 50] for i in range(0, pts_per_layer, 50)]
    layers = [LayerPaths.from_paths(0.2 * (k + 1), paths) for k in range(n_layers)]
    profile = load_profile("cellink-biox")
    assert isinstance(profile, GcodeProfile)
    job = PrintJob.model_validate(
        {
            "printer": "cellink-biox",
            "layer_height_mm": 0.2,
            "printheads": [
                {
                    "strand_width_mm": 0.4,
                    "print_speed_mm_s": 10,
                    "bioink": {
                        "name": "ink",
                        "rheology": {"consistency_pa_sn": 30, "flow_index": 0.45},
                    },
                    "nozzle": {"inner_diameter_mm": 0.41, "length_mm": 12.7},
                }
            ],
            "object": {"type": "scaffold", "size_mm": [1, 1], "layers": 1, "strand_spacing_mm": 1},
        }
    )
    plan_layers(layers[:2], job, profile)  # warm the numba caches
    res = plan_layers(layers, job, profile)
    dt = best_of(lambda: plan_layers(layers, job, profile), 3)
    return res.gcode.count("\n"), len(res.gcode), dt


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--segments", type=int, default=1_000_000)
    args = ap.parse_args()
    n = args.segments
    print(
        f"machine: {_cpu()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, numpy {np.__version__}"
    )
    print()
    print("| case | segments | numba s | numpy s | numba seg/s | numpy seg/s | ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for case in ("print", "random"):
        a = segments(n, case)
        deposition_kernel(*segments(1000, case))  # compile / load the cache
        np.testing.assert_allclose(deposition_kernel(*a), deposition_ref(*a), rtol=1e-8)
        t_nb = best_of(lambda a=a: deposition_kernel(*a), 5)
        t_np = best_of(lambda a=a: deposition_ref(*a), 2)
        print(
            f"| {case} | {n:,} | {t_nb:.3f} | {t_np:.3f} | {n / t_nb:,.0f} | {n / t_np:,.0f} | {t_np / t_nb:.1f}x |"
        )
    print()
    lines, size, dt = emission(200, 5000)
    print(
        f"G-code emission (plan + physics + text), 200 layers × 5,000 points: "
        f"{lines:,} lines, {size / 1e6:.1f} MB in {dt:.2f} s = {lines / dt:,.0f} lines/s"
    )


if __name__ == "__main__":
    main()

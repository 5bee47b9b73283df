"""Tiny jobs of every kind, and numba's JIT warmed up: for when the kernels were not
compiled ahead of time (``_kernel``).

Without the compiled module a first ``labdevices toolpath`` spends most of its time in
numba's JIT; ``labdevices warmup`` in a read-only installation fills numba's cache with
``warm_up`` instead (CI can cache ``NUMBA_CACHE_DIR``).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np

__all__ = ["cache_dir", "start_kernels_in_background", "warm_up"]


def cache_dir() -> str:
    """Where numba keeps the compiled kernels: ``NUMBA_CACHE_DIR`` or beside the sources."""
    return os.environ.get("NUMBA_CACHE_DIR") or str(Path(__file__).parent / "__pycache__")


def _box() -> tuple[np.ndarray, np.ndarray]:
    v = np.array(
        [[x, y, z] for z in (0.0, 1.0) for y in (0.0, 4.0) for x in (0.0, 4.0)], np.float64
    )
    f = np.array(
        [
            [0, 2, 1], [1, 2, 3], [4, 5, 6], [5, 7, 6], [0, 1, 4], [1, 5, 4],
            [2, 6, 3], [3, 6, 7], [0, 4, 2], [2, 4, 6], [1, 3, 5], [3, 7, 5],
        ],
        np.int64,
    )  # fmt: skip
    return v, f


def warm_up() -> float:
    """Plan a tiny scaffold, well plate and mesh job (every kernel they use compiles and is
    cached); returns the seconds it took."""
    from ._job import Bioink, Nozzle, Printhead, PrintJob, Rheology, job_profile
    from ._mesh import slice_mesh
    from ._physics import flow_for_pressure
    from ._plan import plan_job, plan_layers

    t0 = time.perf_counter()
    head = Printhead(
        strand_width_mm=0.4,
        print_speed_mm_s=10.0,
        bioink=Bioink(
            name="warm-up",
            rheology=Rheology(consistency_pa_sn=25.0, flow_index=0.3, yield_stress_pa=50.0),
        ),
        nozzle=Nozzle(kind="conical", inner_diameter_mm=0.4, inlet_diameter_mm=2.0, length_mm=10.0),
    )
    base = {"printer": "marlin-pneumatic", "layer_height_mm": 0.2, "printheads": [head]}
    scaffold = {"type": "scaffold", "size_mm": (4.0, 4.0), "layers": 2, "strand_spacing_mm": 1.0}
    plan_job(PrintJob.model_validate({**base, "crossing_flow_factor": 0.8, "object": scaffold}))
    plate = {"type": "wellplate", "format": 6, "wells": ["A1", "A2"], "pattern": "droplet"}
    plan_job(PrintJob.model_validate({**base, "printer": "cellink-biox", "object": plate}))
    mesh_job = PrintJob.model_validate(
        {**base, "object": {"type": "mesh", "path": "-", "infill_spacing_mm": 1.0}}
    )
    layers = slice_mesh(_box(), 0.2, 0.4, 2, 1.0)
    for lp in layers:
        lp.xy += 50.0
    plan_layers(layers, mesh_job, job_profile(mesh_job))
    flow_for_pressure(50.0, head.nozzle, head.bioink.rheology)
    return time.perf_counter() - t0


def _first_kernel_call() -> None:
    from ._order import nearest_neighbour

    nearest_neighbour(np.zeros((1, 2)), 0.0, 0.0)


def start_kernels_in_background() -> threading.Thread:
    """Import numba and load a first cached kernel on another thread.

    The first cached kernel of a process costs ~0.3 s (numba sets up LLVM's target
    and code generator), mostly in native code that releases the GIL: done while the
    main thread imports the CLI, pydantic and reads the job, a one-shot command
    finishes that much sooner. Join the thread before the process ends.
    """
    thread = threading.Thread(target=_first_kernel_call, name="numba-warm", daemon=True)
    thread.start()
    return thread

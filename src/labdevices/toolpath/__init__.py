"""Toolpath and deposition core: scaffolds, meshes and well plates to layer paths and G-code.

``plan_job(load_job("job.toml"))`` gives a ``ToolpathResult``: layer paths,
per-segment deposition arrays, totals, warnings and G-code. ``slice_mesh`` is
loaded on first use (it pulls in the mesh slicer).
"""

from __future__ import annotations

from typing import Any

from ._job import (
    Bioink,
    Crosslinking,
    MeshObject,
    Nozzle,
    Printhead,
    PrintJob,
    Rheology,
    ScaffoldObject,
    WellPlateObject,
    default_job,
    job_profile,
    load_job,
)
from ._order import order_points
from ._paths import ROLE_DROPLET, ROLE_INFILL, ROLE_PERIMETER, LayerPaths
from ._physics import (
    DEPOSITION_COLUMNS,
    NozzleFlow,
    flow_for_pressure,
    needle_flow_power_law,
    pressure_for_flow,
    strand_area_mm2,
)
from ._plan import PrintheadTotals, ToolpathResult, emit_gcode, plan_job, plan_layers
from ._scaffold import ScaffoldInfo, printability_index, scaffold_layers, spacing_for_porosity
from ._wellplate import PLATE_FORMATS, well_centres, wellplate_layers

__all__ = [
    "DEPOSITION_COLUMNS",
    "PLATE_FORMATS",
    "ROLE_DROPLET",
    "ROLE_INFILL",
    "ROLE_PERIMETER",
    "Bioink",
    "Crosslinking",
    "LayerPaths",
    "MeshObject",
    "Nozzle",
    "NozzleFlow",
    "PrintJob",
    "Printhead",
    "PrintheadTotals",
    "Rheology",
    "ScaffoldInfo",
    "ScaffoldObject",
    "ToolpathResult",
    "WellPlateObject",
    "default_job",
    "emit_gcode",
    "flow_for_pressure",
    "job_profile",
    "load_job",
    "needle_flow_power_law",
    "order_points",
    "plan_job",
    "plan_layers",
    "pressure_for_flow",
    "printability_index",
    "scaffold_layers",
    "slice_mesh",
    "spacing_for_porosity",
    "strand_area_mm2",
    "well_centres",
    "wellplate_layers",
]


def __getattr__(name: str) -> Any:
    if name == "slice_mesh":
        from ._mesh import slice_mesh

        return slice_mesh
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

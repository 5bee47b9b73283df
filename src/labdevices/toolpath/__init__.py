"""Toolpath and deposition core: scaffolds, meshes and well plates to layer paths and G-code.

``plan_job(load_job("job.toml"))`` gives a ``ToolpathResult``: layer paths,
per-segment deposition arrays, totals, warnings and G-code. ``slice_mesh`` is
loaded on first use (it pulls in the mesh slicer).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from ._mesh import slice_mesh
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


# Loaded on first use: importing the package stays cheap (a one-off slice of a small
# STL should not pay for pydantic job models or the physics kernels).
_WHERE: dict[str, str] = {
    "Bioink": "_job",
    "Crosslinking": "_job",
    "DEPOSITION_COLUMNS": "_physics",
    "LayerPaths": "_paths",
    "MeshObject": "_job",
    "Nozzle": "_job",
    "NozzleFlow": "_physics",
    "PLATE_FORMATS": "_wellplate",
    "PrintJob": "_job",
    "Printhead": "_job",
    "PrintheadTotals": "_plan",
    "ROLE_DROPLET": "_paths",
    "ROLE_INFILL": "_paths",
    "ROLE_PERIMETER": "_paths",
    "Rheology": "_job",
    "ScaffoldInfo": "_scaffold",
    "ScaffoldObject": "_job",
    "ToolpathResult": "_plan",
    "WellPlateObject": "_job",
    "default_job": "_job",
    "emit_gcode": "_plan",
    "flow_for_pressure": "_physics",
    "job_profile": "_job",
    "load_job": "_job",
    "needle_flow_power_law": "_physics",
    "order_points": "_order",
    "plan_job": "_plan",
    "plan_layers": "_plan",
    "pressure_for_flow": "_physics",
    "printability_index": "_scaffold",
    "scaffold_layers": "_scaffold",
    "slice_mesh": "_mesh",
    "spacing_for_porosity": "_scaffold",
    "strand_area_mm2": "_physics",
    "well_centres": "_wellplate",
    "wellplate_layers": "_wellplate",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

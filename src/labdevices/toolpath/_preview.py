"""Preview picture and summary table of a planned print.

The picture (matplotlib, Agg backend, PNG or SVG by the file's suffix) shows one
layer from above and an isometric view of all layers, coloured by printhead.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rich.table import Table

    from ._plan import ToolpathResult

__all__ = ["render_preview", "summary_table"]

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
_MAX_ISO_SEGMENTS = 200_000  # beyond this the isometric view thins segments evenly


def render_preview(result: ToolpathResult, path: str | Path, layer: int | None = None) -> Path:
    """Write the preview; ``layer`` (0-based, default the top one) is drawn from above."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    out = Path(path)
    n_layers = len(result.layers)
    k = n_layers - 1 if layer is None else layer
    if not 0 <= k < max(n_layers, 1):
        raise ValueError(f"layer {layer} out of range (0…{n_layers - 1})")
    fig = Figure(figsize=(11, 5.2), dpi=110)
    ax_top = fig.add_subplot(1, 2, 1)
    ax_iso = fig.add_subplot(1, 2, 2)
    seg = result.seg_xy
    colours = np.array(
        [_COLOURS[int(t) % len(_COLOURS)] for t in range(int(result.seg_tool.max(initial=0)) + 1)]
    )
    sel = result.seg_layer == k
    ax_top.add_collection(
        LineCollection(
            seg[sel].reshape(-1, 2, 2), colors=colours[result.seg_tool[sel]], linewidths=1.2
        )
    )
    if n_layers:
        lp = result.layers[k]
        drops = np.diff(lp.start) == 1
        if drops.any():
            pts = lp.xy[lp.start[:-1][drops]]
            ax_top.scatter(pts[:, 0], pts[:, 1], s=12, c=colours[lp.tool[drops]])
    ax_top.set_aspect("equal")
    ax_top.autoscale()
    z = np.array([lp.z for lp in result.layers]) if n_layers else np.zeros(0)
    ax_top.set_title(f"layer {k + 1} of {n_layers}" + (f", z = {z[k]:.2f} mm" if n_layers else ""))
    ax_top.set_xlabel("x [mm]")
    ax_top.set_ylabel("y [mm]")
    # isometric: x' = (x − y)·cos30°, y' = (x + y)·sin30° + z
    step = max(1, len(seg) // _MAX_ISO_SEGMENTS)
    idx = np.arange(0, len(seg), step)
    zz = z[result.seg_layer[idx]] if n_layers else np.zeros(len(idx))
    c30, s30 = np.cos(np.pi / 6), 0.5
    x0 = (seg[idx, 0] - seg[idx, 1]) * c30
    y0 = (seg[idx, 0] + seg[idx, 1]) * s30 + zz
    x1 = (seg[idx, 2] - seg[idx, 3]) * c30
    y1 = (seg[idx, 2] + seg[idx, 3]) * s30 + zz
    lines = np.stack([np.column_stack([x0, y0]), np.column_stack([x1, y1])], axis=1)
    ax_iso.add_collection(
        LineCollection(list(lines), colors=colours[result.seg_tool[idx]], linewidths=0.5)
    )
    ax_iso.set_aspect("equal")
    ax_iso.autoscale()
    ax_iso.set_axis_off()
    ax_iso.set_title("isometric view")
    heads = ", ".join(
        f"T{t.tool} {t.bioink} ({_COLOURS[t.tool % len(_COLOURS)]})" for t in result.totals
    )
    fig.suptitle(f"{result.job.name}: {heads}", fontsize=9)
    fig.savefig(out, format=out.suffix.lstrip(".").lower() or "png")
    return out


def summary_table(result: ToolpathResult) -> Table:
    """A rich table: per printhead settings, shear, volume, cells and time."""
    from rich.table import Table

    job = result.job
    title = f"{job.name} — {len(result.layers)} layers"
    if job.batch_id or job.patient_id:
        title += f" — batch {job.batch_id or '-'}, patient {job.patient_id or '-'}"
    table = Table(title=title)
    for col in (
        "printhead",
        "bioink",
        "speed mm/s",
        "pressure kPa",
        "flow µL/s",
        "wall shear Pa",
        "shear rate 1/s",
        "residence s",
        "path mm",
        "volume µL",
        "cells",
        "time s",
    ):
        table.add_column(col, justify="left" if col in ("printhead", "bioink") else "right")
    for t in result.totals:
        table.add_row(
            f"T{t.tool} {t.kind}",
            t.bioink,
            f"{t.speed_mm_s:.2f}",
            "-" if t.pressure_kpa is None else f"{t.pressure_kpa:.1f}",
            f"{t.flow_mm3_s:.3f}",
            f"{t.wall_shear_pa:.0f}",
            f"{t.wall_shear_rate_1_s:.0f}",
            f"{t.residence_s:.2f}",
            f"{t.path_mm:.0f}",
            f"{t.volume_ul:.2f}",
            f"{t.cells:.3g}",
            f"{t.time_s:.0f}",
        )
    tr = result.travel
    extra = [
        f"estimated print time {result.total_time_s:.0f} s",
        f"travel {tr.xy_mm / 1000:.2f} m XY, {tr.lift_z_mm / 1000:.2f} m Z lifts ({tr.time_s:.0f} s)",
    ]
    if result.scaffold is not None:
        s = result.scaffold
        extra.append(
            f"spacing {s.strand_spacing_mm:.2f} mm, porosity {s.porosity:.2f}, "
            f"pore {s.pore_size_mm:.2f} mm, printability Pr {s.printability:.3f}"
        )
    if result.well_order is not None:
        extra.append(f"{len(result.well_order)} wells, from {result.well_order[0]}")
    table.caption = "; ".join(extra)
    return table

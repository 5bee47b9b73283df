"""Planning a print: object → layer paths → per-segment deposition → G-code, totals and warnings.

``plan_job(job)`` does it all; ``plan_layers(layers, job, profile)`` starts from
layer paths made elsewhere (a mesh slicer), and ``emit_gcode`` returns only the text.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from .. import __version__
from ..errors import ConfigurationError
from ..profiles import GcodeProfile, PrintheadDialect
from ._emit import EmitInputs, LiteralTable, Travel, render_body, to_ascii
from ._job import MeshObject, PrintJob, ScaffoldObject, WellPlateObject, job_profile
from ._order import travel_crossings
from ._paths import LayerPaths
from ._physics import (
    DEPOSITION_COLUMNS,
    crossing_fraction,
    deposition_kernel,
    flow_for_pressure,
    junction_speeds,
    nozzle_sections,
    nozzle_volume_mm3,
    pressure_for_flow,
    strand_area_mm2,
)
from ._scaffold import ScaffoldInfo, scaffold_layers
from ._wellplate import wellplate_layers

__all__ = ["PrintheadTotals", "ToolpathResult", "emit_gcode", "plan_job", "plan_layers"]

F64 = npt.NDArray[np.float64]
Progress = Callable[[str], None]
_Z_FEED_MM_MIN = 600.0


@dataclass(frozen=True)
class PrintheadTotals:
    """Per printhead (bioink): the settings used and what gets deposited."""

    tool: int
    bioink: str
    kind: str
    strand_area_mm2: float
    speed_mm_s: float  # as printed (pneumatic: matched to the regulator's resolution)
    flow_mm3_s: float
    pressure_kpa: float | None
    e_per_mm3: float | None  # piston: plunger mm per mm³
    wall_shear_pa: float
    wall_shear_rate_1_s: float
    residence_s: float
    path_mm: float
    volume_ul: float
    cells: float
    time_s: float


@dataclass
class ToolpathResult:
    """Everything a print plan produced, as arrays for further use.

    Segments: ``seg_xy`` (S, 4) [x0, y0, x1, y1] mm, ``seg_tool``, ``seg_layer``;
    ``deposition`` (S, 8) with columns ``DEPOSITION_COLUMNS``.
    """

    job: PrintJob
    profile: GcodeProfile
    layers: list[LayerPaths]
    seg_xy: F64
    seg_tool: npt.NDArray[np.int32]
    seg_layer: npt.NDArray[np.int64]
    deposition: F64
    totals: list[PrintheadTotals]
    total_time_s: float
    gcode: str
    travel: Travel = field(default_factory=lambda: Travel(0.0, 0.0, 0.0))
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    scaffold: ScaffoldInfo | None = None
    well_order: list[str] | None = None

    def column(self, name: str) -> F64:
        """One column of ``deposition`` by name (see ``DEPOSITION_COLUMNS``)."""
        return self.deposition[:, DEPOSITION_COLUMNS.index(name)]

    @property
    def volume_ul(self) -> float:
        return sum(t.volume_ul for t in self.totals)

    def gcode_bytes(self) -> bytes:
        """The G-code in the job's encoding (ASCII text is already transliterated)."""
        return self.gcode.encode(self.job.gcode_encoding)


def _flatten(
    layers: list[LayerPaths],
) -> tuple[
    F64, npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.int8]
]:
    """All layers' points stacked; closed paths repeat their first point."""
    layer_pstart = np.zeros(len(layers) + 1, np.int64)
    np.cumsum([lp.n_paths for lp in layers], out=layer_pstart[1:])
    if not layers:
        return (
            np.zeros((0, 2)),
            np.zeros(1, np.int64),
            layer_pstart,
            np.zeros(0, np.int32),
            np.zeros(0, np.int8),
        )
    # every layer's paths at once (numpy calls per layer cost more than the work on a small mesh):
    # a layer's point offsets are shifted by the points of the layers before it
    n_pts = np.array([len(lp.xy) for lp in layers], np.int64)
    shift = np.repeat(np.cumsum(n_pts) - n_pts, np.diff(layer_pstart))
    first = np.concatenate([lp.start[:-1] for lp in layers]) + shift
    counts = np.concatenate([lp.start[1:] for lp in layers]) + shift - first
    closed = np.concatenate([lp.closed for lp in layers])
    ext = counts + (closed & (counts > 1))
    total = int(ext.sum())
    run = np.repeat(np.cumsum(ext) - ext, ext)
    within = np.arange(total, dtype=np.int64) - run
    within = np.where(within == np.repeat(counts, ext), 0, within)
    idx = np.repeat(first, ext) + within
    del run, within
    xy = np.concatenate([lp.xy for lp in layers])[idx]
    starts = np.zeros(len(ext) + 1, np.int64)
    np.cumsum(ext, out=starts[1:])
    return (
        np.ascontiguousarray(xy, np.float64),
        starts,
        layer_pstart,
        np.concatenate([lp.tool for lp in layers]).astype(np.int32),
        np.concatenate([lp.role for lp in layers]).astype(np.int8),
    )


def _quantise(kpa: float, d: PrintheadDialect) -> float:
    """The pressure the regulator will actually get: PWM steps, 0.1 kPa, or 1 kPa set by hand."""
    kpa = min(max(kpa, 0.0), d.pressure_max_kpa)
    if d.set_pressure is None:
        return float(round(kpa))
    if "{pwm" in d.set_pressure:
        step = d.pressure_max_kpa / 255
        return round(kpa / step) * step
    return round(kpa, 1)


def _template(tpl: str, **fields: float | int | str) -> str:
    try:
        return tpl.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigurationError(f"printer profile template {tpl!r}: {exc}") from exc


def _pressure_fields(kpa: float, d: PrintheadDialect) -> dict[str, float | int | str]:
    return {
        "tool": d.tool,
        "kpa": kpa,
        "fraction": kpa / d.pressure_max_kpa,
        "pwm": round(255 * kpa / d.pressure_max_kpa),
    }


def plan_layers(
    layers: list[LayerPaths],
    job: PrintJob,
    profile: GcodeProfile,
    *,
    progress: Progress | None = None,
    scaffold: ScaffoldInfo | None = None,
    well_order: list[str] | None = None,
    droplet_volume_ul: float = 1.0,
) -> ToolpathResult:
    """Deposition physics and G-code for ready layer paths (from any generator)."""
    say = progress or (lambda _s: None)
    say("deposition")
    warnings: list[str] = []
    notes: list[str] = []
    xy, pstart, layer_pstart, p_tool, _p_role = _flatten(layers)
    n_pts = len(xy)
    n_paths = len(p_tool)
    if n_paths == 0:
        raise ConfigurationError(
            f"object: nothing to print: the {job.object.type} job makes no paths at layer height "
            f"{job.layer_height_mm:g} mm (is the object smaller than one strand?)"
        )
    layer_z = np.array([lp.z for lp in layers], np.float64)
    p_layer = np.repeat(np.arange(len(layers), dtype=np.int64), np.diff(layer_pstart))

    n_tools = max(p.tool for p in profile.printheads) + 1
    heads = {h.tool: h for h in job.printheads}
    used = [int(t) for t in np.flatnonzero(np.bincount(p_tool))]  # np.unique imports numpy.ma
    for t in used:
        if t not in heads:
            raise ConfigurationError(f"layer paths use tool {t}, but the job has no printhead {t}")
    h_layer = job.layer_height_mm
    area = np.zeros(n_tools)
    k_ = np.ones(n_tools)
    n_ = np.ones(n_tools)
    ty = np.zeros(n_tools)
    sections = np.zeros((n_tools, 3, 3))
    sections[:, :, :2] = 1.0
    nvol = np.zeros(n_tools)
    syr_area = np.zeros(n_tools)
    speed = np.ones(n_tools)
    piston = np.zeros(n_tools, np.bool_)
    pressure: dict[int, float] = {}
    for t, head in heads.items():
        d = profile.printhead(t)
        rh = head.bioink.rheology
        area[t] = strand_area_mm2(head.strand_width_mm, h_layer)
        k_[t], n_[t], ty[t] = rh.consistency_pa_sn, rh.flow_index, rh.yield_stress_pa
        sections[t] = nozzle_sections(head.nozzle)
        nvol[t] = nozzle_volume_mm3(sections[t])
        speed[t] = head.print_speed_mm_s
        if head.strand_width_mm < head.nozzle.inner_diameter_mm:
            warnings.append(
                f"printhead {t}: strand width {head.strand_width_mm} mm is narrower than the "
                f"nozzle ({head.nozzle.inner_diameter_mm} mm): the strand will be stretched thin"
            )
        if d.kind == "piston":
            piston[t] = True
            assert d.syringe_diameter_mm is not None
            syr_area[t] = math.pi * d.syringe_diameter_mm**2 / 4
            continue
        q = area[t] * head.print_speed_mm_s
        need = pressure_for_flow(q, head.nozzle, rh).pressure_kpa
        if need > d.pressure_max_kpa:
            warnings.append(
                f"printhead {t} ({head.bioink.name}): needs {need:.0f} kPa, beyond the regulator's "
                f"{d.pressure_max_kpa:.0f} kPa; printing slower or with a wider nozzle would help"
            )
        p_set = _quantise(need, d)
        pressure[t] = p_set
        q_real = flow_for_pressure(p_set, head.nozzle, rh)
        v_real = q_real / area[t] if math.isfinite(q_real) else head.print_speed_mm_s
        if v_real <= 0:
            raise ConfigurationError(
                f"printhead {t}: {p_set:.1f} kPa does not make {head.bioink.name} flow "
                f"(yield stress); raise print_speed_mm_s or the pressure range"
            )
        if abs(v_real / head.print_speed_mm_s - 1) > 0.005:
            notes.append(
                f"printhead {t}: {p_set:.1f} kPa is the nearest the regulator can set to "
                f"{need:.1f} kPa; speed {head.print_speed_mm_s:g} → {v_real:.2f} mm/s keeps the strand width"
            )
        speed[t] = v_real

    # segments: every point except the last of its path starts one
    is_seg = np.ones(n_pts, np.bool_)
    if n_paths:
        is_seg[pstart[1:] - 1] = False
    seg_idx = np.flatnonzero(is_seg)
    seg_path = np.searchsorted(pstart, seg_idx, side="right") - 1
    seg_xy = np.hstack([xy[seg_idx], xy[seg_idx + 1]]) if len(seg_idx) else np.zeros((0, 4))
    seg_tool = p_tool[seg_path]
    seg_layer = p_layer[seg_path]
    d_vec = seg_xy[:, 2:] - seg_xy[:, :2]
    seg_len = np.hypot(d_vec[:, 0], d_vec[:, 1])
    scale = np.ones(len(seg_idx))
    if job.crossing_flow_factor < 1.0 and not isinstance(job.object, MeshObject):
        say("crossings")
        bounds = np.searchsorted(seg_layer, np.arange(len(layers) + 1))
        for k in range(1, len(layers)):
            a0, a1, b0 = bounds[k], bounds[k + 1], bounds[k - 1]
            if a1 > a0 and a0 > b0:
                width = float(np.mean([heads[t].strand_width_mm for t in used]))
                frac = crossing_fraction(seg_xy[a0:a1], seg_xy[b0:a0], width)
                scale[a0:a1] = 1.0 - frac * (1.0 - job.crossing_flow_factor)
    seg_speed = np.where(piston[seg_tool], speed[seg_tool], speed[seg_tool] / scale)
    first = seg_idx == pstart[seg_path]
    last = seg_idx + 2 == pstart[seg_path + 1]
    v_in, v_out = junction_speeds(d_vec, seg_speed, first, last)
    dep = deposition_kernel(
        seg_len,
        seg_speed,
        scale,
        seg_tool,
        v_in,
        v_out,
        area,
        k_,
        n_,
        ty,
        sections,
        nvol,
        syr_area,
        job.acceleration_mm_s2,
    )
    del d_vec, first, last, v_in, v_out, scale, seg_path  # a print's worth of G-code follows

    # droplets: one-point paths, deposited in place
    drop = np.diff(pstart) == 1
    p_dwell_ms = np.zeros(n_paths)
    p_drop_e = np.zeros(n_paths)
    p_drop_feed = np.zeros(n_paths)
    drop_vol = np.zeros(n_tools)
    drop_time = np.zeros(n_tools)
    if drop.any():
        vol = droplet_volume_ul  # µL = mm³
        q_t = area * speed
        for t in used:
            sel = drop & (p_tool == t)
            cnt = int(sel.sum())
            if not cnt:
                continue
            drop_vol[t] = vol * cnt
            drop_time[t] = vol / q_t[t] * cnt
            if piston[t]:
                p_drop_e[sel] = vol / syr_area[t]
                p_drop_feed[sel] = 60.0 * q_t[t] / syr_area[t]
            else:
                p_dwell_ms[sel] = 1000.0 * vol / q_t[t]

    say("G-code")
    seg_feed = np.zeros(n_pts)
    seg_feed[seg_idx] = np.round(seg_speed * 60.0)
    seg_e = np.zeros(n_pts)
    seg_e[seg_idx] = dep[:, 7]
    del is_seg, seg_idx, seg_speed  # per-point copies made: not kept while the G-code is formatted
    lead = np.zeros(n_tools)
    lag = np.zeros(n_tools)
    for t, head in heads.items():
        lead[t] = round(head.valve_lead_s * 1000.0)
        lag[t] = head.valve_lag_s * speed[t]
    table = LiteralTable(job.gcode_encoding)
    lit_select = np.full(n_tools, -1, np.int32)
    lit_open = np.full(n_tools, -1, np.int32)
    lit_close = np.full(n_tools, -1, np.int32)
    offsets = np.zeros((n_tools, 3))
    for d in profile.printheads:
        f = {"tool": d.tool}
        label = heads[d.tool].bioink.name if d.tool in heads else ""
        select = _template(d.select, **f)
        lit_select[d.tool] = table.add(f"; printhead {d.tool} {label}".rstrip() + "\n" + select)
        if d.kind == "pneumatic":
            assert d.valve_open is not None and d.valve_close is not None
            lit_open[d.tool] = table.add(_template(d.valve_open, **f))
            lit_close[d.tool] = table.add(_template(d.valve_close, **f))
        if job.apply_tool_offsets:
            offsets[d.tool] = d.offset_mm
    lyr_start = np.full(len(layers), -1, np.int32)
    lyr_end = np.full(len(layers), -1, np.int32)
    cure_time = 0.0
    cl = job.crosslinking
    for k, lp in enumerate(layers):
        lyr_start[k] = table.add(f"; layer {k + 1}/{len(layers)} z={lp.z:.3f}")
        if cl is not None and (k + 1) % cl.every_n_layers == 0:
            lines = [f"; crosslink after layer {k + 1}"]
            if cl.uv_seconds > 0:
                if profile.uv is None:
                    lines.append(
                        f"; no UV module in profile {profile.name}: expose {cl.uv_seconds:g} s by hand"
                    )
                    lines.append(f"M0 Crosslink: UV {cl.uv_seconds:g} s, then resume")
                else:
                    lines.append(
                        _template(
                            profile.uv.cure,
                            seconds=cl.uv_seconds,
                            ms=round(cl.uv_seconds * 1000),
                            intensity=cl.uv_intensity_percent,
                            module=profile.uv.module,
                            pwm=round(255 * cl.uv_intensity_percent / 100),
                        )
                    )
                    cure_time += cl.uv_seconds
            if cl.dwell_s > 0:
                lines.append(f"G4 P{round(cl.dwell_s * 1000)}")
                cure_time += cl.dwell_s
            lyr_end[k] = table.add("\n".join(lines))
    if cl is not None and cl.uv_seconds > 0 and profile.uv is None:
        warnings.append(
            f"profile {profile.name} has no UV module: the job pauses (M0) for manual curing"
        )
    lift = job.travel_lift_mm if job.travel_lift_mm is not None else profile.travel_lift_mm
    p_lift = _lift_flags(layers, xy, pstart, layer_pstart, job)
    inputs = EmitInputs(
        xy=xy,
        pstart=pstart,
        layer_pstart=layer_pstart,
        layer_z=layer_z,
        p_tool=p_tool,
        seg_feed=seg_feed,
        seg_e=seg_e,
        p_lag_mm=np.ascontiguousarray(lag[p_tool]),
        p_lead_ms=np.ascontiguousarray(lead[p_tool]),
        p_dwell_ms=np.round(p_dwell_ms),
        p_drop_e=p_drop_e,
        p_drop_feed=np.round(p_drop_feed),
        p_lift=p_lift,
        tool_piston=piston,
        tool_offset=offsets,
        lit_select=lit_select,
        lit_open=lit_open,
        lit_close=lit_close,
        layer_lit_start=lyr_start,
        layer_lit_end=lyr_end,
        lift_mm=lift,
        travel_feed=round(job.travel_speed_mm_s * 60),
        z_feed=_Z_FEED_MM_MIN,
    )
    body, _code, vals, travel, dwell_s = render_body(inputs, table)
    travel_s = travel.time_s
    # build-volume check on what the carriage will actually be asked to do
    bx, by, bz = profile.build_volume_mm
    outside = []
    for axis, hi, name in ((0, bx, "X"), (1, by, "Y"), (2, bz, "Z")):
        col = vals[:, axis]
        if len(col) and not np.isnan(col).all():
            lo_v, hi_v = float(np.nanmin(col)), float(np.nanmax(col))
            if lo_v < -1e-6 or hi_v > hi + 1e-6:
                outside.append(
                    f"{name} moves span {lo_v:.1f} to {hi_v:.1f} mm, outside the build volume "
                    f"0 to {hi:g} mm of printer {profile.name!r}"
                )
    if outside and not job.allow_outside_build_volume:
        raise ConfigurationError(
            "job leaves the build volume (move the object, or set allow_outside_build_volume "
            "= true if the printer can reach further)",
            problems=[f"object: {o}" for o in outside],
        )
    warnings.extend(outside)

    totals = []
    for t in used:
        head = heads[t]
        sel = seg_tool == t
        vol = float(dep[sel, 1].sum() + drop_vol[t])
        tw = float(dep[sel, 4].max()) if sel.any() else 0.0
        if not sel.any() and not piston[t]:
            tw = pressure_for_flow(
                area[t] * speed[t], head.nozzle, head.bioink.rheology
            ).wall_shear_pa
        flow = area[t] * speed[t]
        nf = pressure_for_flow(flow, head.nozzle, head.bioink.rheology)
        totals.append(
            PrintheadTotals(
                tool=t,
                bioink=head.bioink.name,
                kind="piston" if piston[t] else "pneumatic",
                strand_area_mm2=float(area[t]),
                speed_mm_s=float(speed[t]),
                flow_mm3_s=float(flow),
                pressure_kpa=pressure.get(t),
                e_per_mm3=1.0 / syr_area[t] if piston[t] else None,
                wall_shear_pa=max(tw, nf.wall_shear_pa),
                wall_shear_rate_1_s=nf.wall_shear_rate_1_s,
                residence_s=nf.residence_s,
                path_mm=float(seg_len[sel].sum()),
                volume_ul=vol,
                cells=vol * 1e-3 * head.bioink.cell_density_per_ml,
                time_s=float(dep[sel, 2].sum() + drop_time[t]),
            )
        )
        limit = head.bioink.shear_stress_limit_pa
        over = int((dep[sel, 4] > limit).sum())
        if over or (not sel.any() and tw > limit):
            warnings.append(
                f"printhead {t} ({head.bioink.name}): wall shear stress {max(tw, nf.wall_shear_pa):.0f} Pa "
                f"exceeds the bioink's limit {limit:.0f} Pa"
                + (f" on {over} of {int(sel.sum())} segments" if over else "")
            )
    total_time = float(dep[:, 2].sum()) + float(drop_time.sum()) + travel_s + dwell_s + cure_time
    header = _header(len(layers), job, profile, pressure, totals, total_time, warnings, travel)
    footer = _footer(profile, pressure, float(layer_z.max()) if len(layer_z) else 0.0, lift)
    if job.gcode_encoding == "ascii":
        header, footer = to_ascii(header), to_ascii(footer)
    text = body.decode(job.gcode_encoding)
    del body, _code, vals
    gcode = header + text + footer
    del text
    say("done")
    return ToolpathResult(
        job=job,
        profile=profile,
        layers=layers,
        seg_xy=seg_xy,
        seg_tool=seg_tool,
        seg_layer=seg_layer,
        deposition=dep,
        totals=totals,
        total_time_s=total_time,
        gcode=gcode,
        travel=travel,
        warnings=warnings,
        notes=notes,
        scaffold=scaffold,
        well_order=well_order,
    )


def _header(
    n_layers: int,
    job: PrintJob,
    profile: GcodeProfile,
    pressure: dict[int, float],
    totals: list[PrintheadTotals],
    total_time: float,
    warnings: list[str],
    travel: Travel,
) -> str:
    out = [
        f"; generated by labdevices {__version__} toolpath on {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}",
        f"; job: {job.name}",
        f"; batch: {job.batch_id or '-'}",
        f"; patient: {job.patient_id or '-'}",
        f"; printer profile: {profile.name}",
        f"; layers: {n_layers}, layer height {job.layer_height_mm} mm",
        f"; estimated time: {total_time:.0f} s",
        f"; travel: {travel.xy_mm / 1000:.2f} m XY, {travel.lift_z_mm / 1000:.2f} m Z lifts",
    ]
    for t in totals:
        out.append(
            f"; printhead {t.tool}: {t.bioink}, {t.volume_ul:.2f} uL, {t.cells:.3g} cells, "
            f"{t.speed_mm_s:.2f} mm/s"
            + (f", {t.pressure_kpa:.1f} kPa" if t.pressure_kpa is not None else "")
        )
    out += [f"; WARNING: {w}" for w in warnings]
    out += ["G21", "G90"]
    if any(t.kind == "piston" for t in totals):
        out.append("M83")
    if job.home:
        out.append("G28")
    if job.bed_temperature_c is not None:
        if profile.bed is None:
            out.append(f"; no bed temperature control in profile {profile.name}")
        else:
            out.append(_template(profile.bed.wait_temperature, celsius=job.bed_temperature_c))
    for head in job.printheads:
        d = profile.printhead(head.tool)
        if head.temperature_c is not None:
            if d.set_temperature is None:
                out.append(
                    f"; printhead {head.tool} has no temperature command: set {head.temperature_c:g} C by hand"
                )
            else:
                out.append(_template(d.set_temperature, tool=d.tool, celsius=head.temperature_c))
        if head.tool in pressure:
            kpa = pressure[head.tool]
            if d.set_pressure is None:
                out.append(f"; printhead {head.tool}: set the regulator to {kpa:.0f} kPa by hand")
                out.append(f"M0 Set printhead {head.tool} pressure to {kpa:.0f} kPa, then resume")
            else:
                out.append(_template(d.set_pressure, **_pressure_fields(kpa, d)))
    return "\n".join(out) + "\n"


def _footer(profile: GcodeProfile, pressure: dict[int, float], z_top: float, lift: float) -> str:
    out = ["; end"]
    for t in pressure:
        d = profile.printhead(t)
        if d.set_pressure is not None:
            out.append(_template(d.set_pressure, **_pressure_fields(0.0, d)))
    out.append(f"G0 Z{z_top + max(lift, 5.0):.3f} F{_Z_FEED_MM_MIN:.0f}")
    out.append("M400")
    return "\n".join(out) + "\n"


def _lift_flags(
    layers: list[LayerPaths],
    xy: F64,
    pstart: npt.NDArray[np.int64],
    layer_pstart: npt.NDArray[np.int64],
    job: PrintJob,
) -> npt.NDArray[np.bool_]:
    """Which travels lift: all, or (``travel_lift = "needed"``) those between islands of a layer,
    across an outer wall (over a hole) and longer than ``lift_above_travel_mm``. Paths of
    unknown island always lift."""
    n_paths = len(pstart) - 1
    lift = np.ones(n_paths, np.bool_)
    if job.travel_lift == "always" or n_paths == 0:
        return lift
    known = all(lp.island is not None for lp in layers)
    if not known:
        return lift
    island = np.concatenate([lp.island for lp in layers if lp.island is not None]).astype(np.int64)
    first_of_layer = np.zeros(n_paths, np.bool_)
    first_of_layer[layer_pstart[:-1][np.diff(layer_pstart) > 0]] = True
    start_pt = xy[pstart[:-1]]
    end_pt = xy[pstart[1:] - 1]
    d = np.full(n_paths, np.inf)
    d[1:] = np.hypot(*(start_pt[1:] - end_pt[:-1]).T)
    same_island = np.zeros(n_paths, np.bool_)
    same_island[1:] = island[1:] == island[:-1]
    lift = (d > job.lift_above_travel_mm) | (~same_island & ~first_of_layer)
    if all(lp.outer is not None for lp in layers):
        outer = np.concatenate([lp.outer for lp in layers if lp.outer is not None])
        lift |= travel_crossings(xy, pstart, layer_pstart, outer)
    lift[0] = True
    return lift


def _first_tool(job: PrintJob) -> int:
    return job.printheads[0].tool


def plan_job(
    job: PrintJob, profile: GcodeProfile | None = None, *, progress: Progress | None = None
) -> ToolpathResult:
    """Make the job's layers (scaffold, mesh or well plate) and plan them."""
    say = progress or (lambda _s: None)
    profile = profile or job_profile(job)
    obj = job.object
    say("layers")
    if isinstance(obj, ScaffoldObject):
        tool = (obj.layer_tools or obj.region_tools or [_first_tool(job)])[0]
        width = job.printhead(tool).strand_width_mm
        layers, info = scaffold_layers(obj, job.layer_height_mm, width, tool)
        return plan_layers(layers, job, profile, progress=progress, scaffold=info)
    if isinstance(obj, WellPlateObject):
        width = job.printhead(obj.tool).strand_width_mm
        layers, order = wellplate_layers(obj, job.layer_height_mm, width)
        return plan_layers(
            layers,
            job,
            profile,
            progress=progress,
            well_order=order,
            droplet_volume_ul=obj.droplet_volume_ul,
        )
    assert isinstance(obj, MeshObject)
    from ._mesh import slice_mesh

    width = job.printhead(obj.tool).strand_width_mm
    layers = slice_mesh(
        obj.path,
        job.layer_height_mm,
        width,
        obj.perimeters,
        obj.infill_spacing_mm,
        infill_angle_deg=obj.infill_angle_deg,
        tool=obj.tool,
        progress=lambda done, total: say(f"slicing layer {done}/{total}"),
        resolution_mm=obj.contour_resolution_mm,
    )
    _centre(layers, obj.offset_mm)
    return plan_layers(layers, job, profile, progress=progress)


def _centre(layers: list[LayerPaths], at: tuple[float, float]) -> None:
    pts = [lp.xy for lp in layers if len(lp.xy)]
    if not pts:
        return
    allp = np.concatenate(pts)
    shift = np.asarray(at) - 0.5 * (allp.min(axis=0) + allp.max(axis=0))
    for lp in layers:
        lp.xy = lp.xy + shift


def emit_gcode(layers: list[LayerPaths], profile: GcodeProfile, plan: PrintJob) -> str:
    """G-code text for ready layer paths (one ``str``, lines ending in ``\\n``).

    ``plan`` is a print job: its printheads, bioinks, speeds and layer height are
    used, its object is ignored (``default_job`` makes one for bare layers).
    """
    return plan_layers(layers, plan, profile).gcode

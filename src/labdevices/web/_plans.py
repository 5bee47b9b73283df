"""A job TOML uploaded on the printer page, planned before anything is submitted: its preview
picture, its deposition summary, and the exact G-code the confirm button will submit.

Planning uses the toolpath core's public API (``load_job``, ``plan_job``) with the printer's own
profile, as the daemon does for a job spec. A plan is kept in memory for the session that made
it, for a while, under a random token: confirming submits that G-code, byte for byte.
"""

from __future__ import annotations

import hashlib
import secrets
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import JsonValue

from ..errors import ConfigurationError, Forbidden

if TYPE_CHECKING:
    from ..profiles import GcodeProfile
    from ..toolpath import ToolpathResult

__all__ = ["Plan", "Plans", "plan_upload"]

#: an uploaded job file larger than this is refused (job files are a few kB; meshes are not
#: uploaded)
MAX_JOB_BYTES = 1_000_000
#: segments drawn per view; a larger plan is thinned evenly (the G-code is not)
_MAX_SEGMENTS = 6000
_COLOURS = ("#1f5fa8", "#b3261e", "#1e7a34", "#6d3fa0", "#8a4b00", "#00696f")


@dataclass(frozen=True)
class Plan:
    """A planned job waiting for its confirmation."""

    token: str
    session_id: str
    device: str
    filename: str
    gcode: str
    gcode_sha256: str
    #: ``jobs/submit`` arguments besides ``printer`` and ``gcode``
    args: dict[str, JsonValue]
    summary: dict[str, Any]
    warnings: list[str]
    notes: list[str]
    top_svg: str
    iso_svg: str
    created: float = field(default_factory=time.monotonic)


class Plans:
    """The plans waiting for confirmation: the newest ``size``, each for ``ttl_s`` at most."""

    def __init__(self, size: int = 32, ttl_s: float = 1800.0) -> None:
        self._plans: OrderedDict[str, Plan] = OrderedDict()
        self._size = size
        self._ttl_s = ttl_s

    def add(self, plan: Plan) -> None:
        self._plans[plan.token] = plan
        while len(self._plans) > self._size:
            self._plans.popitem(last=False)

    def take(self, token: str, session_id: str, device: str) -> Plan:
        """The plan of this session for this printer (removed: it is submitted once)."""
        plan = self._plans.get(token)
        if plan is None or time.monotonic() - plan.created > self._ttl_s:
            self._plans.pop(token, None)
            raise Forbidden("this plan has expired or was already submitted: plan the job again")
        if plan.session_id != session_id or plan.device != device:
            raise Forbidden("this plan was made in another session or for another printer")
        del self._plans[token]
        return plan


def plan_upload(
    data: bytes, filename: str, profile: GcodeProfile, device: str, session_id: str
) -> Plan:
    """Plan an uploaded job file for ``device`` (CPU work: call it on a worker thread).

    ``ConfigurationError`` names the file and each bad field, as ``labdevices toolpath`` does.
    """
    from ..toolpath import load_job, plan_job

    name = PurePath(filename or "job.toml").name or "job.toml"
    if not name.lower().endswith((".toml", ".json")):
        raise ConfigurationError(f"{name}: a job file is TOML (.toml) or JSON (.json)", file=name)
    if len(data) > MAX_JOB_BYTES:
        raise ConfigurationError(
            f"{name}: {len(data)} bytes is too large for a job file (at most {MAX_JOB_BYTES})",
            file=name,
        )
    with tempfile.TemporaryDirectory(prefix="labdevices-plan-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            job = load_job(path)
        except ConfigurationError as exc:
            raise _named(exc, f"{tmp}/", name) from None
    if job.object.type == "mesh":
        raise ConfigurationError(
            f"{name}: object.type: a mesh job needs its mesh file beside it; plan it with "
            "`labdevices toolpath` and submit the G-code",
            file=name,
        )
    if job.printer not in (profile.name, profile.name.removesuffix(".toml")):
        raise ConfigurationError(
            f"{name}: printer: the job is planned for {job.printer!r}, but printer {device!r} "
            f"is a {profile.name!r}",
            file=name,
        )
    try:
        result = plan_job(job, profile)
    except ConfigurationError as exc:
        raise _named(exc, "", name) from None
    gcode = result.gcode
    args: dict[str, JsonValue] = {
        "name": job.name,
        "allow_pauses": True,  # crosslinking pauses are the planner's own, as for a job spec
        "bioinks": [
            {
                "tool": p.tool,
                "name": p.bioink.name,
                "lot": p.bioink.lot,
                "cell_density_per_ml": p.bioink.cell_density_per_ml,
            }
            for p in job.printheads
        ],
    }
    if job.batch_id:
        args["batch_id"] = job.batch_id
    if job.patient_id:
        args["patient_id"] = job.patient_id
    return Plan(
        token=secrets.token_urlsafe(16),
        session_id=session_id,
        device=device,
        filename=name,
        gcode=gcode,
        gcode_sha256=hashlib.sha256(gcode.encode()).hexdigest(),
        args=args,
        summary=_summary(result),
        warnings=list(result.warnings),
        notes=list(result.notes),
        top_svg=_top_view(result),
        iso_svg=_iso_view(result),
    )


def _named(exc: ConfigurationError, prefix: str, name: str) -> ConfigurationError:
    """The error with the temporary folder taken out of its file names."""

    def strip(text: str) -> str:
        return text.replace(prefix, "") if prefix else text

    message = strip(exc.message.split("\n", 1)[0])
    return ConfigurationError(message, file=name, problems=[strip(p) for p in exc.problems])


def _summary(result: ToolpathResult) -> dict[str, Any]:
    job = result.job
    return {
        "name": job.name,
        "printer": job.printer,
        "batch_id": job.batch_id,
        "patient_id": job.patient_id,
        "layers": len(result.layers),
        "strands": sum(lp.n_paths for lp in result.layers),
        "volume_ul": result.volume_ul,
        "time_s": result.total_time_s,
        "gcode_lines": result.gcode.count("\n") + 1,
        "printheads": [
            {
                "tool": t.tool,
                "bioink": t.bioink,
                "kind": t.kind,
                "pressure_kpa": t.pressure_kpa,
                "speed_mm_s": t.speed_mm_s,
                "flow_ul_s": t.flow_mm3_s,
                "wall_shear_pa": t.wall_shear_pa,
                "volume_ul": t.volume_ul,
                "cells": t.cells,
            }
            for t in result.totals
        ],
    }


def _svg(lines: np.ndarray[Any, Any], tools: np.ndarray[Any, Any], label: str) -> str:
    """Segments (N, 4) as one small SVG, thinned evenly beyond ``_MAX_SEGMENTS``."""
    if len(lines) > _MAX_SEGMENTS:
        pick = np.linspace(0, len(lines) - 1, _MAX_SEGMENTS).astype(np.int64)
        lines, tools = lines[pick], tools[pick]
    if len(lines) == 0:
        return f'<svg viewBox="0 0 10 10" role="img" aria-label="{label}: nothing to print"></svg>'
    xs, ys = lines[:, [0, 2]], lines[:, [1, 3]]
    x0, x1, y0, y1 = float(xs.min()), float(xs.max()), float(ys.min()), float(ys.max())
    pad = 0.04 * max(x1 - x0, y1 - y0, 1.0)
    width, height = x1 - x0 + 2 * pad, y1 - y0 + 2 * pad
    stroke = max(width, height) / 300
    paths = []
    for tool in np.unique(tools):
        sel = lines[tools == tool]
        # y grows upwards on the bed, downwards in SVG
        d = " ".join(
            f"M{a - x0 + pad:.2f} {y1 + pad - b:.2f}L{c - x0 + pad:.2f} {y1 + pad - e:.2f}"
            for a, b, c, e in sel.tolist()
        )
        colour = _COLOURS[int(tool) % len(_COLOURS)]
        paths.append(f'<path d="{d}" stroke="{colour}" stroke-width="{stroke:.3f}" fill="none"/>')
    return (
        f'<svg viewBox="0 0 {width:.2f} {height:.2f}" role="img" aria-label="{label}">'
        + "".join(paths)
        + "</svg>"
    )


def _top_view(result: ToolpathResult) -> str:
    if not result.layers:
        return _svg(np.zeros((0, 4)), np.zeros(0, np.int32), "top layer")
    top = len(result.layers) - 1
    sel = result.seg_layer == top
    return _svg(
        result.seg_xy[sel],
        result.seg_tool[sel],
        f"layer {top + 1} of {len(result.layers)} from above",
    )


def _iso_view(result: ToolpathResult) -> str:
    """All layers, isometric: x' = (x − y)·cos 30°, y' = (x + y)·sin 30° + z."""
    seg = result.seg_xy
    z = np.array([lp.z for lp in result.layers]) if result.layers else np.zeros(1)
    zz = z[result.seg_layer] if len(seg) else np.zeros(0)
    c30, s30 = np.cos(np.pi / 6), 0.5
    iso = np.column_stack(
        [
            (seg[:, 0] - seg[:, 1]) * c30,
            (seg[:, 0] + seg[:, 1]) * s30 + zz,
            (seg[:, 2] - seg[:, 3]) * c30,
            (seg[:, 2] + seg[:, 3]) * s30 + zz,
        ]
    )
    return _svg(iso, result.seg_tool, f"all {len(result.layers)} layers, isometric view")

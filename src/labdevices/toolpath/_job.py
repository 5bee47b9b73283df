"""The print job: what to print, with which bioinks and printheads — a pydantic model loaded from TOML or JSON.

``load_job(path)`` validates a job file and checks it against its printer profile;
every problem is reported naming the file and the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from ..errors import ConfigurationError
from ..files import StrictModel, load_toml, validate
from ..profiles import GcodeProfile, load_profile

__all__ = [
    "Bioink",
    "Crosslinking",
    "MeshObject",
    "Nozzle",
    "PrintJob",
    "Printhead",
    "Rheology",
    "ScaffoldObject",
    "WellPlateObject",
    "default_job",
    "job_profile",
    "load_job",
]


# Mesh contours: points closer than this to the simplified outline are dropped. Chosen from
# accuracy against time on the benchmark corpus (benchmarks/slicing/RESULTS.md): against
# 0.002 mm it saves up to 0.6 s on a 330k-triangle sphere; outer walls stay within 0.37 %
# of the exact section on every layer of every mesh but the sub-millimetre layers of
# 2 mm spheres (1.5 %; 0.15 % over the whole part).
CONTOUR_RESOLUTION_MM = 0.005


class Rheology(StrictModel):
    """Herschel–Bulkley fluid τ = τy + K·γ̇ⁿ (τy = 0: power law; n = 1, τy = 0: Newtonian)."""

    consistency_pa_sn: float = Field(gt=0, description="K, consistency index [Pa·sⁿ]")
    flow_index: float = Field(gt=0, le=2, description="n, flow behaviour index (<1 shear thinning)")
    yield_stress_pa: float = Field(default=0.0, ge=0, description="τy [Pa]")


class Bioink(StrictModel):
    """A bioink: rheology, cells, and the wall shear stress above which cells suffer."""

    name: str = Field(min_length=1)
    lot: str | None = Field(
        default=None, min_length=1, description="the bioink's lot (batch record, GMP)"
    )
    rheology: Rheology
    cell_density_per_ml: float = Field(default=0.0, ge=0, description="cells per mL")
    # Blaeser et al. 2016 (Adv. Healthc. Mater. 5, 326) report viability falling above ~5 kPa.
    shear_stress_limit_pa: float = Field(
        default=5000.0, gt=0, description="wall shear stress limit [Pa]"
    )


class Nozzle(StrictModel):
    """Nozzle geometry. ``needle``: a cylindrical needle; ``conical``: a tapered tip
    from ``inlet_diameter_mm`` down to ``inner_diameter_mm`` over ``length_mm``,
    optionally followed by a straight outlet of ``outlet_length_mm``.

    ``syringe_diameter_mm`` and ``ink_column_mm`` (height of bioink in the barrel)
    add the barrel's own pressure drop.
    """

    kind: Literal["needle", "conical"] = "needle"
    inner_diameter_mm: float = Field(gt=0, description="outlet inner diameter [mm]")
    length_mm: float = Field(
        gt=0, description="needle length, or taper length of a conical tip [mm]"
    )
    inlet_diameter_mm: float | None = Field(
        default=None, gt=0, description="conical tip inlet [mm]"
    )
    outlet_length_mm: float = Field(
        default=0.0, ge=0, description="straight outlet after the taper [mm]"
    )
    syringe_diameter_mm: float = Field(default=9.6, gt=0, description="barrel inner diameter [mm]")
    ink_column_mm: float = Field(default=0.0, ge=0, description="bioink height in the barrel [mm]")

    @model_validator(mode="after")
    def _conical_needs_inlet(self) -> Nozzle:
        if self.kind == "conical":
            if self.inlet_diameter_mm is None:
                raise ValueError("a conical nozzle needs inlet_diameter_mm")
            if self.inlet_diameter_mm <= self.inner_diameter_mm:
                raise ValueError("inlet_diameter_mm must be larger than inner_diameter_mm")
        return self


class Printhead(StrictModel):
    """One printhead of the job: which tool of the printer, loaded with which bioink, printing how."""

    tool: int = Field(default=0, ge=0, description="printhead (tool) number in the printer profile")
    bioink: Bioink
    nozzle: Nozzle
    strand_width_mm: float = Field(gt=0, description="target strand width [mm]")
    print_speed_mm_s: float = Field(gt=0, le=200, description="print speed [mm/s]")
    temperature_c: float | None = Field(default=None, description="printhead temperature [°C]")
    valve_lead_s: float = Field(
        default=0.0, ge=0, le=5, description="dwell after opening the valve, before moving [s]"
    )
    valve_lag_s: float = Field(
        default=0.0, ge=0, le=5, description="close the valve this long before a strand ends [s]"
    )


class Crosslinking(StrictModel):
    """Crosslink every N layers: a UV exposure and/or a dwell (ionic or thermal gelation)."""

    every_n_layers: int = Field(default=1, ge=1)
    uv_seconds: float = Field(default=0.0, ge=0)
    uv_intensity_percent: float = Field(default=100.0, gt=0, le=100)
    dwell_s: float = Field(default=0.0, ge=0, description="pause without UV [s]")


class ScaffoldObject(StrictModel):
    """A parametric lattice scaffold: rectangle, disc or annulus, stacked strand layers."""

    type: Literal["scaffold"]
    shape: Literal["rectangle", "disc", "annulus"] = "rectangle"
    center_mm: tuple[float, float] = (50.0, 40.0)
    size_mm: tuple[float, float] | None = Field(default=None, description="rectangle (x, y) [mm]")
    diameter_mm: float | None = Field(default=None, gt=0, description="disc or annulus outer [mm]")
    inner_diameter_mm: float | None = Field(default=None, gt=0, description="annulus hole [mm]")
    layers: int = Field(ge=1, le=10000)
    strand_spacing_mm: float | None = Field(
        default=None, gt=0, description="centre-to-centre strand distance [mm]"
    )
    porosity: float | None = Field(
        default=None, gt=0, lt=1, description="target in-plane porosity (instead of spacing)"
    )
    angles_deg: list[float] = Field(default_factory=lambda: [0.0, 90.0], min_length=1)
    layer_offset_mm: float = Field(
        default=0.0, description="shift of the strands each time an angle repeats [mm]"
    )
    perimeters: int = Field(default=0, ge=0, le=20)
    layer_tools: list[int] | None = Field(
        default=None, min_length=1, description="printhead per layer, cycled"
    )
    region_tools: list[int] | None = Field(
        default=None, min_length=1, description="printhead per band along X (equal widths)"
    )
    continuous: bool = Field(default=True, description="link adjacent strands into one path")

    @model_validator(mode="after")
    def _geometry(self) -> ScaffoldObject:
        if self.shape == "rectangle" and self.size_mm is None:
            raise ValueError("a rectangle scaffold needs size_mm")
        if self.shape in ("disc", "annulus") and self.diameter_mm is None:
            raise ValueError(f"a {self.shape} scaffold needs diameter_mm")
        if self.shape == "annulus":
            if self.inner_diameter_mm is None:
                raise ValueError("an annulus scaffold needs inner_diameter_mm")
            assert self.diameter_mm is not None
            if self.inner_diameter_mm >= self.diameter_mm:
                raise ValueError("inner_diameter_mm must be smaller than diameter_mm")
        if (self.strand_spacing_mm is None) == (self.porosity is None):
            raise ValueError("give exactly one of strand_spacing_mm and porosity")
        if self.layer_tools is not None and self.region_tools is not None:
            raise ValueError("give layer_tools or region_tools, not both")
        return self


class MeshObject(StrictModel):
    """An STL mesh sliced into perimeters and rectilinear infill."""

    type: Literal["mesh"]
    path: Path = Field(description="STL file, relative to the job file")
    perimeters: int = Field(default=2, ge=0, le=20)
    infill_spacing_mm: float = Field(
        gt=0, description="distance between infill lines, at least the strand width [mm]"
    )
    contour_resolution_mm: float = Field(
        default=CONTOUR_RESOLUTION_MM,
        ge=0,
        le=0.1,
        description="contour points closer than this to the simplified outline are dropped "
        "(0 keeps every point) [mm]",
    )
    infill_angle_deg: float = 45.0
    offset_mm: tuple[float, float] = Field(
        default=(50.0, 40.0), description="where the mesh's XY centre lands on the bed [mm]"
    )
    tool: int = Field(default=0, ge=0)


class WellPlateObject(StrictModel):
    """A pattern printed into every chosen well of a standard (ANSI/SLAS) plate."""

    type: Literal["wellplate"]
    format: Literal[6, 12, 24, 48, 96, 384] = 96
    pattern: Literal["disc", "droplet", "lattice"] = "disc"
    wells: list[str] | None = Field(default=None, description="e.g. ['A1', 'B3']; default all")
    origin_mm: tuple[float, float] = Field(
        default=(0.0, 0.0), description="bed position of the plate's min-X, min-Y corner [mm]"
    )
    fill_fraction: float = Field(
        default=0.8, gt=0, le=1, description="pattern diameter / well diameter"
    )
    layers: int = Field(default=1, ge=1, le=1000)
    droplet_volume_ul: float = Field(default=1.0, gt=0, description="droplet pattern [µL]")
    lattice_spacing_mm: float | None = Field(default=None, gt=0)
    tool: int = Field(default=0, ge=0)


PrintObject = Annotated[ScaffoldObject | MeshObject | WellPlateObject, Field(discriminator="type")]


class PrintJob(StrictModel):
    """A print job: printer, printheads with their bioinks, layers, and the object."""

    name: str = "job"
    printer: str = Field(min_length=1, description="printer profile name or path")
    batch_id: str = ""
    patient_id: str = ""
    printheads: list[Printhead] = Field(min_length=1)
    layer_height_mm: float = Field(gt=0, le=5)
    bed_temperature_c: float | None = None
    crosslinking: Crosslinking | None = None
    acceleration_mm_s2: float = Field(default=500.0, gt=0)
    travel_speed_mm_s: float = Field(default=30.0, gt=0, le=500)
    travel_lift_mm: float | None = Field(default=None, ge=0, description="default: the profile's")
    travel_lift: Literal["always", "needed"] = Field(
        default="needed",
        description="lift for every travel, or only where needed: mesh jobs lift for travels "
        "between islands of a layer, across an outer wall (over a hole) and longer than "
        "lift_above_travel_mm; scaffold and "
        "well-plate travels always lift (they cross printed strands or well walls)",
    )
    lift_above_travel_mm: float = Field(
        default=5.0, ge=0, description="travels longer than this lift the nozzle [mm]"
    )
    allow_outside_build_volume: bool = Field(
        default=False,
        description="plan moves outside the printer's build volume (a warning instead of an error)",
    )
    gcode_encoding: Literal["ascii", "utf-8"] = Field(
        default="ascii",
        description="G-code text encoding; 'ascii' transliterates names and comments (ü → u, µ → u)",
    )
    apply_tool_offsets: bool = Field(
        default=True,
        description="shift coordinates by each printhead's profile offset (firmware does not)",
    )
    home: bool = Field(default=True, description="home the axes (G28) before printing")
    crossing_flow_factor: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="flow where a strand crosses the layer below (1 = no compensation)",
    )
    object: PrintObject

    @model_validator(mode="after")
    def _tools(self) -> PrintJob:
        tools = [p.tool for p in self.printheads]
        if len(set(tools)) != len(tools):
            raise ValueError(f"printhead tools must be unique, got {tools}")
        for i, head in enumerate(self.printheads):
            if self.layer_height_mm > head.strand_width_mm:
                raise ValueError(
                    f"layer_height_mm {self.layer_height_mm:g} mm is taller than "
                    f"printheads[{i}].strand_width_mm {head.strand_width_mm:g} mm: a strand "
                    "cannot stand taller than it is wide (lower the layer height)"
                )
        obj = self.object
        if isinstance(obj, MeshObject) and obj.tool in tools:
            w = self.printhead(obj.tool).strand_width_mm
            if obj.infill_spacing_mm < w:
                raise ValueError(
                    f"object.infill_spacing_mm {obj.infill_spacing_mm:g} mm is below the strand "
                    f"width {w:g} mm of printhead {obj.tool} (at the strand width the infill is solid)"
                )
        return self

    def printhead(self, tool: int) -> Printhead:
        for p in self.printheads:
            if p.tool == tool:
                return p
        raise KeyError(tool)


def _used_tools(job: PrintJob) -> list[tuple[str, int]]:
    obj = job.object
    if isinstance(obj, ScaffoldObject):
        fld = "layer_tools" if obj.layer_tools is not None else "region_tools"
        tools = obj.layer_tools or obj.region_tools or [job.printheads[0].tool]
        return [(f"object.{fld}[{i}]", t) for i, t in enumerate(tools)]
    return [("object.tool", obj.tool)]


def job_profile(job: PrintJob, source: str = "job") -> GcodeProfile:
    """The job's printer profile, checked against the job: every tool must exist there."""
    try:
        profile = load_profile(job.printer)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"{source}: printer: {exc.message}", file=source, problems=exc.problems
        ) from exc
    if not isinstance(profile, GcodeProfile):
        raise ConfigurationError(
            f"{source}: printer: {job.printer!r} is a {profile.driver} profile, not a G-code printer",
            file=source,
        )
    known = {p.tool for p in profile.printheads}
    problems = []
    for i, head in enumerate(job.printheads):
        if head.tool not in known:
            problems.append(
                f"{source}: printheads[{i}].tool: printer {profile.name!r} has no tool {head.tool} "
                f"(has {sorted(known)})"
            )
        elif head.temperature_c is not None:
            d = profile.printhead(head.tool)
            lo, hi = d.temperature_min_c, d.temperature_max_c
            if lo is not None and hi is not None and not lo <= head.temperature_c <= hi:
                problems.append(
                    f"{source}: printheads[{i}].temperature_c: {head.temperature_c} °C is outside "
                    f"{lo}–{hi} °C"
                )
    job_tools = {p.tool for p in job.printheads}
    for field, tool in _used_tools(job):
        if tool not in job_tools:
            problems.append(f"{source}: {field}: no printhead with tool {tool} in this job")
    if job.bed_temperature_c is not None and profile.bed is not None:
        b = profile.bed
        if not b.temperature_min_c <= job.bed_temperature_c <= b.temperature_max_c:
            problems.append(
                f"{source}: bed_temperature_c: {job.bed_temperature_c} °C is outside "
                f"{b.temperature_min_c}–{b.temperature_max_c} °C"
            )
    if problems:
        raise ConfigurationError(
            f"{source}: {len(problems)} problem(s)", file=source, problems=problems
        )
    return profile


def load_job(path: str | Path) -> PrintJob:
    """Load a job from TOML or JSON; mesh paths are resolved relative to the job file."""
    p = Path(path)
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigurationError(f"{p}: file not found", file=str(p)) from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigurationError(f"{p}: not valid JSON: {exc}", file=str(p)) from exc
    else:
        data = load_toml(p)
    if not isinstance(data, dict):
        raise ConfigurationError(f"{p}: a job must be a table/object", file=str(p))
    obj = data.get("object")
    if isinstance(obj, dict) and obj.get("type") == "mesh" and isinstance(obj.get("path"), str):
        mesh = Path(obj["path"])
        if not mesh.is_absolute():
            obj["path"] = str(p.parent / mesh)
    try:
        job = validate(PrintJob, data, str(p))
    except ConfigurationError as exc:
        # the printer too, in the same pass (its other checks need a valid job)
        printer = data.get("printer")
        if isinstance(printer, str) and printer:
            try:
                load_profile(printer)
            except ConfigurationError as bad:
                problems = [*exc.problems, f"{p}: printer: {bad.message}"]
                raise ConfigurationError(
                    f"{p}: {len(problems)} problem(s)", file=str(p), problems=problems
                ) from exc
        raise
    job_profile(job, str(p))
    return job


def default_job(
    layer_height_mm: float,
    strand_width_mm: float,
    *,
    printer: str = "marlin-pneumatic",
    print_speed_mm_s: float = 10.0,
    rheology: Rheology | None = None,
    nozzle_diameter_mm: float | None = None,
) -> PrintJob:
    """A one-printhead job for layer paths made elsewhere (a sliced mesh, a benchmark).

    The bioink defaults to a gentle power-law hydrogel (K = 30 Pa·sⁿ, n = 0.45) and
    the needle to the strand width; the object is a placeholder ``emit_gcode`` ignores.
    """
    return PrintJob(
        name="layers",
        printer=printer,
        layer_height_mm=layer_height_mm,
        home=False,
        printheads=[
            Printhead(
                tool=0,
                strand_width_mm=strand_width_mm,
                print_speed_mm_s=print_speed_mm_s,
                bioink=Bioink(
                    name="bioink",
                    rheology=rheology or Rheology(consistency_pa_sn=30.0, flow_index=0.45),
                ),
                nozzle=Nozzle(
                    inner_diameter_mm=nozzle_diameter_mm or strand_width_mm, length_mm=12.7
                ),
            )
        ],
        object=MeshObject(type="mesh", path=Path("-"), infill_spacing_mm=5 * strand_width_mm),
    )

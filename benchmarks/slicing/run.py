"""Slicing benchmark: `labdevices toolpath` (what users run) against PrusaSlicer and CuraEngine on a corpus.

Run ``benchmarks/slicing/setup.sh`` once (installs the slicers), then
``.venv/bin/python benchmarks/slicing/run.py``. Every slicer runs as its own process
under GNU time (wall time, peak RSS), interleaved; labdevices is the `labdevices
toolpath JOB.toml -o out.gcode` command with the job's defaults. Each G-code is then
read back: layers, XY travel, Z lifts, estimated print time, and the area inside
the outer walls against the mesh's exact cross-section. Writes RESULTS.md beside this file.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyclipper
import trimesh

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import gcode_stats  # noqa: E402
import meshes  # noqa: E402

LAYER = 0.2
WIDTH = 0.4
PERIMETERS = 2
DENSITY = 0.2
# PrusaSlicer spaces infill lines at the flow spacing w - h(1 - pi/4), divided by the density;
# everyone gets that spacing
SPACING = (WIDTH - LAYER * (1 - math.pi / 4)) / DENSITY
BED = 200.0  # marlin-pneumatic's bed; every slicer centres the part on it
LABDEVICES = str(Path(sys.executable).parent / "labdevices")

JOB = """name = "{name}"
printer = "marlin-pneumatic"
layer_height_mm = {layer}
home = false

[[printheads]]
tool = 0
strand_width_mm = {width}
print_speed_mm_s = 10.0
bioink = {{ name = "hydrogel", rheology = {{ consistency_pa_sn = 30.0, flow_index = 0.45 }} }}
nozzle = {{ inner_diameter_mm = {width}, length_mm = 12.7 }}

[object]
type = "mesh"
path = "{mesh}"
perimeters = {perimeters}
infill_spacing_mm = {spacing:.4f}
infill_angle_deg = 45.0
offset_mm = [{centre}, {centre}]
"""


def write_job(mesh: Path, job: Path, extra: str = "") -> Path:
    job.write_text(
        JOB.format(
            name=mesh.stem, layer=LAYER, width=WIDTH, mesh=mesh, perimeters=PERIMETERS,
            spacing=SPACING, centre=BED / 2,
        ) + extra
    )  # fmt: skip
    return job


def prusa_cmd(mesh: Path, out: Path) -> list[str]:
    return [
        "prusa-slicer", "--export-gcode", "--output", str(out),
        "--layer-height", str(LAYER), "--first-layer-height", str(LAYER),
        "--perimeters", str(PERIMETERS), "--fill-density", f"{DENSITY:.0%}",
        "--fill-pattern", "rectilinear", "--fill-angle", "45",
        "--top-solid-layers", "0", "--bottom-solid-layers", "0",
        "--skirts", "0", "--brim-width", "0", "--no-avoid-crossing-perimeters",
        "--nozzle-diameter", str(WIDTH), "--extrusion-width", str(WIDTH),
        "--first-layer-extrusion-width", str(WIDTH),
        "--no-thin-walls", "--no-gap-fill-enabled", "--solid-infill-below-area", "0",
        "--no-ensure-vertical-shell-thickness", "--no-overhangs", "--no-extra-perimeters",
        "--perimeter-generator", "classic",
        "--bed-shape", f"0x0,{BED:g}x0,{BED:g}x{BED:g},0x{BED:g}", "--center", f"{BED / 2:g},{BED / 2:g}",
        str(mesh),
    ]  # fmt: skip


def cura_cmd(mesh: Path, out: Path, definitions: Path) -> list[str]:
    settings = {
        "layer_height": LAYER, "layer_height_0": LAYER, "infill_sparse_thickness": LAYER,
        "machine_nozzle_size": WIDTH, "line_width": WIDTH, "wall_line_width": WIDTH,
        "wall_line_width_0": WIDTH, "wall_line_width_x": WIDTH, "infill_line_width": WIDTH,
        "wall_line_count": PERIMETERS, "infill_pattern": "lines",
        "infill_sparse_density": int(DENSITY * 100),
        # CuraEngine ignores the density on the command line: the distance decides
        "infill_line_distance": round(SPACING, 4), "zig_zaggify_infill": "true",
        "top_layers": 0, "bottom_layers": 0, "initial_bottom_layers": 0,
        "top_bottom_thickness": 0, "adhesion_type": "none", "support_enable": "false",
        "retraction_combing": "off", "travel_avoid_other_parts": "false",
        "fill_outline_gaps": "false", "infill_wipe_dist": 0, "wall_0_wipe_dist": 0,
        # CuraEngine centres a mesh at the bed's centre itself: no mesh_position offset
        "machine_width": BED, "machine_depth": BED, "machine_height": 300,
        "machine_center_is_zero": "false",
    }  # fmt: skip
    cmd = ["CuraEngine", "slice", "-j", str(definitions / "fdmprinter.def.json")]
    for k, v in settings.items():
        cmd += ["-s", f"{k}={v}"]
    return [*cmd, "-e0", "-s", f"machine_nozzle_size={WIDTH}", "-l", str(mesh), "-o", str(out)]


def labdevices_cmd(job: Path, out: Path) -> list[str]:
    return [LABDEVICES, "toolpath", str(job), "-o", str(out)]


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """Run under GNU time: (wall s, cpu s, peak RSS MB)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        proc = subprocess.run(
            ["/usr/bin/time", "-v", "-o", tf.name, *cmd],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            check=False,
        )
        report = tf.read()
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", report)
    assert wall is not None
    h, m, s = wall.groups()
    seconds = int(h or 0) * 3600 + int(m) * 60 + float(s)
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", report).group(1))  # type: ignore[union-attr]
    sys_ = float(re.search(r"System time \(seconds\): ([\d.]+)", report).group(1))  # type: ignore[union-attr]
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", report).group(1))  # type: ignore[union-attr]
    return seconds, user + sys_, rss / 1024


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def versions() -> str:
    def first(cmd: list[str], pattern: str) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except OSError:
            return "?"
        m = re.search(pattern, out.stdout + out.stderr)
        return m.group(0) if m else "?"

    import numba

    return ", ".join(
        [
            first(["prusa-slicer", "--help"], r"PrusaSlicer-[\w.+]+"),
            "CuraEngine " + first(["CuraEngine", "help"], r"\d+\.\d+\.\d+"),
            f"numba {numba.__version__}",
        ]
    )


def exact_areas(mesh_path: Path, n_layers: int) -> np.ndarray:
    """Net cross-section area of the mesh at every slicing plane (mid-layer), from trimesh's
    plane intersection: each segment oriented by its face's normal, then the shoelace sum."""
    mesh = trimesh.load_mesh(mesh_path, process=True)
    z0 = float(mesh.bounds[0, 2])
    out = np.zeros(n_layers)
    for k in range(n_layers):
        segs, faces = trimesh.intersections.mesh_plane(
            mesh, [0, 0, 1], [0, 0, z0 + (k + 0.5) * LAYER], return_faces=True
        )
        if len(segs) == 0:
            continue
        a, b = segs[:, 0, :2], segs[:, 1, :2]
        d = b - a
        nrm = mesh.face_normals[faces][:, :2]
        flip = d[:, 1] * nrm[:, 0] - d[:, 0] * nrm[:, 1] < 0  # outward normal on the right
        a2 = np.where(flip[:, None], b, a)
        b2 = np.where(flip[:, None], a, b)
        out[k] = 0.5 * float(np.sum(a2[:, 0] * b2[:, 1] - b2[:, 0] * a2[:, 1]))
    return out


def wall_area(loops: list[np.ndarray]) -> float:
    """Area the outer walls enclose, out to their outer edge: the loops' even-odd union
    (which tells holes from outlines whatever their direction), offset out by half a width."""
    scale = 1e5
    paths = [np.round(np.asarray(lp) * scale).astype(np.int64) for lp in loops if len(lp) >= 3]
    if not paths:
        return 0.0
    c = pyclipper.Pyclipper()
    c.AddPaths(paths, pyclipper.PT_SUBJECT, True)
    solid = c.Execute(pyclipper.CT_UNION, pyclipper.PFT_EVENODD, pyclipper.PFT_EVENODD)
    off = pyclipper.PyclipperOffset(arc_tolerance=0.001 * scale)
    off.AddPaths(solid, pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    grown = off.Execute(WIDTH / 2 * scale)
    return sum(pyclipper.Area(p) for p in grown) / scale**2


def labdevices_wall_loops(mesh: Path, resolution: float | None) -> list[list[np.ndarray]]:
    """labdevices' outer walls, from the function `labdevices toolpath` slices with."""
    from labdevices.toolpath._job import CONTOUR_RESOLUTION_MM
    from labdevices.toolpath._mesh import slice_mesh_walls

    layers, outer = slice_mesh_walls(
        mesh, LAYER, WIDTH, PERIMETERS, SPACING,
        resolution_mm=CONTOUR_RESOLUTION_MM if resolution is None else resolution,
    )  # fmt: skip
    return [[lp.path(i) for i in np.flatnonzero(o)] for lp, o in zip(layers, outer, strict=True)]


def area_errors(loops: list[list[np.ndarray]], exact: np.ndarray) -> tuple[float, float]:
    """(largest per-layer |error| over layers of at least 1 mm², whole-part |error| / area)."""
    walls = np.array([wall_area(lp) for lp in loops[: len(exact)]])
    walls = np.pad(walls, (0, len(exact) - len(walls)))
    sel = exact >= 1.0
    per_layer = np.abs(walls[sel] / exact[sel] - 1)
    return float(per_layer.max(initial=0.0)), float(np.abs(walls - exact).sum() / exact.sum())


NOTES = """
Notes:
- Every figure is from the command a user runs: `labdevices toolpath JOB.toml -o out.gcode`
  with a mesh job's defaults (contour resolution, travel ordering, lifts), a fresh process
  each time under GNU time, interpreter start and exit included. Its G-code carries the
  deposition physics (pressure, valve commands) the slicers do not compute.
- XY travel and Z lifts are read back from each G-code the same way (moves that deposit
  nothing; Z lifts: every Z move beyond the rise from layer to layer). Print time is each
  program's own estimate: labdevices' includes its 10 mm/s Z lifts and 10 mm/s printing
  speed of a bioink, the slicers' FDM speeds; compare travel rather than time across programs.
- Outer-wall area: the area inside the outer walls' outer edge (the loops' even-odd union
  grown by half a line width), against the mesh's exact cross-section at the same height
  (trimesh plane intersection); largest error over layers of at least 1 mm², and the error
  summed over all layers relative to the part's summed area. labdevices' walls come from
  `slice_mesh_walls`, the function `labdevices toolpath` slices with; the slicers' from
  their G-code (`;TYPE:` outer walls).
- PrusaSlicer runs the classic perimeter generator (not Arachne), CuraEngine and PrusaSlicer
  centre the part on a 200 mm bed, as labdevices does (deposited X range shown).
- The corpus is generated by `meshes.py` (not committed; the project's licence).
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--work",
        type=Path,
        default=Path(os.environ.get("SLICING_BENCH_DIR", "/tmp/labdevices-bench-slicing")),
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--meshes", default=",".join(meshes.CORPUS), help="comma-separated names")
    ap.add_argument(
        "--resolutions",
        default="",
        help="instead: time and accuracy of labdevices at these contour resolutions (mm)",
    )
    ap.add_argument("--no-write", action="store_true", help="do not rewrite RESULTS.md")
    a = ap.parse_args()
    definitions = a.work / "cura/usr/share/cura/resources/definitions"
    missing = [t for t in ("prusa-slicer", "CuraEngine") if shutil.which(t) is None]
    if (
        missing
        or not (definitions / "fdmprinter.def.json").exists()
        or not Path("/usr/bin/time").exists()
    ):
        raise SystemExit(
            f"missing {missing or 'Cura definitions or GNU time'}: run {HERE / 'setup.sh'} first"
        )
    cura_env = {"CURA_ENGINE_SEARCH_PATH": f"{definitions}:{definitions.parent / 'extruders'}"}
    warm = {"NUMBA_CACHE_DIR": str(a.work / "numba-cache")}
    names = a.meshes.split(",")
    paths = {k: v for k, v in meshes.make(a.work).items() if k in names}
    jobs = {k: write_job(m, a.work / f"{k}.toml") for k, m in paths.items()}

    # an installed package carries its bytecode (pip compiles it); an editable checkout run
    # with PYTHONDONTWRITEBYTECODE (as in CI containers) would compile ~30 modules per run
    import labdevices

    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(Path(labdevices.__file__).parent)],
        check=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""},
    )
    if a.resolutions:
        resolution_sweep(a, paths, [float(r) for r in a.resolutions.split(",")], warm)
        return

    load_before = Path("/proc/loadavg").read_text().split()[0]
    # first runs in a fresh environment: an empty numba cache, with the kernels compiled at
    # install (the default) and without them (numba's JIT: no C compiler at install)
    first_job = jobs[names[0]]
    first: dict[str, list[float]] = {"cold": [], "jit": [], "warm": []}
    timed(labdevices_cmd(first_job, a.work / "first.gcode"), warm)
    for _ in range(2):
        for kind, env in (("cold", {}), ("jit", {"LABDEVICES_KERNELS": "jit"})):
            with tempfile.TemporaryDirectory() as cold_cache:
                run_env = {**env, "NUMBA_CACHE_DIR": cold_cache}
                first[kind].append(
                    timed(labdevices_cmd(first_job, a.work / "first.gcode"), run_env)[0]
                )
        first["warm"].append(timed(labdevices_cmd(first_job, a.work / "first.gcode"), warm)[0])
    print(f"first run ({names[0]}): {first}", flush=True)

    rows = []
    for name, mesh in paths.items():
        n_tri = (mesh.stat().st_size - 84) // 50
        out = {k: a.work / f"{name}.{k}.gcode" for k in ("labdevices", "prusa", "cura")}
        print(f"== {name}: {n_tri} triangles", flush=True)
        timed(labdevices_cmd(jobs[name], out["labdevices"]), warm)
        runs: dict[str, list[tuple[float, float, float]]] = {k: [] for k in out}
        for _ in range(a.repeats):  # interleaved, so a noisy neighbour hurts all alike
            runs["labdevices"].append(timed(labdevices_cmd(jobs[name], out["labdevices"]), warm))
            runs["prusa"].append(timed(prusa_cmd(mesh, out["prusa"])))
            runs["cura"].append(timed(cura_cmd(mesh, out["cura"], definitions), cura_env))
        med = {
            k: tuple(statistics.median(r[i] for r in v) for i in range(3)) for k, v in runs.items()
        }
        for k, (wall, cpu, rss) in med.items():
            print(f"  {k:11s} wall {wall:6.2f} s  cpu {cpu:6.2f} s  peak {rss:7.0f} MB", flush=True)
        stats = {k: gcode_stats.read(p, pneumatic=k == "labdevices") for k, p in out.items()}
        exact = exact_areas(mesh, stats["labdevices"].layers)
        err = {
            "labdevices": area_errors(labdevices_wall_loops(mesh, None), exact),
            "prusa": area_errors(
                [[np.array(lp) for lp in layer] for layer in stats["prusa"].outer_loops], exact
            ),
            "cura": area_errors(
                [[np.array(lp) for lp in layer] for layer in stats["cura"].outer_loops], exact
            ),
        }
        for k, s in stats.items():
            print(
                f"  {k:11s} layers {s.layers}  XY travel {s.travel_xy_mm / 1000:7.2f} m  "
                f"Z lifts {s.z_lift_mm / 1000:7.2f} m  time {s.print_time_s} s  "
                f"X {s.x_range[0]:.1f}-{s.x_range[1]:.1f}  area err max {err[k][0]:.3%} all {err[k][1]:.3%}",
                flush=True,
            )
        rows.append((name, n_tri, med, stats, err))

    def ratio(x: float, y: float) -> str:
        return f"{x / y:.2f}" if y > 0 else "-"

    lines = [
        "# Slicing benchmark: `labdevices toolpath` vs PrusaSlicer vs CuraEngine on a corpus",
        "",
        f"Machine: {machine()}; load average {load_before} before the run, "
        f"{Path('/proc/loadavg').read_text().split()[0]} after (the machine is shared: "
        "interleaved runs let every slicer meet the same load).  ",
        f"Versions: {versions()}.  ",
        f"Settings for all: {LAYER} mm layers, {WIDTH} mm lines, {PERIMETERS} perimeters, "
        f"{DENSITY:.0%} rectilinear infill (line spacing {SPACING:.4f} mm, PrusaSlicer's), no top/bottom "
        "solid layers, no skirt/brim/support. Each program is a fresh process from STL to G-code "
        f"under GNU time; median of {a.repeats} interleaved runs; labdevices with its kernels compiled at install.",
        "",
        "Reproduce: `benchmarks/slicing/setup.sh && .venv/bin/python benchmarks/slicing/run.py`",
        "",
        f"First run of `labdevices toolpath` ({names[0]}) with an empty numba cache (a fresh "
        f"environment): kernels compiled at install {' / '.join(f'{t:.2f}' for t in first['cold'])} s; "
        f"without them (numba's JIT) {' / '.join(f'{t:.2f}' for t in first['jit'])} s; "
        f"a second run {' / '.join(f'{t:.2f}' for t in first['warm'])} s.",
        "",
        "| mesh | triangles | labdevices s | PrusaSlicer s | CuraEngine s | ratio vs Prusa | ratio vs Cura | peak MB lab / Prusa / Cura | memory vs Cura |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, n_tri, med, _stats, _err in rows:
        lab, pr, cu = med["labdevices"], med["prusa"], med["cura"]
        lines.append(
            f"| {name} | {n_tri:,} | {lab[0]:.2f} | {pr[0]:.2f} | {cu[0]:.2f} | "
            f"{lab[0] / pr[0]:.2f} | **{lab[0] / cu[0]:.2f}** | {lab[2]:.0f} / {pr[2]:.0f} / {cu[2]:.0f} | "
            f"{lab[2] / cu[2]:.2f} |"
        )
    lines += [
        "",
        "| mesh | XY travel m lab / Prusa / Cura | XY vs Cura | Z lifts m lab / Prusa / Cura | est. print time s lab / Prusa / Cura | layers lab / Prusa / Cura | X range lab; Prusa; Cura |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, _n, _med, st, _err in rows:
        lab, pr, cu = st["labdevices"], st["prusa"], st["cura"]
        t = [f"{s.print_time_s:.0f}" if s.print_time_s is not None else "?" for s in (lab, pr, cu)]
        lines.append(
            f"| {name} | {lab.travel_xy_mm / 1000:.2f} / {pr.travel_xy_mm / 1000:.2f} / {cu.travel_xy_mm / 1000:.2f} | "
            f"**{ratio(lab.travel_xy_mm, cu.travel_xy_mm)}** | "
            f"{lab.z_lift_mm / 1000:.2f} / {pr.z_lift_mm / 1000:.2f} / {cu.z_lift_mm / 1000:.2f} | "
            f"{' / '.join(t)} | {lab.layers} / {pr.layers} / {cu.layers} | "
            + "; ".join(f"{s.x_range[0]:.0f}-{s.x_range[1]:.0f}" for s in (lab, pr, cu))
            + " |"
        )
    lines += [
        "",
        "Outer-wall area against the exact cross-section: largest per-layer error / error over the whole part.",
        "",
        "| mesh | labdevices | PrusaSlicer (classic) | CuraEngine |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, _n, _med, _st, err in rows:
        lines.append(
            f"| {name} | "
            + " | ".join(
                f"{err[k][0]:.2%} / {err[k][1]:.3%}" for k in ("labdevices", "prusa", "cura")
            )
            + " |"
        )
    text = "\n".join(lines) + "\n" + NOTES
    print()
    print(text)
    if not a.no_write:
        (HERE / "RESULTS.md").write_text(text)


def resolution_sweep(
    a: argparse.Namespace, paths: dict[str, Path], resolutions: list[float], warm: dict[str, str]
) -> None:
    """Wall time of `labdevices toolpath` and outer-wall accuracy at each contour resolution."""
    print("| mesh | resolution mm | wall s | peak MB | area error max / whole |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, mesh in paths.items():
        exact = None
        for r in resolutions:
            job = write_job(mesh, a.work / f"{name}.r.toml", extra=f"contour_resolution_mm = {r}\n")
            out = a.work / f"{name}.r.gcode"
            timed(labdevices_cmd(job, out), warm)
            t = [timed(labdevices_cmd(job, out), warm) for _ in range(a.repeats)]
            wall = statistics.median(x[0] for x in t)
            rss = statistics.median(x[2] for x in t)
            if exact is None:
                exact = exact_areas(mesh, gcode_stats.read(out, pneumatic=True).layers)
            e = area_errors(labdevices_wall_loops(mesh, r), exact)
            print(
                f"| {name} | {r:g} | {wall:.2f} | {rss:.0f} | {e[0]:.3%} / {e[1]:.4%} |", flush=True
            )


if __name__ == "__main__":
    main()

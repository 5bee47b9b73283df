"""Slicing benchmark: labdevices against PrusaSlicer and CuraEngine on the same meshes and settings.

Run ``benchmarks/slicing/setup.sh`` once (installs the slicers), then
``.venv/bin/python benchmarks/slicing/run.py``. Every slicer runs as its own process
under GNU time (wall time, peak RSS); the G-code of each is then read back to show
the comparison is fair: same layers, similar extruded length, equal outer-wall areas.
Writes the table to RESULTS.md beside this file.
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
        "--bed-shape", "0x0,300x0,300x300,0x300", "--center", "150,150",
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
        "machine_width": 300, "machine_depth": 300, "machine_height": 300,
        "machine_center_is_zero": "false", "mesh_position_x": 150, "mesh_position_y": 150,
    }  # fmt: skip
    cmd = ["CuraEngine", "slice", "-j", str(definitions / "fdmprinter.def.json")]
    for k, v in settings.items():
        cmd += ["-s", f"{k}={v}"]
    return [*cmd, "-e0", "-s", f"machine_nozzle_size={WIDTH}", "-l", str(mesh), "-o", str(out)]


def labdevices_cmd(mesh: Path, out: Path) -> list[str]:
    return [
        sys.executable, str(HERE / "labdevices_slice.py"), str(mesh), str(out),
        "--layer", str(LAYER), "--width", str(WIDTH), "--perimeters", str(PERIMETERS),
        "--spacing", str(SPACING), "--resolution", "0.0125",
    ]  # fmt: skip


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


NOTES = """
Notes:
- Wall time is the whole process, interpreter start and exit included. For labdevices about
  0.45 s of the torus' time is fixed: Python and `import numba` (~0.2 s), and numba setting up
  its compiler target on the first call of a cached kernel (~0.2 s, even when nothing is
  compiled); slicing the torus takes ~0.1 s, the gyroid ~1 s. At exit the interpreter would
  also search the several hundred thousand objects numba made for garbage cycles (~0.2 s):
  `labdevices toolpath` and `labdevices_slice.py` skip that final collection
  (`labdevices._exit`), everything is still freed and every file closed.
- labdevices links adjacent infill lines into zig-zags only where the link runs along the wall
  (one line overlapping one line of the next row); PrusaSlicer (anchors) and CuraEngine
  (zig_zaggify_infill) also extrude connections along the walls, hence their longer infill
  at equal infill-line length. Its G-code is written by the numba writer in
  `labdevices_slice.py` (no travel ordering), since `labdevices.toolpath.emit_gcode` needs a
  bioink print job.
- CuraEngine's outer-wall area is off by up to ~30 % on a few gyroid layers (median small) where
  it drops or adds regions; PrusaSlicer and labdevices agree within 0.2 % on every layer.
- Meshes are generated (not committed) by `meshes.py`: a torus (R 20, r 8 mm) and a 40x40x20 mm
  gyroid network block by marching tetrahedra, closed at the block faces.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--work",
        type=Path,
        default=Path(os.environ.get("SLICING_BENCH_DIR", "/tmp/labdevices-bench-slicing")),
    )
    ap.add_argument("--repeats", type=int, default=5)
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
    warm_cache = a.work / "numba-cache"
    paths = meshes.make(a.work)

    load_before = Path("/proc/loadavg").read_text().split()[0]
    rows = []
    fairness = []
    for name, mesh in paths.items():
        n_tri = (mesh.stat().st_size - 84) // 50
        out = {k: a.work / f"{name}.{k}.gcode" for k in ("labdevices", "prusa", "cura")}
        print(f"== {name}: {n_tri} triangles", flush=True)
        with tempfile.TemporaryDirectory() as cold_cache:
            cold = timed(labdevices_cmd(mesh, out["labdevices"]), {"NUMBA_CACHE_DIR": cold_cache})
        timed(labdevices_cmd(mesh, out["labdevices"]), {"NUMBA_CACHE_DIR": str(warm_cache)})
        runs: dict[str, list[tuple[float, float, float]]] = {
            "labdevices": [],
            "prusa": [],
            "cura": [],
        }
        for _ in range(a.repeats):  # interleaved, so a noisy neighbour hurts all alike
            runs["labdevices"].append(
                timed(labdevices_cmd(mesh, out["labdevices"]), {"NUMBA_CACHE_DIR": str(warm_cache)})
            )
            runs["prusa"].append(timed(prusa_cmd(mesh, out["prusa"])))
            runs["cura"].append(timed(cura_cmd(mesh, out["cura"], definitions), cura_env))
        med = {
            k: tuple(statistics.median(r[i] for r in v) for i in range(3)) for k, v in runs.items()
        }
        for k, (wall, cpu, rss) in med.items():
            print(f"  {k:11s} wall {wall:6.2f} s  cpu {cpu:6.2f} s  peak {rss:7.0f} MB", flush=True)
        print(f"  labdevices cold numba cache: wall {cold[0]:.2f} s", flush=True)
        rows.append((name, n_tri, med, cold))

        stats = {k: gcode_stats.read(p) for k, p in out.items()}
        ref = stats["labdevices"]
        for k, s in stats.items():
            n = min(len(s.outer_area), len(ref.outer_area))
            a_ref = ref.outer_area[:n]
            diffs = [
                abs(x / y - 1) for x, y in zip(s.outer_area[:n], a_ref, strict=True) if y > 1.0
            ]
            fairness.append(
                (
                    name,
                    k,
                    s.layers,
                    s.perimeter_mm,
                    s.infill_mm + s.other_mm,
                    s.infill_lines_mm,
                    s.total_mm / ref.total_mm - 1,
                    max(diffs, default=0.0),
                    statistics.median(diffs) if diffs else 0.0,
                )
            )
            print(
                f"  {k:11s} layers {s.layers}  walls {s.perimeter_mm:9.0f} mm  infill {s.infill_mm + s.other_mm:9.0f} mm  "
                f"lines {s.infill_lines_mm:9.0f} mm  total vs labdevices {s.total_mm / ref.total_mm - 1:+.2%}  outer-wall area per layer: max diff {max(diffs, default=0):.3%}",
                flush=True,
            )

    lines = [
        "# Slicing benchmark: labdevices vs PrusaSlicer vs CuraEngine",
        "",
        f"Machine: {machine()}; load average {load_before} before the run, "
        f"{Path('/proc/loadavg').read_text().split()[0]} after (the machine is shared: "
        "interleaved runs let every slicer meet the same load).  ",
        f"Versions: {versions()}.  ",
        f"Settings for all: {LAYER} mm layers, {WIDTH} mm lines, {PERIMETERS} perimeters, "
        f"{DENSITY:.0%} rectilinear infill (line spacing {SPACING:.4f} mm, PrusaSlicer's), no top/bottom "
        "solid layers, no skirt/brim/support. Each slicer is a fresh process from STL to G-code "
        f"under GNU time; median of {a.repeats} interleaved runs; numba cache warm (cold run noted).",
        "",
        "Reproduce: `benchmarks/slicing/setup.sh && .venv/bin/python benchmarks/slicing/run.py`",
        "",
        "| mesh | triangles | labdevices wall s (cold) | PrusaSlicer wall s | CuraEngine wall s | ratio vs Prusa | ratio vs Cura | peak MB lab / Prusa / Cura | CPU s lab / Prusa / Cura |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, n_tri, med, cold in rows:
        lab, pr, cu = med["labdevices"], med["prusa"], med["cura"]
        lines.append(
            f"| {name} | {n_tri:,} | {lab[0]:.2f} ({cold[0]:.1f}) | {pr[0]:.2f} | {cu[0]:.2f} | "
            f"{lab[0] / pr[0]:.2f} | {lab[0] / cu[0]:.2f} | {lab[2]:.0f} / {pr[2]:.0f} / {cu[2]:.0f} | "
            f"{lab[1]:.2f} / {pr[1]:.2f} / {cu[1]:.2f} |"
        )
    lines += [
        "",
        "Fairness, read back from each G-code: layers; extruded length of walls, of infill, and of",
        "the infill moves along the infill directions (45°/135°: the lines themselves, without the",
        "connections between them, which PrusaSlicer and CuraEngine also run along the walls);",
        "total extruded length relative to labdevices; and the net area inside the outer walls,",
        "per layer, relative to labdevices' (max and median over layers).",
        "",
        "| mesh | slicer | layers | walls mm | infill mm | infill lines mm | total vs labdevices | outer-wall area diff max / median |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, k, layers, per, inf, inf_lines, total, dmax, dmed in fairness:
        lines.append(
            f"| {name} | {k} | {layers} | {per:,.0f} | {inf:,.0f} | {inf_lines:,.0f} | {total:+.1%} | {dmax:.2%} / {dmed:.3%} |"
        )
    text = "\n".join(lines) + "\n" + NOTES
    print()
    print(text)
    if not a.no_write:
        (HERE / "RESULTS.md").write_text(text)


if __name__ == "__main__":
    main()

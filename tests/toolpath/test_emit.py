"""G-code emission: formatting, the program kernel against its interpreted self, and each dialect."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from labdevices.profiles import GcodeProfile, load_profile
from labdevices.toolpath import LayerPaths, emit_gcode, plan_job, plan_layers
from labdevices.toolpath._emit import (
    LiteralTable,
    build_program,
    format_records,
    format_records_ref,
)
from labdevices.toolpath._kernel import py_func

from ._helpers import make_job, replay

_MOTION = re.compile(r"^G[014](?: [XYZEFP]-?\d+(?:\.\d+)?)*$")


def test_numbers_are_formatted_like_python() -> None:
    rng = np.random.default_rng(5)
    n = 2000
    vals = np.full((n, 6), np.nan)
    vals[:, 0] = rng.uniform(-300, 300, n)
    vals[:, 1] = [
        round(v, int(d)) for v, d in zip(rng.uniform(0, 50, n), rng.integers(0, 4, n), strict=True)
    ]
    vals[::3, 3] = rng.uniform(0, 1, n)[::3] * 10.0 ** rng.integers(-4, 2, n)[::3]
    vals[::7, 4] = rng.integers(1, 6000, n)[::7]
    vals[:5, 1] = [0.0, -0.0004, 0.0005, 1e-9, 12.0]
    code = rng.choice(np.array([0, 1, 4], np.int8), n)
    table = LiteralTable()
    lit = np.full(n, -1, np.int32)
    code[10] = -1
    lit[10] = table.add("M750 T0\nG4 P5")
    raw = format_records(code, vals, lit, table)
    assert raw == format_records_ref(code, vals, lit, table)  # kernel and numpy reference
    text = raw.decode()
    lines = text.splitlines()
    assert lines[10:12] == ["M750 T0", "G4 P5"]
    del lines[11], lines[10]
    rows = [i for i in range(n) if i != 10]
    for i, line in zip(rows, lines, strict=True):
        assert _MOTION.match(line), line
        words = dict((w[0], float(w[1:])) for w in line.split()[1:])
        for k, (name, dec) in enumerate(zip("XYZEFP", (3, 3, 3, 5, 0, 0), strict=True)):
            if np.isnan(vals[i, k]):
                assert name not in words
            else:
                assert words[name] == pytest.approx(
                    round(vals[i, k], dec), abs=10**-dec / 2 + 1e-12
                )
        assert "-0" not in line.replace("-0.", "")  # no negative zero


def test_program_kernel_matches_interpreted_reference() -> None:
    job = make_job(
        object={
            "type": "scaffold",
            "shape": "disc",
            "diameter_mm": 10.0,
            "layers": 2,
            "strand_spacing_mm": 1.0,
            "perimeters": 1,
        }
    )
    result = plan_job(job)
    # rebuild the inputs the planner used and run both versions of the kernel
    from labdevices.toolpath import _plan

    captured = {}
    real = _plan.render_body

    def spy(inputs, table):  # type: ignore[no-untyped-def]
        captured["inputs"] = inputs
        return real(inputs, table)

    _plan.render_body = spy
    try:
        plan_job(job)
    finally:
        _plan.render_body = real
    args = captured["inputs"].program_args()
    fast = build_program(*args)
    slow = py_func(build_program)(*args)
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(a, b)
    assert result.gcode.count("\n") > 100


def test_lines_are_plain_for_the_driver() -> None:
    gcode = plan_job(make_job()).gcode
    for line in gcode.splitlines():
        assert line == line.strip() and line
        assert not line.startswith("N") and "*" not in line


@pytest.mark.parametrize(
    ("printer", "expect", "absent"),
    [
        (
            "cellink-biox",
            [
                "M773 T0 P",
                "M750 T0",
                "M751 T0",
                "M771 T0 S25.0",
                "M801 S20.0",
                "T10",
                "M805 T10 S5.0 I100",
            ],
            ["M0 "],
        ),
        (
            "marlin-pneumatic",
            ["M42 P6 S", "M126 S255", "M127", "M190 S20.0", "M42 P4 S255", "G4 P5000", "M42 P4 S0"],
            ["M773", "M750"],
        ),
        (
            "inkredible",
            ["M0 Set printhead 0 pressure to", "M760", "M761", "M764", "G4 P5000", "M765"],
            ["M773", "M42"],
        ),
    ],
)
def test_dialects(printer: str, expect: list[str], absent: list[str]) -> None:
    heads = make_job().model_dump()["printheads"]
    heads[0]["temperature_c"] = 25.0 if printer == "cellink-biox" else None
    job = make_job(
        printer=printer,
        printheads=heads,
        bed_temperature_c=20.0,
        crosslinking={"every_n_layers": 2, "uv_seconds": 5.0},
    )
    gcode = plan_job(job).gcode
    lines = gcode.splitlines()
    for e in expect:
        assert any(ln.startswith(e) for ln in lines), e
    for a in absent:
        assert not any(ln.startswith(a) for ln in lines), a
    assert "; batch: B1" in lines and "; patient: P1" in lines
    opens = sum(ln in ("M750 T0", "M126 S255", "M760") for ln in lines)
    closes = sum(ln in ("M751 T0", "M127", "M761") for ln in lines)
    assert opens == closes > 0


def test_pressure_templates_get_kpa_fraction_and_pwm() -> None:
    result = plan_job(make_job(printer="marlin-pneumatic"))
    kpa = result.totals[0].pressure_kpa
    assert kpa is not None
    pwm = [int(ln.split("S")[1]) for ln in result.gcode.splitlines() if ln.startswith("M42 P6 S")]
    assert pwm[0] == round(255 * kpa / 700) and pwm[-1] == 0  # set, then released at the end
    assert abs(kpa / (700 / 255) - round(kpa / (700 / 255))) < 1e-9  # a whole PWM step


def test_tool_switching_applies_offsets() -> None:
    heads = make_job().model_dump()["printheads"]
    second = dict(heads[0], tool=1)
    job = make_job(
        printheads=[heads[0], second],
        object={
            "type": "scaffold",
            "shape": "rectangle",
            "center_mm": [60, 40],
            "size_mm": [10, 10],
            "layers": 2,
            "strand_spacing_mm": 1.0,
            "layer_tools": [0, 1],
        },
    )
    result = plan_job(job)
    lines = result.gcode.splitlines()
    t1 = lines.index("T1")
    xs = [
        float(w[1:]) for ln in lines[t1:] if ln.startswith("G1") for w in ln.split() if w[0] == "X"
    ]
    # PH2 sits 40 mm to the right of PH1: the carriage moves 40 mm less
    assert min(xs) == pytest.approx(60 - 4 - 40, abs=1e-3)  # strands at x = 56…64
    assert max(xs) <= 60 + 5 - 40
    assert "M750 T1" in lines[t1:]


def test_piston_printhead_extrudes_its_volume(tmp_path: Path) -> None:
    text = (Path(__file__).parents[2] / "drivers" / "marlin-pneumatic.toml").read_text()
    text = text.replace(
        'kind = "pneumatic"\nlabel = "pneumatic 0"',
        'kind = "piston"\nlabel = "piston 0"\nsyringe_diameter_mm = 4.61',
        1,
    )
    (tmp_path / "piston.toml").write_text(text)
    profile = load_profile(tmp_path / "piston.toml")
    assert isinstance(profile, GcodeProfile)
    job = make_job(printer=str(tmp_path / "piston.toml"))
    result = plan_job(job, profile)
    run = replay(result.gcode, {}, {}, {"T0": 0})
    area = np.pi * 4.61**2 / 4
    assert "M83" in run.commands and not any(c.startswith("M126") for c in run.commands)
    assert run.e_mm == pytest.approx(result.volume_ul / area, rel=1e-4)


def test_emit_gcode_takes_layers_from_elsewhere() -> None:
    square = np.array([[40.0, 40.0], [50.0, 40.0], [50.0, 50.0], [40.0, 50.0]])
    layers = [LayerPaths.from_paths(0.3 * (k + 1), [square], 0, 0, True) for k in range(3)]
    profile = load_profile("cellink-biox")
    assert isinstance(profile, GcodeProfile)
    job = make_job()
    text = emit_gcode(layers, profile, job)
    assert text.count("M750 T0") == 3
    result = plan_layers(layers, job, profile)
    assert sum(t.path_mm for t in result.totals) == pytest.approx(120.0)


def test_sliced_mesh_goes_straight_to_gcode() -> None:
    from labdevices.toolpath import default_job, slice_mesh

    layers = slice_mesh(
        Path(__file__).parents[2] / "examples" / "jobs" / "tube.stl", 0.3, 0.4, 2, 1.5
    )
    for lp in layers:
        lp.xy += 60.0  # the mesh is centred on 0: onto the bed
    profile = load_profile("marlin-pneumatic")
    assert isinstance(profile, GcodeProfile)
    text = emit_gcode(layers, profile, default_job(0.3, 0.4))
    assert text.count("; layer ") == len(layers) == 10
    assert text.count("M126 S255") == text.count("M127") == sum(lp.n_paths for lp in layers)

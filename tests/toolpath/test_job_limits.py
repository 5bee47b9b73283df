"""Jobs that used to crash or print nothing (issue #15): each ends in a clear error or a correct result."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from labdevices.cli import _register, app
from labdevices.errors import ConfigurationError
from labdevices.files import validate
from labdevices.toolpath import (
    Nozzle,
    PrintJob,
    Rheology,
    flow_for_pressure,
    plan_job,
    pressure_for_flow,
)
from labdevices.toolpath._emit import to_ascii

from ._helpers import job_dict, make_job

_register()
EXAMPLES = Path(__file__).parents[2] / "examples" / "jobs"


def _scaffold(**obj: Any) -> dict[str, Any]:
    base = {"type": "scaffold", "shape": "rectangle", "size_mm": [12.0, 12.0], "layers": 2}
    base.update(obj)
    if "strand_spacing_mm" not in base and "porosity" not in base:
        base["strand_spacing_mm"] = 1.2
    return base


def _write_job(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "job.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_leaving_the_build_volume_is_an_error_naming_the_way_out() -> None:
    job = make_job(object=_scaffold(center_mm=[500.0, 40.0]))
    with pytest.raises(ConfigurationError) as err:
        plan_job(job)
    text = str(err.value)
    assert "build volume" in text and "allow_outside_build_volume" in text
    assert "X moves span" in text


def test_allowed_outside_build_volume_is_a_warning() -> None:
    job = make_job(object=_scaffold(center_mm=[500.0, 40.0]), allow_outside_build_volume=True)
    result = plan_job(job)
    assert any("outside the build volume" in w for w in result.warnings)
    assert "; WARNING: X moves span" in result.gcode


def test_cli_out_of_volume_fails_cleanly_and_leaves_no_file(tmp_path: Path) -> None:
    job = _write_job(tmp_path, job_dict(object=_scaffold(center_mm=[500.0, 40.0])))
    out = tmp_path / "out.gcode"
    res = CliRunner().invoke(app, ["toolpath", str(job), "-o", str(out)])
    assert isinstance(res.exception, ConfigurationError), res.output
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["job.json"]


@pytest.mark.parametrize("encoding", ["ascii", "utf-8"])
def test_non_ascii_names_and_warnings_are_written(tmp_path: Path, encoding: str) -> None:
    data = job_dict(
        name="Gewebe-Grüße",
        object=_scaffold(center_mm=[500.0, 40.0]),
        allow_outside_build_volume=True,
        gcode_encoding=encoding,
    )
    data["printheads"][0]["bioink"]["name"] = "Alginat 2 % µ-Partikel"
    out = tmp_path / "out.gcode"
    res = CliRunner().invoke(app, ["toolpath", str(_write_job(tmp_path, data)), "-o", str(out)])
    assert res.exit_code == 0, res.output
    raw = out.read_bytes()
    assert b"G1 X" in raw
    if encoding == "ascii":
        assert raw.isascii()
        text = raw.decode("ascii")
        assert "; job: Gewebe-Grusse" in text
        assert "Alginat 2 % u-Partikel" in text
        assert "outside the build volume" in text
    else:
        text = raw.decode("utf-8")
        assert "; job: Gewebe-Grüße" in text and "µ-Partikel" in text


def test_to_ascii_transliterates() -> None:
    assert to_ascii("Grüße µL 37 °C … x²") == "Grusse uL 37  degC ... x2"
    assert to_ascii("plain") == "plain"
    assert to_ascii("日本").isascii()


def test_scaffold_too_small_for_one_strand_is_an_error() -> None:
    job = make_job(object=_scaffold(size_mm=[0.3, 0.3]))
    with pytest.raises(ConfigurationError, match="too small for one strand"):
        plan_job(job)


def test_spacing_larger_than_the_part_is_an_error_not_porosity_one() -> None:
    job = make_job(object=_scaffold(size_mm=[5.0, 5.0], strand_spacing_mm=20.0))
    with pytest.raises(ConfigurationError, match=r"object\.strand_spacing_mm: .*no pores"):
        plan_job(job)
    # a spacing that leaves two strands is fine, and its porosity is below 1
    ok = plan_job(make_job(object=_scaffold(size_mm=[5.0, 5.0], strand_spacing_mm=2.0)))
    assert ok.scaffold is not None and ok.scaffold.porosity < 1.0


def test_layer_taller_than_the_strand_is_rejected() -> None:
    with pytest.raises(ConfigurationError) as err:
        validate(PrintJob, job_dict(layer_height_mm=5.0), "job.toml")
    assert "layer_height_mm 5 mm is taller than printheads[0].strand_width_mm 0.45 mm" in str(
        err.value
    )


def test_infill_spacing_has_a_lower_bound() -> None:
    data = tomllib.loads((EXAMPLES / "mesh.toml").read_text())
    data["object"]["infill_spacing_mm"] = 1e-5
    with pytest.raises(ConfigurationError) as err:
        validate(PrintJob, data, "mesh.toml")
    assert "object.infill_spacing_mm 1e-05 mm is below the strand width 0.45 mm" in str(err.value)


def test_nothing_to_print_is_an_error() -> None:
    from labdevices.toolpath import LayerPaths, plan_layers

    job = make_job()
    with pytest.raises(ConfigurationError, match="nothing to print"):
        plan_layers([LayerPaths.empty(0.3)], job, plan_job(job).profile)


def test_herschel_bulkley_cone_flow_inverts_pressure() -> None:
    nozzle = Nozzle(kind="conical", inner_diameter_mm=0.41, inlet_diameter_mm=2.0, length_mm=12.0)
    ink = Rheology(consistency_pa_sn=25.0, flow_index=0.25, yield_stress_pa=100.0)
    for q in (0.05, 1.0, 20.0):
        p = pressure_for_flow(q, nozzle, ink).pressure_kpa
        back = flow_for_pressure(p, nozzle, ink)
        assert math.isclose(back, q, rel_tol=1e-9)
    # below the yield pressure nothing flows
    p_yield = pressure_for_flow(1e-12, nozzle, ink).pressure_kpa
    assert flow_for_pressure(0.5 * p_yield, nozzle, ink) == 0.0


def test_slice_mesh_refuses_a_spacing_that_would_exhaust_memory() -> None:
    from labdevices.toolpath._mesh import MeshError, slice_mesh

    with pytest.raises(MeshError, match="infill spacing must be at least half the line width"):
        slice_mesh(EXAMPLES / "tube.stl", 0.3, 0.45, 2, 1e-5)

"""Print jobs: TOML and JSON load; a bad job gets an error naming the file and the field."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from labdevices.errors import ConfigurationError
from labdevices.toolpath import MeshObject, load_job

from ._helpers import job_dict

EXAMPLES = Path(__file__).parents[2] / "examples" / "jobs"


def write(tmp_path: Path, data: dict[str, object]) -> Path:
    p = tmp_path / "job.json"
    p.write_text(json.dumps(data))
    return p


def test_examples_load() -> None:
    for name in ("scaffold.toml", "wellplate96.toml", "mesh.toml"):
        job = load_job(EXAMPLES / name)
        assert job.printheads
    mesh = load_job(EXAMPLES / "mesh.toml").object
    assert isinstance(mesh, MeshObject) and mesh.path == EXAMPLES / "tube.stl"


def test_json_round_trip(tmp_path: Path) -> None:
    job = load_job(write(tmp_path, job_dict()))
    assert job.batch_id == "B1" and job.object.type == "scaffold"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            lambda d: d["printheads"][0]["nozzle"].update(inner_diameter_mm=-1),
            "printheads[0].nozzle.inner_diameter_mm",
        ),
        (
            lambda d: d["printheads"][0]["bioink"]["rheology"].update(flow_index=0),
            "printheads[0].bioink.rheology.flow_index",
        ),
        (
            lambda d: d["printheads"][0]["bioink"].update(colour="red"),
            "printheads[0].bioink.colour: unknown field",
        ),
        (
            lambda d: d["object"].update(strand_spacing_mm=None),
            "object.scaffold: Value error, give exactly one of",
        ),
        (
            lambda d: d["printheads"][0].update(tool=7),
            "printheads[0].tool: printer 'cellink-biox' has no tool 7",
        ),
        (
            lambda d: d["printheads"][0].update(temperature_c=90.0),
            "printheads[0].temperature_c: 90.0 °C is outside",
        ),
        (
            lambda d: d["object"].update(layer_tools=[0, 2]),
            "object.layer_tools[1]: no printhead with tool 2",
        ),
        (lambda d: d.update(printer="no-such-printer"), "printer: unknown device profile"),
        (lambda d: d["printheads"][0]["nozzle"].update(kind="conical"), "needs inlet_diameter_mm"),
    ],
)
def test_bad_job_names_file_and_field(tmp_path: Path, change, field: str) -> None:  # type: ignore[no-untyped-def]
    data = job_dict()
    change(data)
    path = write(tmp_path, data)
    with pytest.raises(ConfigurationError) as err:
        load_job(path)
    assert str(path) in str(err.value)
    assert field in str(err.value)


def test_malformed_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("layer_height_mm = ")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_job(bad)
    with pytest.raises(ConfigurationError, match="file not found"):
        load_job(tmp_path / "missing.json")
    assert tomllib.loads((EXAMPLES / "scaffold.toml").read_text())["batch_id"]


def test_a_bad_job_lists_its_unknown_printer_with_its_other_problems(tmp_path: Path) -> None:
    text = (EXAMPLES / "scaffold.toml").read_text()
    text = text.replace('printer = "cellink-biox"', 'printer = "no-such"')
    text = text.replace("layers = 8", "layers = -2")
    text = text.replace("inner_diameter_mm = 0.41", "inner_diameter_mm = -1")
    job = tmp_path / "job.toml"
    job.write_text(text)
    with pytest.raises(ConfigurationError) as caught:
        load_job(job)
    problems = "\n".join(caught.value.problems)
    assert (
        f"{job}: printheads[0].nozzle.inner_diameter_mm: Input should be greater than 0" in problems
    )
    assert f"{job}: object.layers: Input should be greater than or equal to 1" in problems
    assert f"{job}: printer: unknown device profile 'no-such'" in problems
    assert len(caught.value.problems) == 3

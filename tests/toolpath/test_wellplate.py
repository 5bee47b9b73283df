"""Well plates: ANSI/SLAS positions, patterns, and a short well order."""

from __future__ import annotations

import numpy as np
import pytest

from labdevices.errors import ConfigurationError
from labdevices.toolpath import (
    PLATE_FORMATS,
    ROLE_DROPLET,
    WellPlateObject,
    plan_job,
    well_centres,
    wellplate_layers,
)
from labdevices.toolpath._order import tour_length

from ._helpers import make_job


def plate(**kw: object) -> WellPlateObject:
    return WellPlateObject.model_validate({"type": "wellplate", **kw})


@pytest.mark.parametrize(
    ("fmt", "a1", "last"),
    [
        (96, (14.38, 85.48 - 11.24), "H12"),  # ANSI/SLAS 4-2004
        (384, (12.13, 85.48 - 8.99), "P24"),
    ],
)
def test_standard_positions(fmt: int, a1: tuple[float, float], last: str) -> None:
    names, pts = well_centres(plate(format=fmt))
    assert len(names) == fmt
    assert pts[0] == pytest.approx(a1, abs=0.01)
    assert names[-1] == last
    f = PLATE_FORMATS[fmt]
    assert pts[-1] == pytest.approx(
        (a1[0] + (f.cols - 1) * f.pitch_mm, a1[1] - (f.rows - 1) * f.pitch_mm), abs=0.01
    )


def test_every_format_fits_the_footprint() -> None:
    for fmt, f in PLATE_FORMATS.items():
        _, pts = well_centres(plate(format=fmt))
        r = f.well_diameter_mm / 2
        assert pts[:, 0].min() - r > 0 and pts[:, 0].max() + r < 127.76
        assert pts[:, 1].min() - r > 0 and pts[:, 1].max() + r < 85.48


def test_wells_are_ordered_short_and_patterns_stay_in_their_well() -> None:
    obj = plate(format=24, pattern="lattice", layers=2)
    layers, order = wellplate_layers(obj, 0.3, 0.4)
    names, pts = well_centres(obj)
    centres = pts[[names.index(n) for n in order]]
    assert tour_length(centres, np.arange(24), centres[0, 0], centres[0, 1]) <= 24 * 19.3 * 1.2
    r_max = PLATE_FORMATS[24].well_diameter_mm / 2
    for lp in layers:
        d = np.min(np.hypot(*(lp.xy[:, None, :] - pts[None]).transpose(2, 0, 1)), axis=1)
        assert d.max() <= r_max


def test_droplets_and_bad_wells() -> None:
    layers, order = wellplate_layers(
        plate(format=96, pattern="droplet", wells=["A1", "H12", "C3"]), 0.3, 0.4
    )
    assert layers[0].n_paths == 3 and (layers[0].role == ROLE_DROPLET).all()
    assert sorted(order) == ["A1", "C3", "H12"]
    with pytest.raises(ConfigurationError, match=r"object.wells\[1\]: 'Q1'"):
        well_centres(plate(format=96, wells=["A1", "Q1"]))


def test_droplet_volume_and_lifted_travel() -> None:
    job = make_job(
        printer="marlin-pneumatic",
        travel_lift_mm=3.0,
        object={
            "type": "wellplate",
            "format": 96,
            "pattern": "droplet",
            "wells": ["A1", "A2"],
            "droplet_volume_ul": 2.0,
        },
    )
    result = plan_job(job)
    assert result.volume_ul == pytest.approx(4.0)
    lines = result.gcode.splitlines()
    dwell = [ln for ln in lines if ln.startswith("G4 P")]
    q = result.totals[0].flow_mm3_s
    assert [float(d[4:]) for d in dwell] == pytest.approx([1000 * 2.0 / q] * 2, abs=1)
    # between wells the nozzle rises by the lift before travelling
    close = lines.index("M127")
    assert lines[close + 1].startswith("G0 Z3.3") and lines[close + 2].startswith("G0 X")

"""Well plates: standard footprints, a pattern per well, wells visited in a short order.

Footprint 127.76 × 85.48 mm (ANSI/SLAS 1-2004). Well grids are centred on the
footprint, which reproduces the A1 offsets of ANSI/SLAS 4-2004 for 96 and 384
wells (14.38/11.24 mm and 12.13/8.99 mm); pitches and diameters of 6–48 wells
are the common (Corning-type) values, which SLAS does not standardise.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import ConfigurationError
from ._job import ScaffoldObject, WellPlateObject
from ._order import order_points
from ._paths import ROLE_DROPLET, ROLE_INFILL, LayerPaths
from ._scaffold import scaffold_layers

__all__ = ["FOOTPRINT_MM", "PLATE_FORMATS", "PlateFormat", "well_centres", "wellplate_layers"]

FOOTPRINT_MM = (127.76, 85.48)
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class PlateFormat:
    rows: int
    cols: int
    pitch_mm: float
    well_diameter_mm: float

    @property
    def a1_offset_mm(self) -> tuple[float, float]:
        """Centre of A1 from the plate's top-left corner (x along columns, y along rows)."""
        return (
            (FOOTPRINT_MM[0] - (self.cols - 1) * self.pitch_mm) / 2,
            (FOOTPRINT_MM[1] - (self.rows - 1) * self.pitch_mm) / 2,
        )


PLATE_FORMATS: dict[int, PlateFormat] = {
    6: PlateFormat(2, 3, 39.12, 34.8),
    12: PlateFormat(3, 4, 26.01, 22.1),
    24: PlateFormat(4, 6, 19.30, 15.6),
    48: PlateFormat(6, 8, 13.08, 11.0),
    96: PlateFormat(8, 12, 9.00, 6.4),
    384: PlateFormat(16, 24, 4.50, 3.3),
}
_WELL = re.compile(r"^([A-Pa-p])(\d{1,2})$")


def well_centres(obj: WellPlateObject) -> tuple[list[str], F64]:
    """Names and bed positions of the chosen wells.

    ``origin_mm`` is the plate's corner nearest the bed origin (min X, min Y); row A
    lies along the far edge (largest Y), column 1 at the smallest X.
    """
    fmt = PLATE_FORMATS[obj.format]
    names = obj.wells or [f"{chr(65 + r)}{c + 1}" for r in range(fmt.rows) for c in range(fmt.cols)]
    ox, oy = fmt.a1_offset_mm
    pts = []
    for i, name in enumerate(names):
        m = _WELL.match(name)
        r = ord(m.group(1).upper()) - 65 if m else -1
        c = int(m.group(2)) - 1 if m else -1
        if not (0 <= r < fmt.rows and 0 <= c < fmt.cols):
            raise ConfigurationError(
                f"object.wells[{i}]: {name!r} is not a well of a {obj.format}-well plate "
                f"(A1…{chr(64 + fmt.rows)}{fmt.cols})"
            )
        pts.append(
            (
                obj.origin_mm[0] + ox + c * fmt.pitch_mm,
                obj.origin_mm[1] + FOOTPRINT_MM[1] - oy - r * fmt.pitch_mm,
            )
        )
    return names, np.array(pts, np.float64)


def wellplate_layers(
    obj: WellPlateObject, layer_height_mm: float, strand_width_mm: float
) -> tuple[list[LayerPaths], list[str]]:
    """Layers of the plate's pattern, wells in a short travel order; also the well order."""
    fmt = PLATE_FORMATS[obj.format]
    names, centres = well_centres(obj)
    order = order_points(centres, float(centres[0, 0]) - fmt.pitch_mm, float(centres[0, 1]))
    centres = centres[order]
    names = [names[int(i)] for i in order]
    d = fmt.well_diameter_mm * obj.fill_fraction
    layers = []
    if obj.pattern == "droplet":
        for li in range(obj.layers):
            z = (li + 1) * layer_height_mm
            layers.append(
                LayerPaths.from_paths(z, [c[None, :] for c in centres], obj.tool, ROLE_DROPLET)
            )
        return layers, names
    if d < 2 * strand_width_mm:
        raise ConfigurationError(
            f"object.fill_fraction: the pattern ({d:.2f} mm) is too small for strands of "
            f"{strand_width_mm} mm in a {obj.format}-well plate"
        )
    spacing = obj.lattice_spacing_mm or (
        strand_width_mm if obj.pattern == "disc" else 2.5 * strand_width_mm
    )
    unit = ScaffoldObject(
        type="scaffold",
        shape="disc",
        center_mm=(0.0, 0.0),
        diameter_mm=d,
        layers=obj.layers,
        strand_spacing_mm=spacing,
        angles_deg=[0.0, 90.0] if obj.pattern == "lattice" else [0.0],
        perimeters=1 if obj.pattern == "disc" else 0,
    )
    unit_layers, _ = scaffold_layers(unit, layer_height_mm, strand_width_mm, obj.tool)
    for ul in unit_layers:
        paths = []
        closed = []
        for c in centres:
            for i in range(ul.n_paths):
                paths.append(ul.path(i) + c)
                closed.append(bool(ul.closed[i]))
        layers.append(LayerPaths.from_paths(ul.z, paths, obj.tool, ROLE_INFILL, closed))
    return layers, names


def droplet_time_s(volume_ul: float, flow_mm3_s: float) -> float:
    """Valve-open time that deposits a droplet of ``volume_ul`` at ``flow_mm3_s``."""
    return volume_ul / flow_mm3_s if flow_mm3_s > 0 else math.inf

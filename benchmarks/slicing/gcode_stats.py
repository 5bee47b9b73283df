"""Read what a slicer's G-code deposits: layers, extruded path length, outer-wall areas per layer."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labdevices.toolpath._contours import orient_contours

# each slicer's name for the outermost perimeter
OUTER = {"WALL-OUTER", "External perimeter"}
PERIMETER = OUTER | {"WALL-INNER", "Perimeter"}
INFILL = {"FILL", "Internal infill"}
_WORD = re.compile(r"([XYZEF])(-?[\d.]+)")


@dataclass
class Stats:
    layers: int = 0
    perimeter_mm: float = 0.0
    infill_mm: float = 0.0
    other_mm: float = 0.0
    infill_lines_mm: float = 0.0  # infill moves along the infill directions (45° or 135°)
    outer_area: list[float] = field(default_factory=list)  # net area inside the outer walls

    @property
    def total_mm(self) -> float:
        return self.perimeter_mm + self.infill_mm + self.other_mm


def _net_area(loops: list[list[tuple[float, float]]]) -> float:
    loops = [lp for lp in loops if len(lp) >= 3]
    if not loops:
        return 0.0
    xy = np.array([p for lp in loops for p in lp], np.float64)
    start = np.cumsum([0] + [len(lp) for lp in loops]).astype(np.int64)
    _, _, area = orient_contours(xy, start, np.array([0, len(loops)], np.int64))
    return float(area.sum())


def read(path: Path) -> Stats:
    st = Stats()
    x = y = z = e = 0.0
    relative_e = False
    kind = ""
    layer_z: float | None = None
    loops: list[list[tuple[float, float]]] = []
    cur: list[tuple[float, float]] | None = None

    def close_layer() -> None:
        if layer_z is not None:
            st.layers += 1
            st.outer_area.append(_net_area(loops))

    with path.open() as fh:
        for line in fh:
            if line.startswith(";TYPE:"):
                kind = line[6:].strip()
                cur = None
                continue
            code, _, rest = line.partition(";")[0].partition(" ")
            if code in ("G0", "G1"):
                words = dict(_WORD.findall(rest))
                nx = float(words.get("X", x))
                ny = float(words.get("Y", y))
                nz = float(words.get("Z", z))
                if "E" in words:
                    ne = float(words["E"])
                    de = ne if relative_e else ne - e
                    e = e + ne if relative_e else ne
                else:
                    de = 0.0
                d = math.hypot(nx - x, ny - y)
                if de > 0 and d > 0:
                    if layer_z is None or abs(nz - layer_z) > 1e-6:
                        close_layer()
                        layer_z = nz
                        loops = []
                    if kind in PERIMETER:
                        st.perimeter_mm += d
                    elif kind in INFILL:
                        st.infill_mm += d
                        angle = math.degrees(math.atan2(ny - y, nx - x)) % 90.0
                        if abs(angle - 45.0) < 1.0:
                            st.infill_lines_mm += d
                    else:
                        st.other_mm += d
                    if kind in OUTER:
                        if cur is None:
                            cur = [(x, y)]
                            loops.append(cur)
                        cur.append((nx, ny))
                elif d > 0:
                    cur = None  # a travel ends a wall loop
                x, y, z = nx, ny, nz
            elif code == "G92":
                words = dict(_WORD.findall(rest))
                if "E" in words:
                    e = float(words["E"])
            elif code == "M83":
                relative_e = True
            elif code == "M82":
                relative_e = False
    close_layer()
    return st

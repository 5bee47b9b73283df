"""Read back what a slicer's G-code does: layers, extruded and travel lengths, Z lifts, outer-wall loops.

PrusaSlicer and CuraEngine extrude with E; labdevices' pneumatic dialect deposits on
every G1 (the valve is open) and travels with G0.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

# each slicer's name for the outermost perimeter
OUTER = {"WALL-OUTER", "External perimeter"}
PERIMETER = OUTER | {"WALL-INNER", "Perimeter"}
INFILL = {"FILL", "Internal infill"}
_WORD = re.compile(r"([XYZEF])(-?[\d.]+)")
_PRUSA_TIME = re.compile(r"estimated printing time \(normal mode\) = (.*)")
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


@dataclass
class Stats:
    layers: int = 0
    extruded_mm: float = 0.0
    perimeter_mm: float = 0.0
    infill_mm: float = 0.0
    travel_xy_mm: float = 0.0
    z_moves_mm: float = 0.0  # every |dz|
    z_top: float = 0.0
    x_range: tuple[float, float] = (math.inf, -math.inf)
    y_range: tuple[float, float] = (math.inf, -math.inf)
    print_time_s: float | None = None
    # outer-wall loops of each layer, as (x, y) point lists
    outer_loops: list[list[list[tuple[float, float]]]] = field(default_factory=list)

    @property
    def z_lift_mm(self) -> float:
        """Z travel beyond rising layer by layer: the lifts, up and down."""
        return max(0.0, self.z_moves_mm - self.z_top)


def read(path: Path, pneumatic: bool = False) -> Stats:
    st = Stats()
    x = y = z = e = 0.0
    relative_e = False
    kind = ""
    layer_z: float | None = None
    cur: list[tuple[float, float]] | None = None
    loops: list[list[tuple[float, float]]] = []
    xs = [math.inf, -math.inf]
    ys = [math.inf, -math.inf]
    have_xy = False

    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith(";TYPE:"):
                kind = line[6:].strip()
                cur = None
                continue
            if line.startswith(";TIME_ELAPSED:"):  # CuraEngine, at every layer's end
                st.print_time_s = float(line[14:])
                continue
            if line.startswith("; estimated printing time (normal mode)"):
                m = _PRUSA_TIME.search(line)
                if m:
                    st.print_time_s = sum(
                        int(v) * _UNITS[u] for v, u in re.findall(r"(\d+)([dhms])", m.group(1))
                    )
                continue
            if line.startswith("; estimated time:"):
                st.print_time_s = float(line.split(":")[1].split()[0])
                continue
            code, _, rest = line.partition(";")[0].strip().partition(" ")
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
                extruding = (de > 0 or (pneumatic and code == "G1")) and d > 0
                if have_xy:
                    st.z_moves_mm += abs(nz - z)
                if extruding:
                    if layer_z is None or abs(nz - layer_z) > 1e-6:
                        if layer_z is not None:
                            st.outer_loops.append(loops)
                        layer_z = nz
                        loops = []
                        st.layers += 1
                    st.extruded_mm += d
                    st.z_top = max(st.z_top, nz)
                    for v, r in ((nx, xs), (ny, ys)):
                        r[0] = min(r[0], v)
                        r[1] = max(r[1], v)
                    if kind in PERIMETER:
                        st.perimeter_mm += d
                    elif kind in INFILL:
                        st.infill_mm += d
                    if kind in OUTER:
                        if cur is None:
                            cur = [(x, y)]
                            loops.append(cur)
                        cur.append((nx, ny))
                elif d > 0:
                    if have_xy:
                        st.travel_xy_mm += d
                    cur = None  # a travel ends a wall loop
                have_xy = have_xy or ("X" in words and "Y" in words)
                x, y, z = nx, ny, nz
            elif code == "G92":
                words = dict(_WORD.findall(rest))
                if "E" in words:
                    e = float(words["E"])
            elif code == "M83":
                relative_e = True
            elif code == "M82":
                relative_e = False
    if layer_z is not None:
        st.outer_loops.append(loops)
    st.x_range = (xs[0], xs[1])
    st.y_range = (ys[0], ys[1])
    return st

"""Helpers for the toolpath tests: jobs built in code, and a small G-code reader."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from labdevices.toolpath import PrintJob

_WORD = re.compile(r"([A-Z])(-?\d+(?:\.\d*)?)")


def job_dict(**over: Any) -> dict[str, Any]:
    """A valid scaffold job as plain data; keyword arguments replace top-level fields."""
    data: dict[str, Any] = {
        "name": "test",
        "printer": "cellink-biox",
        "batch_id": "B1",
        "patient_id": "P1",
        "layer_height_mm": 0.3,
        "printheads": [
            {
                "tool": 0,
                "strand_width_mm": 0.45,
                "print_speed_mm_s": 8.0,
                "bioink": {
                    "name": "alginate",
                    "cell_density_per_ml": 1e6,
                    "rheology": {"consistency_pa_sn": 0.924272, "flow_index": 0.686},
                },
                "nozzle": {"kind": "needle", "inner_diameter_mm": 0.41, "length_mm": 12.7},
            }
        ],
        "object": {
            "type": "scaffold",
            "shape": "rectangle",
            "size_mm": [12.0, 12.0],
            "layers": 4,
            "strand_spacing_mm": 1.2,
        },
    }
    data.update(over)
    return data


def make_job(**over: Any) -> PrintJob:
    return PrintJob.model_validate(job_dict(**over))


@dataclass
class Run:
    """What a G-code program does, replayed: path deposited while a valve is open, etc."""

    commands: list[str] = field(default_factory=list)
    deposit_mm: dict[int, float] = field(default_factory=dict)
    deposit_s: dict[int, float] = field(default_factory=dict)
    e_mm: float = 0.0


def replay(
    gcode: str, valve_open: dict[str, int], valve_close: dict[str, int], select: dict[str, int]
) -> Run:
    """Follow G0/G1 moves; sum path length and time while each tool's valve is open."""
    run = Run()
    x = y = 0.0
    f = 600.0
    tool = 0
    is_open: set[int] = set()
    for raw in gcode.splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        run.commands.append(line)
        if line in select:
            tool = select[line]
        if line in valve_open:
            is_open.add(valve_open[line])
        if line in valve_close:
            is_open.discard(valve_close[line])
        cmd = line.split()[0]
        if cmd in ("G0", "G1"):
            words = dict((k, float(v)) for k, v in _WORD.findall(line[len(cmd) :]))
            f = words.get("F", f)
            nx, ny = words.get("X", x), words.get("Y", y)
            d = math.hypot(nx - x, ny - y)
            if cmd == "G1" and tool in is_open:
                run.deposit_mm[tool] = run.deposit_mm.get(tool, 0.0) + d
                run.deposit_s[tool] = run.deposit_s.get(tool, 0.0) + d / (f / 60)
            run.e_mm += words.get("E", 0.0)
            x, y = nx, ny
    return run


BIOX_VALVES = (
    {f"M750 T{t}": t for t in range(3)},
    {f"M751 T{t}": t for t in range(3)},
    {f"T{t}": t for t in range(3)},
)

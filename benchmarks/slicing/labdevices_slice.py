"""Slice an STL to G-code with labdevices, as the benchmark runs it (in its own process).

The G-code is written by a numba byte writer defined here: labdevices' own emitter
(``labdevices.toolpath.emit_gcode``) needs a print job with printheads and bioinks, which a bare
mesh benchmark does not have. Prints one JSON line of phase timings.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

t_start = time.perf_counter()

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
from numba import njit  # noqa: E402

from labdevices._exit import skip_final_collection  # noqa: E402
from labdevices.toolpath._mesh import slice_mesh_walls  # noqa: E402
from labdevices.toolpath._paths import ROLE_PERIMETER  # noqa: E402

FILAMENT_AREA = np.pi * (1.75 / 2) ** 2


@njit(cache=True)
def _put_int(buf: npt.NDArray[np.uint8], pos: int, v: int) -> int:
    if v == 0:
        buf[pos] = 48
        return pos + 1
    tmp = np.empty(20, np.uint8)
    n = 0
    while v > 0:
        tmp[n] = 48 + v % 10
        v //= 10
        n += 1
    for i in range(n):
        buf[pos + i] = tmp[n - 1 - i]
    return pos + n


@njit(cache=True)
def _put_fixed(buf: npt.NDArray[np.uint8], pos: int, x: float, decimals: int) -> int:
    scale = 10**decimals
    v = int(np.round(x * scale))
    if v < 0:
        buf[pos] = 45
        pos += 1
        v = -v
    pos = _put_int(buf, pos, v // scale)
    buf[pos] = 46
    pos += 1
    f = v % scale
    for d in range(decimals - 1, -1, -1):
        buf[pos + d] = 48 + f % 10
        f //= 10
    return pos + decimals


@njit(cache=True)
def _put(buf: npt.NDArray[np.uint8], pos: int, text: npt.NDArray[np.uint8]) -> int:
    for i in range(text.shape[0]):
        buf[pos + i] = text[i]
    return pos + text.shape[0]


@njit(cache=True)
def write_gcode(
    xy: npt.NDArray[np.float64],
    start: npt.NDArray[np.int64],
    path_type: npt.NDArray[np.int64],
    closed: npt.NDArray[np.bool_],
    layer_path: npt.NDArray[np.int64],
    layer_z: npt.NDArray[np.float64],
    e_per_mm: float,
    labels: npt.NDArray[np.uint8],
    label_start: npt.NDArray[np.int64],
) -> npt.NDArray[np.uint8]:
    """G0 travel to each path, G1 with absolute E along it; ';TYPE:' comments per path."""
    n_pts = xy.shape[0] + closed.sum()
    buf = np.empty(64 * (n_pts + 2 * start.shape[0] + 2 * layer_z.shape[0]) + 1024, np.uint8)
    g0 = np.array([71, 48, 32, 88], np.uint8)  # "G0 X"
    g1 = np.array([71, 49, 32, 88], np.uint8)  # "G1 X"
    z_cmd = np.array([71, 48, 32, 90], np.uint8)  # "G0 Z"
    pos = 0
    e = 0.0
    for k in range(layer_z.shape[0]):
        pos = _put(buf, pos, z_cmd)
        pos = _put_fixed(buf, pos, layer_z[k], 3)
        buf[pos] = 10
        pos += 1
        for p in range(layer_path[k], layer_path[k + 1]):
            t = path_type[p]
            pos = _put(buf, pos, labels[label_start[t] : label_start[t + 1]])
            a = start[p]
            b = start[p + 1]
            m = b - a + (1 if closed[p] else 0)
            for q in range(m):
                i = a + (q if q < b - a else 0)
                pos = _put(buf, pos, g0 if q == 0 else g1)
                pos = _put_fixed(buf, pos, xy[i, 0], 3)
                buf[pos] = 32
                buf[pos + 1] = 89
                pos += 2
                pos = _put_fixed(buf, pos, xy[i, 1], 3)
                if q > 0:
                    j = a + (q - 1)
                    e += e_per_mm * np.hypot(xy[i, 0] - xy[j, 0], xy[i, 1] - xy[j, 1])
                    buf[pos] = 32
                    buf[pos + 1] = 69
                    pos += 2
                    pos = _put_fixed(buf, pos, e, 5)
                buf[pos] = 10
                pos += 1
    return buf[:pos]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mesh", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--layer", type=float, default=0.2)
    ap.add_argument("--width", type=float, default=0.4)
    ap.add_argument("--perimeters", type=int, default=2)
    ap.add_argument("--spacing", type=float, required=True)
    ap.add_argument("--resolution", type=float, default=0.0125)
    a = ap.parse_args()
    t0 = time.perf_counter()
    layers, n_outer = slice_mesh_walls(
        a.mesh, a.layer, a.width, a.perimeters, a.spacing, resolution_mm=a.resolution
    )
    t1 = time.perf_counter()
    # flatten the layers; path types: 0 outer wall, 1 inner wall, 2 infill
    xy = np.concatenate([lp.xy for lp in layers])
    offsets = np.cumsum([0] + [len(lp.xy) for lp in layers])
    start = np.concatenate(
        [lp.start[:-1] + o for lp, o in zip(layers, offsets, strict=False)] + [offsets[-1:]]
    )
    types = []
    for lp, n in zip(layers, n_outer, strict=True):
        t = np.where(lp.role == ROLE_PERIMETER, 1, 2)
        t[:n] = 0
        types.append(t)
    path_type = np.concatenate(types).astype(np.int64)
    closed = np.concatenate([lp.closed for lp in layers])
    layer_path = np.cumsum([0] + [lp.n_paths for lp in layers]).astype(np.int64)
    layer_z = np.array([lp.z for lp in layers])
    names = [b";TYPE:WALL-OUTER\n", b";TYPE:WALL-INNER\n", b";TYPE:FILL\n"]
    labels = np.frombuffer(b"".join(names), np.uint8)
    label_start = np.cumsum([0] + [len(n) for n in names]).astype(np.int64)
    e_per_mm = a.width * a.layer / FILAMENT_AREA
    buf = write_gcode(
        xy, start, path_type, closed, layer_path, layer_z, e_per_mm, labels, label_start
    )
    with a.out.open("wb") as fh:
        fh.write(b"; generated by labdevices slice_mesh (benchmark writer)\nG21\nG90\nM82\n")
        fh.write(buf.tobytes())
    t2 = time.perf_counter()
    print(
        json.dumps(
            {
                "import_s": t0 - t_start,
                "slice_s": t1 - t0,
                "gcode_s": t2 - t1,
                "total_s": t2 - t_start,
            }
        )
    )
    skip_final_collection()  # as `labdevices toolpath` does


if __name__ == "__main__":
    main()

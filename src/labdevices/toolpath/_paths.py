"""Layer paths as flat arrays: what every object generator produces and the G-code emitter consumes.

One ``LayerPaths`` per layer. Points of all paths of the layer are stacked in
``xy``; path ``i`` is ``xy[start[i]:start[i + 1]]``. Flat arrays keep numba
kernels and numpy free of Python objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["ROLE_DROPLET", "ROLE_INFILL", "ROLE_PERIMETER", "LayerPaths"]

ROLE_PERIMETER = 0
ROLE_INFILL = 1
ROLE_DROPLET = 2  # a dot deposited in place (well plates); a path of one point


@dataclass
class LayerPaths:
    """The deposition paths of one layer, in printing order.

    ``z``: layer top height in mm; ``xy``: (N, 2) float64 mm; ``start``: (P + 1,)
    int64 offsets into ``xy``; ``tool``: (P,) int32 printhead of each path;
    ``role``: (P,) int8 (ROLE_*); ``closed``: (P,) bool, the path returns to its
    first point; ``island``: (P,) int32 connected region of the layer each path
    lies in, or None when unknown (a travel between islands crosses open space);
    ``outer``: (P,) bool, the path is an outer wall (bounds the layer's material:
    an outline or a hole's edge), or None when unknown.
    """

    z: float
    xy: npt.NDArray[np.float64]
    start: npt.NDArray[np.int64]
    tool: npt.NDArray[np.int32]
    role: npt.NDArray[np.int8]
    closed: npt.NDArray[np.bool_]
    island: npt.NDArray[np.int32] | None = None
    outer: npt.NDArray[np.bool_] | None = None

    @property
    def n_paths(self) -> int:
        return int(self.start.shape[0] - 1)

    def path(self, i: int) -> npt.NDArray[np.float64]:
        return self.xy[self.start[i] : self.start[i + 1]]

    @classmethod
    def empty(cls, z: float) -> LayerPaths:
        return cls(
            z,
            np.zeros((0, 2)),
            np.zeros(1, np.int64),
            np.zeros(0, np.int32),
            np.zeros(0, np.int8),
            np.zeros(0, np.bool_),
        )

    @classmethod
    def from_paths(
        cls,
        z: float,
        paths: list[npt.NDArray[np.float64]],
        tool: int | list[int] = 0,
        role: int | list[int] = ROLE_INFILL,
        closed: bool | list[bool] = False,
    ) -> LayerPaths:
        """Build from a list of (k, 2) arrays; scalars apply to every path."""
        if not paths:
            return cls.empty(z)
        n = len(paths)
        lengths = np.array([len(p) for p in paths], np.int64)
        start = np.zeros(n + 1, np.int64)
        np.cumsum(lengths, out=start[1:])
        return cls(
            z,
            np.ascontiguousarray(np.concatenate(paths).astype(np.float64)),
            start,
            np.broadcast_to(np.asarray(tool, np.int32), (n,)).copy(),
            np.broadcast_to(np.asarray(role, np.int8), (n,)).copy(),
            np.broadcast_to(np.asarray(closed, np.bool_), (n,)).copy(),
        )

    def length_mm(self) -> float:
        """Total deposited path length (closed paths include their closing segment)."""
        total = 0.0
        for i in range(self.n_paths):
            p = self.path(i)
            if self.closed[i] and len(p) > 1:
                p = np.vstack([p, p[:1]])
            total += float(np.sum(np.hypot(*np.diff(p, axis=0).T)))
        return total

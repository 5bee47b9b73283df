"""Travel ordering: the numba kernels agree with their numpy references and shorten tours."""

from __future__ import annotations

import numpy as np
import pytest

from labdevices.toolpath._order import (
    nearest_neighbour,
    nearest_neighbour_ref,
    order_points,
    tour_length,
    two_opt,
    two_opt_ref,
)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_kernels_match_references(seed: int) -> None:
    pts = np.random.default_rng(seed).uniform(0, 100, (150, 2))
    nn = nearest_neighbour(pts, 0.0, 0.0)
    np.testing.assert_array_equal(nn, nearest_neighbour_ref(pts, 0.0, 0.0))
    opt = two_opt(pts, nn, 0.0, 0.0, 50)
    np.testing.assert_array_equal(opt, two_opt_ref(pts, nn, 0.0, 0.0, 50))
    assert sorted(opt) == list(range(150))
    assert tour_length(pts, opt, 0, 0) <= tour_length(pts, nn, 0, 0) + 1e-9


def test_two_opt_untangles_a_crossing() -> None:
    pts = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    tangled = np.array([0, 1, 2, 3])  # crosses itself
    fixed = two_opt(pts, tangled, -1.0, 0.0, 10)
    assert tour_length(pts, fixed, -1, 0) < tour_length(pts, tangled, -1, 0)


def test_grid_is_visited_without_long_jumps() -> None:
    g = np.array([(x, y) for y in range(8) for x in range(12)], np.float64) * 9.0
    order = order_points(g[::-1].copy(), 0.0, 0.0)
    assert tour_length(g[::-1], order, 0, 0) <= 96 * 9.0 + 2 * 9.0
    assert order_points(np.zeros((0, 2))).shape == (0,)

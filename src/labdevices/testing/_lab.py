"""Fixture that starts a whole simulated lab (printer, incubator, bioreactor, sensor hub)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from ..sim.lab import SimulatedLab

__all__ = ["sim_lab"]


@pytest_asyncio.fixture
async def sim_lab() -> AsyncIterator[SimulatedLab]:
    """The shipped demo lab, running; ``sim_lab.addresses[name]`` and ``sim_lab.profiles[name]``.

    For another lab: ``async with SimulatedLab.from_file(path) as lab:`` in the test.
    """
    async with SimulatedLab.from_file("demo-lab") as lab:
        yield lab

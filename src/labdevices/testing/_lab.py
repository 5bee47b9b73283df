"""Fixture that starts a whole simulated lab (printer, incubator, bioreactor, sensor hub)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ._asyncio import async_fixture

if TYPE_CHECKING:
    from ..sim.lab import SimulatedLab

__all__ = ["sim_lab"]


@async_fixture
async def sim_lab() -> AsyncIterator[SimulatedLab]:
    """The shipped demo lab, running; ``sim_lab.addresses[name]`` and ``sim_lab.profiles[name]``.

    For another lab: ``async with SimulatedLab.from_file(path) as lab:`` in the test.
    """
    from ..sim.lab import SimulatedLab

    async with SimulatedLab.from_file("demo-lab") as lab:
        yield lab

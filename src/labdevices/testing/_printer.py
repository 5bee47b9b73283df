"""Fixtures for a simulated Marlin-style bioprinter on a real pseudo-terminal (or TCP).

``sim_printer``
    A running ``SimulatedPrinter`` emulating the ``marlin-pneumatic`` profile with
    instant motion (``time_scale=0``), on a pseudo-terminal. Point your code at
    ``sim_printer.url`` (the pty path, e.g. ``/dev/pts/5``), then assert on
    ``sim_printer.executed`` (every command executed, once, in order, without
    line numbers or checksums) and ``sim_printer.state`` (valves, pressures,
    temperatures, position, UV exposures, ``halted``)::

        async def test_my_protocol(sim_printer):
            await run_my_protocol(port=sim_printer.url)
            assert sim_printer.executed[-1] == "M127"
            assert sim_printer.state.valves == {0: False, 1: False}

``sim_printer_factory``
    Starts more printers, each with its own profile, settings and faults; all
    are stopped when the test ends::

        async def test_survives_noise(sim_printer_factory):
            sim = await sim_printer_factory(
                "cellink-biox",
                config=SimPrinterConfig(faults=FaultConfig(corrupt_rate=0.01), seed=3),
                transport="tcp",  # url: socket://127.0.0.1:PORT
            )

Both need an asyncio test runner (pytest-asyncio).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Literal

from ..profiles import GcodeProfile
from ..sim.printer import SimPrinterConfig, SimulatedPrinter
from ._asyncio import async_fixture as _async_fixture

__all__ = ["SimPrinterFactory", "sim_printer", "sim_printer_factory"]

SimPrinterFactory = Callable[..., Awaitable[SimulatedPrinter]]


@_async_fixture
async def sim_printer_factory() -> AsyncIterator[SimPrinterFactory]:
    """``await factory(profile="marlin-pneumatic", *, config=None, transport="pty")``."""
    async with AsyncExitStack() as stack:

        async def start(
            profile: str | Path | GcodeProfile | None = None,
            *,
            config: SimPrinterConfig | None = None,
            transport: Literal["pty", "tcp"] = "pty",
        ) -> SimulatedPrinter:
            settings = config if config is not None else SimPrinterConfig(time_scale=0.0)
            sim = SimulatedPrinter(profile, settings, transport=transport)
            return await stack.enter_async_context(sim)

        yield start


@_async_fixture
async def sim_printer(sim_printer_factory: Any) -> SimulatedPrinter:
    """A running simulated ``marlin-pneumatic`` printer on a pty, instant motion."""
    sim: SimulatedPrinter = await sim_printer_factory()
    return sim

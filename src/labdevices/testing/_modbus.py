"""Fixtures that start a simulated CO2 incubator (Modbus TCP) and bioreactor (Modbus RTU over a pty).

``modbus_incubator`` and ``modbus_bioreactor`` give a running ``ModbusSim`` with
the ``address`` to hand to ``labdevices.devices.create_device``; ``modbus_sim``
is a factory for simulators with faults, other seeds or several units on a bus.
All of them are stopped when the test ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ._asyncio import async_fixture

if TYPE_CHECKING:
    # pymodbus is imported when a fixture is used, not when pytest loads the plugin.
    from ..profiles import ModbusProfile
    from ..sim.modbus import FaultPlan, ModbusSimulator

__all__ = ["ModbusSim", "modbus_bioreactor", "modbus_incubator", "modbus_sim"]


@dataclass
class ModbusSim:
    """A running simulator, where it listens and the profile it serves."""

    sim: ModbusSimulator
    address: str
    profile: ModbusProfile

    def address_for(self, unit: int) -> str:
        """The address of another unit on the same port or bus."""
        base = self.address.split("?", 1)[0]
        return f"{base}?unit={unit}"


StartSim = Callable[..., Awaitable[ModbusSim]]


async def _start(
    kind: Literal["incubator", "bioreactor"],
    *,
    seed: int = 0,
    time_scale: float = 60.0,
    faults: FaultPlan | None = None,
    units: tuple[int, ...] = (1,),
) -> ModbusSim:
    from ..sim.bioreactor import bioreactor_simulator
    from ..sim.incubator import incubator_simulator

    if kind == "incubator":
        sim = incubator_simulator(seed=seed, time_scale=time_scale, faults=faults, unit=units[0])
        port = await sim.serve_tcp()
        address = f"tcp://127.0.0.1:{port}?unit={units[0]}"
    else:
        sim = bioreactor_simulator(seed=seed, time_scale=time_scale, faults=faults, units=units)
        path = await sim.serve_rtu()
        address = f"rtu://{path}?unit={units[0]}"
    profile = sim.units[units[0]].profile
    return ModbusSim(sim, address, profile)


@async_fixture
async def modbus_sim() -> AsyncIterator[StartSim]:
    """A factory: ``await modbus_sim("incubator" | "bioreactor", seed=, time_scale=, faults=, units=)``."""
    started: list[ModbusSimulator] = []

    async def start(kind: Literal["incubator", "bioreactor"], **options: object) -> ModbusSim:
        running = await _start(kind, **options)  # type: ignore[arg-type]
        started.append(running.sim)
        return running

    try:
        yield start
    finally:
        for sim in started:
            await sim.stop()


@async_fixture
async def modbus_incubator() -> AsyncIterator[ModbusSim]:
    """A simulated CO2 incubator on Modbus TCP at a free port (physics 60x real time)."""
    running = await _start("incubator")
    try:
        yield running
    finally:
        await running.sim.stop()


@async_fixture
async def modbus_bioreactor() -> AsyncIterator[ModbusSim]:
    """A simulated stirred-tank bioreactor on Modbus RTU over a pseudo-terminal (60x real time)."""
    running = await _start("bioreactor")
    try:
        yield running
    finally:
        await running.sim.stop()

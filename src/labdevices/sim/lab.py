"""A whole simulated lab from one TOML file: printer, incubator, bioreactor, sensor hub.

``async with SimulatedLab.from_file("simulators/demo-lab.toml") as lab:`` starts
every device on a free port or pseudo-terminal; ``lab.addresses`` and
``lab.profiles`` say how to reach each one (as the daemon config wants them).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Annotated, Literal, Self

from pydantic import Field

from .._resources import data_dir
from ..files import StrictModel, load_toml_model
from ._printer_config import FaultConfig, SimPrinterConfig

__all__ = [
    "BioreactorSim",
    "IncubatorSim",
    "LabConfig",
    "PrinterSim",
    "SensorHubSim",
    "SimulatedLab",
    "lab_path",
]


class _DeviceSim(StrictModel):
    profile: str
    seed: int = 0
    time_scale: float = Field(default=1.0, ge=0.0, description="simulated seconds per wall second")


class PrinterSim(_DeviceSim):
    """A Marlin-style bioprinter on a pseudo-terminal (or TCP, reached as socket://)."""

    kind: Literal["printer"]
    profile: str = "marlin-pneumatic"
    time_scale: float = Field(default=1.0, ge=0.0, description="wall seconds per firmware second")
    transport: Literal["pty", "tcp"] = "pty"
    advanced_ok: bool = True
    faults: FaultConfig = FaultConfig()


class IncubatorSim(_DeviceSim):
    """A CO2 incubator on Modbus TCP."""

    kind: Literal["incubator"]
    profile: str = "co2-incubator"
    unit: int = Field(default=1, ge=1, le=247)
    door_openings_per_hour: float = Field(default=0.0, ge=0.0)


class BioreactorSim(_DeviceSim):
    """A stirred-tank bioreactor on Modbus RTU over a pseudo-terminal."""

    kind: Literal["bioreactor"]
    profile: str = "stirred-tank-bioreactor"
    unit: int = Field(default=1, ge=1, le=247)


class SensorHubSim(_DeviceSim):
    """An OPC UA sensor hub (pH, dissolved oxygen, temperature, biomass)."""

    kind: Literal["sensor-hub"]
    profile: str = "opcua-sensor-hub"


DeviceSim = Annotated[
    PrinterSim | IncubatorSim | BioreactorSim | SensorHubSim, Field(discriminator="kind")
]


class LabConfig(StrictModel):
    """A simulated lab: its site name and its devices by name."""

    site: str = "demo"
    devices: dict[str, DeviceSim] = Field(min_length=1)


def lab_path(name_or_path: str | Path) -> Path:
    """A path as given, or a shipped lab by name (``demo-lab``)."""
    p = Path(name_or_path)
    if p.exists() or p.suffix == ".toml" or len(p.parts) > 1:
        return p
    return data_dir("simulators") / f"{name_or_path}.toml"


class SimulatedLab:
    """Runs every simulated device of a ``LabConfig`` until the context exits."""

    def __init__(self, config: LabConfig) -> None:
        self.config = config
        self.addresses: dict[str, str] = {}
        self.profiles: dict[str, str] = {}
        self.simulators: dict[str, object] = {}
        self._stack: AsyncExitStack | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> SimulatedLab:
        return cls(load_toml_model(lab_path(path), LabConfig))

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeError("simulated lab already running")
        stack = self._stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            for name, dev in self.config.devices.items():
                self.addresses[name] = await self._start(stack, name, dev)
                self.profiles[name] = dev.profile
        except BaseException as exc:
            self._stack = None
            await stack.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(exc_type, exc, tb)

    async def _start(
        self,
        stack: AsyncExitStack,
        name: str,
        dev: PrinterSim | IncubatorSim | BioreactorSim | SensorHubSim,
    ) -> str:
        if isinstance(dev, PrinterSim):
            from .printer import SimulatedPrinter

            printer = await stack.enter_async_context(
                SimulatedPrinter(
                    config=SimPrinterConfig(
                        profile=dev.profile,
                        time_scale=dev.time_scale,
                        seed=dev.seed,
                        advanced_ok=dev.advanced_ok,
                        faults=dev.faults,
                    )
                )
            )
            self.simulators[name] = printer
            if dev.transport == "tcp":
                port = await printer.serve_tcp()
                return f"socket://127.0.0.1:{port}"
            assert printer.port is not None
            return printer.port
        if isinstance(dev, IncubatorSim | BioreactorSim):
            from ..profiles import ModbusProfile, load_profile
            from .bioreactor import bioreactor_simulator
            from .incubator import incubator_simulator

            profile = load_profile(dev.profile)
            assert isinstance(profile, ModbusProfile)
            if isinstance(dev, IncubatorSim):
                sim = incubator_simulator(
                    seed=dev.seed,
                    time_scale=dev.time_scale,
                    unit=dev.unit,
                    door_openings_per_hour=dev.door_openings_per_hour,
                    profile=profile,
                )
                await stack.enter_async_context(sim)
                self.simulators[name] = sim
                port = await sim.serve_tcp()
                return f"tcp://127.0.0.1:{port}?unit={dev.unit}"
            sim = bioreactor_simulator(
                seed=dev.seed, time_scale=dev.time_scale, units=(dev.unit,), profile=profile
            )
            await stack.enter_async_context(sim)
            self.simulators[name] = sim
            path = await sim.serve_rtu()
            return f"rtu://{path}?unit={dev.unit}"
        from ..profiles import OpcUaProfile, load_profile
        from ._opcua_hub import OpcUaSensorHub

        hub_profile = load_profile(dev.profile)
        assert isinstance(hub_profile, OpcUaProfile)
        hub = await stack.enter_async_context(
            OpcUaSensorHub(hub_profile, seed=dev.seed, time_scale=dev.time_scale)
        )
        self.simulators[name] = hub
        return hub.endpoint

"""``labdevices sim incubator`` and ``labdevices sim bioreactor``: simulated Modbus devices until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from ._output import stdout_console
from ._sim import sim_app

if TYPE_CHECKING:
    from ..sim.modbus import FaultPlan, ModbusSimulator

_SEED = typer.Option(help="seed of the physics noise and of the fault injection")
_SCALE = typer.Option(help="model seconds per wall second (60: a minute per second)")
_EXC = typer.Option(help="probability a request gets an exception response")
_TIMEOUT = typer.Option(help="probability a request is not answered")
_SLOW = typer.Option(help="probability an answer is delayed by --slow-s")


def _faults(
    seed: int, exception_rate: float, timeout_rate: float, slow_rate: float, slow_s: float
) -> FaultPlan:
    from ..sim.modbus import FaultPlan

    return FaultPlan(
        seed=seed,
        exception_rate=exception_rate,
        timeout_rate=timeout_rate,
        slow_rate=slow_rate,
        slow_s=slow_s,
    )


async def _run_until_stopped(sim: ModbusSimulator, lines: list[str]) -> None:
    console = stdout_console()
    for line in lines:
        console.print(line, highlight=False)
    console.print("Ctrl-C stops it.", style="dim")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await sim.stop()


@sim_app.command("incubator")
def incubator(
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1 (0: a free port)")] = 0,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    unit: Annotated[int, typer.Option(help="Modbus unit id")] = 1,
    seed: Annotated[int, _SEED] = 0,
    time_scale: Annotated[float, _SCALE] = 1.0,
    door_openings_per_hour: Annotated[float, typer.Option(help="random door openings")] = 0.0,
    exception_rate: Annotated[float, _EXC] = 0.0,
    timeout_rate: Annotated[float, _TIMEOUT] = 0.0,
    slow_rate: Annotated[float, _SLOW] = 0.0,
    slow_s: Annotated[float, typer.Option(help="delay of a slow answer, s")] = 0.5,
) -> None:
    """Start a simulated CO2 incubator on Modbus TCP and print where it listens."""
    from ..sim.incubator import incubator_simulator

    async def main() -> None:
        sim = incubator_simulator(
            seed=seed,
            time_scale=time_scale,
            unit=unit,
            door_openings_per_hour=door_openings_per_hour,
            faults=_faults(seed, exception_rate, timeout_rate, slow_rate, slow_s),
        )
        bound = await sim.serve_tcp(host, port)
        address = f"tcp://{host}:{bound}?unit={unit}"
        await _run_until_stopped(
            sim,
            [
                f"incubator listening on {address}",
                f"  labdevices read --profile co2-incubator '{address}'",
            ],
        )

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


@sim_app.command("bioreactor")
def bioreactor(
    units: Annotated[
        str, typer.Option(help="unit ids on the bus, comma-separated (one vessel each)")
    ] = "1",
    seed: Annotated[int, _SEED] = 0,
    time_scale: Annotated[float, _SCALE] = 1.0,
    exception_rate: Annotated[float, _EXC] = 0.0,
    timeout_rate: Annotated[float, _TIMEOUT] = 0.0,
    slow_rate: Annotated[float, _SLOW] = 0.0,
    slow_s: Annotated[float, typer.Option(help="delay of a slow answer, s")] = 0.2,
) -> None:
    """Start a simulated stirred-tank bioreactor on Modbus RTU over a pseudo-terminal."""
    from ..sim.bioreactor import bioreactor_simulator

    try:
        ids = tuple(int(u) for u in units.split(","))
    except ValueError as exc:
        raise typer.BadParameter(f"--units: not a list of integers: {units!r}") from exc

    async def main() -> None:
        sim = bioreactor_simulator(
            seed=seed,
            time_scale=time_scale,
            units=ids,
            faults=_faults(seed, exception_rate, timeout_rate, slow_rate, slow_s),
        )
        path = await sim.serve_rtu()
        lines = [f"bioreactor unit {u} listening on rtu://{path}?unit={u}" for u in ids]
        lines.append(
            f"  labdevices read --profile stirred-tank-bioreactor 'rtu://{path}?unit={ids[0]}'"
        )
        await _run_until_stopped(sim, lines)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())

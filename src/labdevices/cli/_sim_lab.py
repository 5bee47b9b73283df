"""``labdevices sim lab FILE``: start a whole simulated lab and print where each device listens."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ._sim import sim_app


@sim_app.command("lab")
def lab(
    file: Annotated[
        str, typer.Argument(help="lab TOML file, or a shipped lab by name")
    ] = "demo-lab",
) -> None:
    """Start every device of a simulated lab; Ctrl-C stops them."""
    from ..sim.lab import SimulatedLab

    lab = SimulatedLab.from_file(file)
    console = Console()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with lab:
            table = Table("device", "kind", "profile", "address", title=f"site {lab.config.site!r}")
            for name, dev in lab.config.devices.items():
                table.add_row(name, dev.kind, dev.profile, lab.addresses[name])
            console.print(table)
            console.print("running; Ctrl-C stops the lab")
            await stop.wait()

    asyncio.run(run())

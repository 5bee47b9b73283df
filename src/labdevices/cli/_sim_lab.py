"""``labdevices sim lab FILE``: start a whole simulated lab and print where each device listens."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Annotated

import typer

from ._output import Table, stdout_console
from ._sim import sim_app


@sim_app.command("lab")
def lab(
    file: Annotated[
        str, typer.Argument(help="lab TOML file, or a shipped lab by name")
    ] = "demo-lab",
    as_json: Annotated[
        bool,
        typer.Option("--json", help="print the addresses as one JSON line (for scripts), then run"),
    ] = False,
) -> None:
    """Start every device of a simulated lab; Ctrl-C stops them."""
    from ..sim.lab import SimulatedLab

    lab = SimulatedLab.from_file(file)
    console = stdout_console()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with lab:
            if as_json:
                devices = {
                    name: {"kind": dev.kind, "profile": dev.profile, "address": lab.addresses[name]}
                    for name, dev in lab.config.devices.items()
                }
                print(json.dumps({"site": lab.config.site, "devices": devices}), flush=True)
                await stop.wait()
                return
            table = Table("device", "kind", "profile", "address", title=f"site {lab.config.site!r}")
            for name, dev in lab.config.devices.items():
                table.add_row(name, dev.kind, dev.profile, lab.addresses[name])
            console.print(table)
            console.print("running; Ctrl-C stops the lab")
            console.file.flush()
            await stop.wait()

    asyncio.run(run())

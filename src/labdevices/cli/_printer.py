"""``labdevices print``: stream G-code into a printer with a progress bar.

Ctrl-C during a print cancels it safely (motion stopped, valves closed, pressure
zero, nozzle lifted) before the command exits.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from . import app

if TYPE_CHECKING:
    from ..devices.gcode import GcodePrinter, JobResult

console = Console()


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("lines"),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )


async def stream_with_progress(
    printer: GcodePrinter, commands: list[str], description: str
) -> JobResult:
    """Run a job with a rich progress bar; SIGINT/SIGTERM cancel it safely."""
    from ..devices.gcode import JobProgress

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        with _progress_bar() as bar:
            task_id = bar.add_task(description, total=len(commands))

            def on_progress(p: JobProgress) -> None:
                bar.update(task_id, completed=p.lines_done)

            job = asyncio.create_task(printer.run_job(commands, progress=on_progress))
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({job, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not job.done():
                console.print("[yellow]cancelling safely: stopping motion, closing valves…[/]")
                await printer.cancel()
            stopper.cancel()
            result = await job
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return result


def report(result: JobResult) -> None:
    colour = {"completed": "green", "cancelled": "yellow"}.get(result.outcome, "red")
    console.print(
        f"[{colour}]{result.outcome}[/]: {result.last_acked_line}/{result.lines_total} lines "
        f"acknowledged in {result.elapsed_s:.1f} s"
        + (f" ({result.lines_total / result.elapsed_s:,.0f} lines/s)" if result.elapsed_s else "")
    )
    if result.error is not None:
        console.print(f"[red]{result.error}[/]")


@app.command("print")
def print_(
    file: Annotated[Path, typer.Argument(help="G-code file to print", exists=True, dir_okay=False)],
    port: Annotated[str, typer.Option(help="serial port path or socket://host:port")],
    profile: Annotated[str, typer.Option(help="printer profile name or file")] = "marlin-pneumatic",
    baudrate: Annotated[int | None, typer.Option(help="override the profile's baud rate")] = None,
) -> None:
    """Stream a G-code file into a printer with a progress bar. Ctrl-C cancels safely."""
    from ..devices.gcode import GcodePrinter, JobOutcome, load_gcode
    from ..profiles import GcodeProfile, load_profile

    prof = load_profile(profile)
    if not isinstance(prof, GcodeProfile):
        raise typer.BadParameter(
            f"{profile} is a {prof.driver} profile, not a printer", param_hint="--profile"
        )
    commands = load_gcode(file.read_text(encoding="utf-8", errors="replace"))

    async def run() -> JobResult:
        async with GcodePrinter(
            "printer", prof, port, baudrate=baudrate, reconnect=False
        ) as printer:
            name = printer.firmware.get("FIRMWARE_NAME", "unknown firmware")
            console.print(f"connected to [bold]{port}[/]: {name}")
            return await stream_with_progress(printer, commands, file.name)

    result = asyncio.run(run())
    report(result)
    if result.outcome != JobOutcome.COMPLETED:
        raise typer.Exit(1)

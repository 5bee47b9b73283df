"""``labdevices print`` and ``labdevices demo``: stream G-code into a printer with a progress bar.

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


def demo_gcode(layers: int = 6, size_mm: float = 20.0, spacing_mm: float = 1.0) -> list[str]:
    """A small 0/90° lattice scaffold for the pneumatic demo printer."""
    lines = ["G21", "G90", "M140 S20.0", "M42 P6 S31", "G28", "G0 Z5 F1200"]
    n = int(size_mm / spacing_mm) + 1
    for layer in range(layers):
        z = 0.2 + 0.4 * layer
        lines.append(f"G0 Z{z:.2f} F600")
        for i in range(n):
            a = i * spacing_mm
            start, end = (0.0, size_mm) if i % 2 == 0 else (size_mm, 0.0)
            if layer % 2 == 0:
                lines += [
                    f"G0 X{start:.2f} Y{a:.2f} F3000",
                    "M126 S255",
                    f"G1 X{end:.2f} Y{a:.2f} F600",
                    "M127",
                ]
            else:
                lines += [
                    f"G0 X{a:.2f} Y{start:.2f} F3000",
                    "M126 S255",
                    f"G1 X{a:.2f} Y{end:.2f} F600",
                    "M127",
                ]
    lines += ["M127", "M42 P6 S0", "G91", "G0 Z5", "G90", "M400"]
    return lines


@app.command()
def demo(
    time_scale: Annotated[
        float, typer.Option(help="simulated motion time per real second (0: instant)")
    ] = 0.02,
) -> None:
    """Start a simulated bioprinter and stream a demo scaffold print into it."""
    from ..devices.gcode import GcodePrinter, JobOutcome
    from ..profiles import GcodeProfile, load_profile
    from ..sim.printer import SimPrinterConfig, SimulatedPrinter

    prof = load_profile("marlin-pneumatic")
    assert isinstance(prof, GcodeProfile)
    commands = demo_gcode()

    async def run() -> tuple[JobResult, int]:
        config = SimPrinterConfig(profile="marlin-pneumatic", time_scale=time_scale)
        async with SimulatedPrinter(config=config) as sim:
            console.print(f"simulated printer listening on [bold]{sim.port}[/]")
            async with GcodePrinter(
                "demo-printer", prof, sim.url, reconnect=False
            ) as printer:
                result = await stream_with_progress(printer, commands, "demo scaffold")
            return result, len(sim.executed)

    result, executed = asyncio.run(run())
    report(result)
    console.print(f"the simulator executed {executed} commands")
    if result.outcome != JobOutcome.COMPLETED:
        raise typer.Exit(1)

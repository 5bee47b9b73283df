"""``labdevices print``: stream G-code into a printer with a progress bar.

The file is checked against the printer profile before anything is sent (the same
checks as ``jobs/submit``). Ctrl-C during a print stops it at once (quickstop,
valves closed, pressure zero), then lifts the nozzle; a second Ctrl-C sends an
emergency stop (M112).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
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
from ._output import stdout_console

if TYPE_CHECKING:
    from ..devices.gcode import GcodePrinter, JobResult

console = stdout_console()


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
    """Run a job with a rich progress bar; SIGINT/SIGTERM stop it safely, a second one is M112."""
    from ..devices.gcode import JobProgress

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            stop.set()
            # Stop now, from the signal handler's own loop turn: no drain first.
            loop.create_task(printer.cancel(), name="cancel").add_done_callback(_quiet)
        elif not printer.job_running or printer.state.value == "fault":
            return
        else:
            loop.create_task(printer.emergency_stop(), name="emergency stop").add_done_callback(
                _quiet
            )

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        with _progress_bar() as bar:
            task_id = bar.add_task(description, total=len(commands))

            def on_progress(p: JobProgress) -> None:
                bar.update(task_id, completed=p.lines_done)

            job = asyncio.create_task(printer.run_job(commands, progress=on_progress))
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({job, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not job.done():
                console.print(
                    "[yellow]stopping: quickstop, valves closed, pressure zero "
                    "(Ctrl-C again: emergency stop)…[/]"
                )
            stopper.cancel()
            result = await job
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return result


def _quiet(task: asyncio.Task[None]) -> None:
    """The job's result reports how the stop went; the task's own error needs no traceback."""
    if not task.cancelled():
        task.exception()


def report(result: JobResult) -> None:
    colour = {"completed": "green", "cancelled": "yellow"}.get(result.outcome, "red")
    console.print(
        f"[{colour}]{result.outcome}[/]: {result.last_acked_line}/{result.lines_total} lines "
        f"acknowledged in {result.elapsed_s:.1f} s"
        + (
            f" ({result.last_acked_line / result.elapsed_s:,.0f} lines/s)"
            if result.elapsed_s
            else ""
        )
    )
    if result.error is not None:
        console.print(f"[red]{result.error}[/]")


@app.command("print")
def print_(
    file: Annotated[Path, typer.Argument(help="G-code file to print", exists=True, dir_okay=False)],
    port: Annotated[str, typer.Option(help="serial port path or socket://host:port")],
    profile: Annotated[str, typer.Option(help="printer profile name or file")] = "marlin-pneumatic",
    baudrate: Annotated[int | None, typer.Option(help="override the profile's baud rate")] = None,
    allow_pauses: Annotated[
        bool, typer.Option(help="admit operator pauses (M0/M1) in the file")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            help="print a file planned for another printer profile (its header says which)"
        ),
    ] = False,
) -> None:
    """Check a G-code file against the printer profile, then stream it with a progress bar.

    Ctrl-C stops at once and safely; a second Ctrl-C is an emergency stop (M112).
    """
    from ..devices.gcode import GcodePrinter, JobOutcome, load_program
    from ..errors import JobRejected
    from ..profiles import GcodeProfile, load_profile

    prof = load_profile(profile)
    if not isinstance(prof, GcodeProfile):
        raise typer.BadParameter(
            f"{profile} is a {prof.driver} profile, not a printer", param_hint="--profile"
        )
    try:
        commands = load_program(
            file.read_bytes(), prof, source=str(file), allow_pauses=allow_pauses, force=force
        ).commands
    except JobRejected as exc:
        print(exc, file=sys.stderr)
        raise typer.Exit(2) from None

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

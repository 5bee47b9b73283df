"""``labdevices sim printer``: run a simulated Marlin-style bioprinter until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ._sim import sim_app


def _default(field: str, faults: bool = False) -> str:
    """The simulator's default of a setting, as --help shows it (a --config file's wins)."""
    from ..sim._printer_config import FaultConfig, SimPrinterConfig

    model: Any = FaultConfig if faults else SimPrinterConfig
    value = model.model_fields[field].default
    return f"{'none' if value is None else value}, or the --config file's"


@sim_app.command("printer")
def printer(
    profile: Annotated[
        str | None,
        typer.Option(
            help="printer profile: shipped name or path to a TOML file",
            show_default=_default("profile"),
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="simulated printer TOML (see simulators/demo-printer.toml)", show_default="none"
        ),
    ] = None,
    pty: Annotated[
        bool, typer.Option("--pty", help="serve on a pseudo-terminal (the default without --port)")
    ] = False,
    tcp: Annotated[
        int | None,
        typer.Option(
            "--port",
            "--tcp",
            help="serve on TCP 127.0.0.1:PORT instead of a pty (0: a free port)",
            show_default="a pty",
        ),
    ] = None,
    time_scale: Annotated[
        float | None,
        typer.Option(
            help="wall seconds per firmware second (0: instant)",
            show_default=_default("time_scale"),
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="seed of the fault injection", show_default=_default("seed"))
    ] = None,
    corrupt_rate: Annotated[
        float | None,
        typer.Option(
            help="probability a received line is corrupted",
            show_default=_default("corrupt_rate", faults=True),
        ),
    ] = None,
    ack_loss_rate: Annotated[
        float | None,
        typer.Option(
            help="probability an ok is lost", show_default=_default("ack_loss_rate", faults=True)
        ),
    ] = None,
    busy_stall_rate: Annotated[
        float | None,
        typer.Option(
            help="probability a command stalls (busy) first",
            show_default=_default("busy_stall_rate", faults=True),
        ),
    ] = None,
    disconnect_after: Annotated[
        int | None,
        typer.Option(
            help="drop the link after this many commands",
            show_default=_default("disconnect_after_lines", faults=True),
        ),
    ] = None,
    reset_after: Annotated[
        int | None,
        typer.Option(
            help="reset the firmware after this many commands",
            show_default=_default("reset_after_lines", faults=True),
        ),
    ] = None,
    ok_delay: Annotated[
        float | None,
        typer.Option(help="latency before each reply, s", show_default=_default("ok_delay_s")),
    ] = None,
    baud: Annotated[
        int | None,
        typer.Option(
            help="pace the link at this baud rate (none: unpaced)",
            show_default=_default("baudrate"),
        ),
    ] = None,
    advanced_ok: Annotated[
        bool | None,
        typer.Option(
            "--advanced-ok/--no-advanced-ok",
            help="ok N.. P.. B..",
            show_default=_default("advanced_ok"),
        ),
    ] = None,
) -> None:
    """Start a simulated printer and print where it listens (a pty path or socket:// URL)."""
    from ..sim.printer import SimPrinterConfig, SimulatedPrinter, load_sim_printer_config

    if pty and tcp is not None:
        raise typer.BadParameter("choose one of --pty and --port")
    base = load_sim_printer_config(config) if config is not None else SimPrinterConfig()
    update: dict[str, Any] = {
        k: v
        for k, v in {
            "profile": profile,
            "time_scale": time_scale,
            "seed": seed,
            "ok_delay_s": ok_delay,
            "baudrate": baud,
            "advanced_ok": advanced_ok,
        }.items()
        if v is not None
    }
    faults = {
        k: v
        for k, v in {
            "corrupt_rate": corrupt_rate,
            "ack_loss_rate": ack_loss_rate,
            "busy_stall_rate": busy_stall_rate,
            "disconnect_after_lines": disconnect_after,
            "reset_after_lines": reset_after,
        }.items()
        if v is not None
    }
    data = base.model_dump()
    data.update(update)
    data["faults"].update(faults)
    settings = SimPrinterConfig.model_validate(data)
    transport: Any = "tcp" if tcp is not None else "pty"
    err = Console(stderr=True)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGTERM, stop.set)
        async with SimulatedPrinter(config=settings, transport=transport, tcp_port=tcp or 0) as sim:
            fw = sim.firmware
            assert fw is not None
            print(sim.url, flush=True)
            err.print(
                f"simulated [bold]{sim.profile.name}[/] ({fw.dialect} dialect, "
                f"time scale {settings.time_scale}) listening on [bold]{sim.url}[/]; Ctrl-C stops",
                highlight=False,
            )
            await stop.wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    err.print("simulated printer stopped")

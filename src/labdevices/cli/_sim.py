"""``labdevices sim …``: start simulated devices and print where they listen."""

from __future__ import annotations

import typer

from . import app

sim_app = typer.Typer(help="Start simulated devices.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")


def _register() -> None:
    for module in ("_sim_printer", "_sim_modbus", "_sim_opcua", "_sim_lab"):
        try:
            __import__(f"{__package__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{module}":
                raise


_register()

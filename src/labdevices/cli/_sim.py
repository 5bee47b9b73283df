"""``labdevices sim …``: start simulated devices and print where they listen."""

from __future__ import annotations

import typer

from . import app

sim_app = typer.Typer(help="Start simulated devices.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")

"""``labdevices profiles``: list known device profiles, with validation errors if any."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..profiles import list_profiles
from . import app


@app.command()
def profiles(
    folder: Annotated[
        Path | None, typer.Option(help="a folder of profiles instead of the shipped ones")
    ] = None,
) -> None:
    """List device profiles; invalid ones are shown with every problem and make the exit code 1."""
    console = Console()
    table = Table("profile", "driver", "vendor / model", "status")
    bad = 0
    for entry in list_profiles(folder):
        if entry.profile is not None:
            p = entry.profile
            table.add_row(
                entry.path.stem, p.driver, f"{p.vendor} {p.model}".strip(), "[green]ok[/]"
            )
        else:
            bad += 1
            table.add_row(entry.path.stem, "?", "", f"[red]{entry.error}[/]")
    console.print(table)
    if bad:
        raise typer.Exit(1)

"""``labdevices profiles``: list known device profiles, with validation errors if any."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..profiles import list_profiles
from . import app
from ._output import Table, print_json, stdout_console


@app.command()
def profiles(
    folder: Annotated[
        Path | None, typer.Option(help="a folder of profiles instead of the shipped ones")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print JSON (stable field names) for scripts")
    ] = False,
) -> None:
    """List device profiles; invalid ones are shown with every problem and make the exit code 1."""
    if as_json:
        entries = list_profiles(folder)
        print_json(
            [
                {
                    "profile": e.path.stem,
                    "path": str(e.path),
                    "driver": e.profile.driver if e.profile else None,
                    "vendor": e.profile.vendor if e.profile else None,
                    "model": e.profile.model if e.profile else None,
                    "error": None if e.profile else str(e.error),
                }
                for e in entries
            ]
        )
        if any(e.profile is None for e in entries):
            raise typer.Exit(1)
        return
    console = stdout_console()
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

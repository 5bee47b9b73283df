"""Output for people and for scripts: tables that fold rather than cut, full values in pipes.

On a terminal, tables fit its width by folding long cells onto more lines (never an
ellipsis: an address or a value cut short is worse than a tall table). When stdout is not
a terminal (a pipe, a log file), nothing is folded or cut at all: each row is one line.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["UNLIMITED_WIDTH", "print_json", "stdout_console", "table"]

#: the width of a console that writes to a pipe: wide enough for any row
UNLIMITED_WIDTH = 100_000


def stdout_console() -> Console:
    """A console on stdout: the terminal's width on a terminal, unlimited in a pipe."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=UNLIMITED_WIDTH, soft_wrap=True)


def table(*columns: str, title: str | None = None, show_header: bool = True) -> Table:
    """A table whose cells fold (never end in an ellipsis) when the terminal is narrow."""
    t = Table(title=title, show_header=show_header, title_justify="left")
    for name in columns:
        t.add_column(name, overflow="fold")
    return t


def print_json(data: Any) -> None:
    """JSON for scripts: stable field names, indented, on stdout."""
    print(json.dumps(data, indent=2, default=str))

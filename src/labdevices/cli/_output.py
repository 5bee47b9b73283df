"""Output for people and for scripts: tables that fold rather than cut, full values in pipes.

On a terminal, tables fit its width by folding long cells onto more lines (never an
ellipsis: an address or a value cut short is worse than a tall table). When stdout is not
a terminal (a pipe, a log file), nothing is folded or cut at all: each row is one line.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich import table as _rich_table
from rich.console import Console

__all__ = ["UNLIMITED_WIDTH", "Table", "print_json", "stdout_console", "table"]

#: the width of a console that writes to a pipe: wide enough for any row
UNLIMITED_WIDTH = 100_000


def stdout_console() -> Console:
    """A console on stdout: the terminal's width on a terminal, unlimited in a pipe."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=UNLIMITED_WIDTH, soft_wrap=True)


class Table(_rich_table.Table):
    """A rich table whose cells fold onto more lines rather than end in an ellipsis."""

    def add_column(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("overflow", "fold")
        super().add_column(*args, **kwargs)

    def __init__(self, *headers: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for header in headers:
            self.add_column(header)


def table(*columns: str, title: str | None = None, show_header: bool = True) -> Table:
    """A table whose cells fold (never end in an ellipsis) when the terminal is narrow."""
    return Table(*columns, title=title, show_header=show_header, title_justify="left")


def print_json(data: Any) -> None:
    """JSON for scripts: stable field names, indented, on stdout."""
    print(json.dumps(data, indent=2, default=str))

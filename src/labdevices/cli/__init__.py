"""The ``labdevices`` command line. Each command group lives in its own module.

Heavy imports (numba, pymodbus, asyncua) happen inside the commands, so that
``labdevices --help`` stays instant.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from ..errors import LabDeviceError

__all__ = ["app", "main"]

app = typer.Typer(
    name="labdevices",
    help="Drive bioprinters, incubators, bioreactors and sensors; simulate a whole lab.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True)


# one-shot commands whose run time users feel: only their own module is imported
_ONLY = {"toolpath": "_toolpath", "warmup": "_toolpath"}


def _register(command: str | None = None) -> None:
    if command in _ONLY:
        __import__(f"{__name__}.{_ONLY[command]}")
        return
    from . import _printer, _profiles, _sim  # noqa: F401  (commands register on import)

    # Command groups owned by other parts of the code base; each registers itself on import.
    for optional in (
        "_toolpath",
        "_devices",
        "_store",
        "_proof",
        "_daemon",
        "_users",
        "_broker",
        "_record",
        "_sign",
    ):
        try:
            __import__(f"{__name__}.{optional}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{optional}":
                raise


def main() -> None:
    """Entry point: user mistakes and device errors end in one clear message, not a traceback."""
    from .._exit import quick_exit_if_requested

    _register(sys.argv[1] if len(sys.argv) > 1 else None)
    try:
        app()
    except LabDeviceError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
    finally:
        quick_exit_if_requested()

"""The ``labdevices`` command line. Each command group lives in its own module.

Heavy imports (numba, pymodbus, asyncua) happen inside the commands, so that
``labdevices --help`` stays instant.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

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
    context_settings={"show_default": True},  # every option's default, in every --help
)
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"labdevices {version('labdevices')}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            envvar="LABDEVICES_DEBUG",
            help="log everything, the Modbus and OPC UA libraries' frame dumps included",
        ),
    ] = False,
) -> None:
    """Drive bioprinters, incubators, bioreactors and sensors; simulate a whole lab."""
    from .._logging import configure_logging

    configure_logging(debug)


def _bare_site(argv: list[str]) -> list[str]:
    """``watch --site`` with no name: the site of the running daemon (an empty name)."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--site" and (i + 1 == len(out) or out[i + 1].startswith("-")):
            out[i] = "--site="
    return out


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
        "_operate",
        "_api",
        "_retention",
    ):
        try:
            __import__(f"{__name__}.{optional}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{optional}":
                raise


def _flags_as_flags() -> None:
    """``--wait``, not ``--wait <bool>``: a flag takes no value, so its help shows none."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "_labdevices", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        if self.is_flag:
            return None
        return shown(self, ctx)

    display_type_rich._labdevices = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


def main() -> None:
    """Entry point: user mistakes and device errors end in one clear message, not a traceback."""
    from .._exit import quick_exit_if_requested

    _register(sys.argv[1] if len(sys.argv) > 1 else None)
    _flags_as_flags()
    try:
        app(args=_bare_site(sys.argv[1:]) if "watch" in sys.argv[1:2] else None)
    except LabDeviceError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
    finally:
        quick_exit_if_requested()

"""Finding the daemon from a client command, and saying clearly (within 5 s) when there is none.

Where the daemon is, first found wins: ``--broker``, then ``$LABDEVICES_BROKER``, then the
runtime file that ``labdevices daemon`` writes when it is ready (``daemon-<site>.json`` in
``$XDG_RUNTIME_DIR/labdevices``), then ``mqtt://127.0.0.1:1883``. The site likewise: ``--site``
or ``$LABDEVICES_SITE``, else that of the one running daemon, else ``demo``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import DeviceConnectionError, DeviceTimeoutError

if TYPE_CHECKING:
    from ..client import LabClient

__all__ = [
    "DEFAULT_BROKER",
    "REACH_BUDGET_S",
    "BrokerOption",
    "CaOption",
    "DaemonNotFound",
    "SessionOption",
    "SiteOption",
    "Target",
    "UserOption",
    "new_client",
    "reach",
    "resolve_target",
]

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
DEFAULT_SITE = "demo"
#: how long a command may take to find out that no daemon answers (5 s with its start-up)
REACH_BUDGET_S = 3.5
#: the requests' timeout once the daemon answered
REQUEST_TIMEOUT_S = 10.0

BrokerOption = Annotated[
    str | None,
    typer.Option(
        "--broker",
        envvar="LABDEVICES_BROKER",
        help="the daemon's MQTT broker, mqtt[s]://host:port, or bridged brokers tried in "
        "order, comma-separated (default: where the running daemon announced itself, else "
        "mqtt://127.0.0.1:1883)",
        show_default=False,
    ),
]
SiteOption = Annotated[
    str | None,
    typer.Option(
        "--site",
        envvar="LABDEVICES_SITE",
        help="the site (default: that of the running daemon, else demo)",
        show_default=False,
    ),
]
UserOption = Annotated[
    str | None,
    typer.Option(
        "--user",
        envvar="LABDEVICES_USER",
        help="log in as this user (password asked; default: the session of `labdevices login`)",
        show_default=False,
    ),
]
SessionOption = Annotated[
    Path | None,
    typer.Option(
        "--session-file",
        help="session file (default: $XDG_CONFIG_HOME/labdevices/sessions/<site>.json)",
        show_default=False,
    ),
]
CaOption = Annotated[
    Path | None,
    typer.Option("--ca-file", help="CA bundle for mqtts:// (default: the system's)"),
]


class DaemonNotFound(DeviceConnectionError):
    """No daemon answers where the command looked; the message says how to point it at one."""


@dataclass(frozen=True)
class Target:
    """Where a command looks for the daemon, and why there."""

    broker: str
    site: str
    #: ``--broker``, ``$LABDEVICES_BROKER``, the runtime file's path, or ``default``
    source: str


def _ways(site: str) -> str:
    from ..daemon._runtime import runtime_file

    return (
        "point the command at a daemon in one of three ways: start `labdevices daemon -c CONFIG` "
        f"on this machine (it announces itself in {runtime_file(site, '*')}), "
        "set LABDEVICES_BROKER=mqtt://HOST:PORT, or pass --broker mqtt://HOST:PORT "
        "(the URL is in the daemon's ready line)"
    )


def resolve_target(broker: str | None, site: str | None) -> Target:
    """Where to look for the daemon (see the module's docstring for the order)."""
    from ..daemon import find_daemons

    if broker is not None:
        source = (
            "$LABDEVICES_BROKER" if os.environ.get("LABDEVICES_BROKER") == broker else "--broker"
        )
        if site is None:
            same = [d for d in find_daemons() if d.broker == broker]
            site = same[0].site if len(same) == 1 else DEFAULT_SITE
        return Target(broker, site, source)
    running = find_daemons(site)
    if site is None and len({d.site for d in running}) > 1:
        sites = ", ".join(sorted({d.site for d in running}))
        raise DaemonNotFound(
            f"daemons of several sites are running ({sites}): choose one with --site "
            "(or LABDEVICES_SITE)"
        )
    if running:
        return Target(running[0].broker, running[0].site, str(running[0].path))
    return Target(DEFAULT_BROKER, site or DEFAULT_SITE, "default")


def _where(target: Target) -> str:
    if target.source == "default":
        return f"{target.broker} (the default: no running daemon announced itself)"
    if target.source.startswith(("--", "$")):
        return f"{target.broker} (from {target.source})"
    return f"{target.broker} (announced in {target.source})"


def new_client(target: Target, **options: Any) -> LabClient:
    """A ``LabClient`` for ``target`` whose connection and login (on entering) fit the budget."""
    from ..client import LabClient

    return LabClient(
        target.broker,
        site=target.site,
        connect_timeout=REACH_BUDGET_S - 1.0,
        timeout=REACH_BUDGET_S - 0.5,
        **options,
    )


@contextlib.asynccontextmanager
async def reach(client: LabClient, target: Target) -> AsyncIterator[LabClient]:
    """Enter ``client`` (made by ``new_client``: short timeouts while entering) and make sure a daemon of the site answers, within ``REACH_BUDGET_S``.

    Otherwise ``DaemonNotFound`` naming the broker, where its URL came from, and the three
    ways to point the command at a daemon.
    """
    deadline = time.monotonic() + REACH_BUDGET_S
    try:
        await client.__aenter__()
    except DeviceConnectionError as exc:
        raise DaemonNotFound(
            f"no daemon reachable: cannot connect to the broker at {_where(target)}: {exc}; "
            + _ways(target.site)
        ) from None
    except DeviceTimeoutError:
        raise DaemonNotFound(
            f"no daemon of site {target.site!r} answers at {_where(target)}; " + _ways(target.site)
        ) from None
    try:
        client.timeout = REQUEST_TIMEOUT_S
        status = await client.daemon_status(max(0.1, deadline - time.monotonic()))
        if status is None:
            raise DaemonNotFound(
                f"no daemon of site {target.site!r} at {_where(target)} (the broker answers, "
                "but no daemon announced itself on it; another site?); " + _ways(target.site)
            )
        if not status.get("online", False):
            raise DaemonNotFound(
                f"the daemon of site {target.site!r} at {_where(target)} is offline "
                "(stopped or lost); " + _ways(target.site)
            )
        yield client
    except BaseException as exc:
        await client.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    else:
        await client.__aexit__(None, None, None)

"""``labdevices read`` and ``labdevices watch``: a device's signals, once or live, by profile and address.

Generic over drivers (``create_device``): the same commands read a Modbus
incubator, a bioreactor or an OPC UA sensor hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.live import Live

from . import app
from ._output import Table, print_json, stdout_console
from ._reach import BrokerOption, CaOption, SessionOption, SiteOption, UserOption

if TYPE_CHECKING:
    from ..devices import Device, Sample

_PROFILE = typer.Option(
    "--profile", "-p", help="device profile: shipped name or path to a TOML file"
)
_QUALITY_STYLE = {"good": "green", "stale": "yellow", "bad": "red"}


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "—" if value is None else str(value)


def _table(rows: Sequence[Sample], *, with_device: bool, now: float | None = None) -> Table:
    table = Table("device", "signal", "value", "unit", "quality", "age" if now else "time")
    if not with_device:
        table.columns[0].style = "dim"
    for s in rows:
        style = _QUALITY_STYLE.get(s.quality, "")
        when = f"{now - s.t:.1f} s" if now else time.strftime("%H:%M:%S", time.localtime(s.t))
        quality = s.quality if not s.reason else f"{s.quality}: {s.reason}"
        table.add_row(s.device, s.signal, _format(s.value), s.unit, f"[{style}]{quality}[/]", when)
    return table


def _devices(profile_name: str, addresses: list[str]) -> list[Device[Any]]:
    from ..devices import create_device
    from ..profiles import load_profile

    # pymodbus logs each timeout with a hex dump; the table and our errors say it once, clearly.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

    profile = load_profile(profile_name)
    names = (
        [profile.name]
        if len(addresses) == 1
        else [f"{profile.name}-{i + 1}" for i in range(len(addresses))]
    )
    return [create_device(n, profile, a) for n, a in zip(names, addresses, strict=True)]


async def read_all(device: Device[Any]) -> list[Sample]:
    """Every signal of ``device`` now; a signal that cannot be read is a ``bad`` row with the reason."""
    from ..devices import Sample
    from ..errors import LabDeviceError

    snapshot = getattr(device, "snapshot", None)
    if snapshot is not None:
        return list((await snapshot()).values())
    rows = []
    for name in getattr(device.profile, "signals", {}):
        try:
            rows.append(await device.read(name))
        except LabDeviceError as exc:
            unit = device.signal(name).unit
            rows.append(Sample(device.name, name, None, unit, quality="bad", reason=str(exc)))
    return rows


@app.command()
def read(
    address: Annotated[str, typer.Argument(help="e.g. tcp://127.0.0.1:502?unit=1")],
    profile: Annotated[str, _PROFILE],
    as_json: Annotated[
        bool, typer.Option("--json", help="print JSON (stable field names) for scripts")
    ] = False,
) -> None:
    """Read every signal of one device once and print a table; fail if no value is good."""
    from ..errors import LabDeviceError

    async def main() -> list[Sample]:
        (device,) = _devices(profile, [address])
        async with device:
            return await read_all(device)

    rows = asyncio.run(main())
    if as_json:
        print_json(
            [
                {
                    "device": r.device,
                    "signal": r.signal,
                    "value": r.value,
                    "unit": r.unit,
                    "t": r.t,
                    "quality": r.quality,
                    "reason": r.reason,
                }
                for r in rows
            ]
        )
    else:
        stdout_console().print(_table(rows, with_device=False))
    if rows and not any(s.quality == "good" for s in rows):
        first = rows[0]
        reason = (first.reason or "no reason given").removeprefix(f"{first.device}: ")
        raise LabDeviceError(
            f"none of its {len(rows)} signals could be read (first: {first.signal}: {reason})",
            device=first.device,
        )


@app.command()
def watch(
    addresses: Annotated[
        list[str] | None,
        typer.Argument(
            help="device addresses (same profile); none: every device of the running daemon"
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile", "-p", help="device profile of the addresses: shipped name or TOML file"
        ),
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="stop after this many seconds (default: Ctrl-C)")
    ] = None,
    refresh: Annotated[float, typer.Option(help="screen refreshes per second")] = 4.0,
    site: SiteOption = None,
    broker: BrokerOption = None,
    user: UserOption = None,
    session_file: SessionOption = None,
    ca_file: CaOption = None,
) -> None:
    """Live values until Ctrl-C: of every device of the site through its daemon (`labdevices
    watch --site [NAME]`, or no addresses), or of devices given by profile and address."""
    if not addresses:
        from ._operate import run_watch_site

        run_watch_site(
            duration=duration,
            refresh=refresh,
            broker=broker,
            site=site or None,
            user=user,
            session_file=session_file,
            ca_file=ca_file,
        )
        return
    if profile is None:
        raise typer.BadParameter("--profile is required with device addresses")
    profile_name = profile

    async def main() -> None:
        devices = _devices(profile_name, addresses)
        latest: dict[tuple[str, str], Sample] = {}
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if duration is not None:
            loop.call_later(duration, stop.set)

        async def follow(device: Device[Any]) -> None:
            async with device.subscribe() as q:
                while True:
                    s = await q.get()
                    latest[(s.device, s.signal)] = s

        try:
            async with contextlib.AsyncExitStack() as stack:
                for d in devices:
                    await stack.enter_async_context(d)
                for s in [s for d in devices for s in await read_all(d)]:
                    latest[(s.device, s.signal)] = s
                with Live(console=stdout_console(), auto_refresh=False) as live:
                    async with asyncio.TaskGroup() as tg:
                        followers = [tg.create_task(follow(d)) for d in devices]
                        while not stop.is_set():
                            rows = sorted(latest.values(), key=lambda s: (s.device, s.signal))
                            live.update(
                                _table(rows, with_device=True, now=time.time()), refresh=True
                            )
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(stop.wait(), 1.0 / refresh)
                        for task in followers:
                            task.cancel()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    asyncio.run(main())

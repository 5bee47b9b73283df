"""``labdevices sim sensorhub``: a simulated OPC UA sensor hub until Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigurationError
from ._output import stdout_console
from ._sim import sim_app


@sim_app.command("sensorhub")
def sensorhub(
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1 (0: a free port)")] = 0,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    profile: Annotated[
        str, typer.Option(help="OPC UA profile (name or file)")
    ] = "opcua-sensor-hub",
    seed: Annotated[int, typer.Option(help="seed of the noise and of the fault injection")] = 0,
    time_scale: Annotated[float, typer.Option(help="simulated seconds per wall second")] = 1.0,
    secure: Annotated[
        bool, typer.Option(help="offer only Basic256Sha256 Sign and SignAndEncrypt endpoints")
    ] = False,
    user: Annotated[
        list[str] | None,
        typer.Option(help="NAME:PASSWORD of a user allowed to log in (repeatable)"),
    ] = None,
    trust: Annotated[
        list[Path] | None,
        typer.Option(help="a client certificate (DER or PEM) the hub trusts (repeatable)"),
    ] = None,
    auto_accept: Annotated[
        bool,
        typer.Option(help="trust every well-formed client certificate (testing only)"),
    ] = False,
    server_certificate: Annotated[
        Path | None, typer.Option(help="write the generated server certificate (DER) here")
    ] = None,
    slow_s: Annotated[float, typer.Option(help="delay every read and write by this, s")] = 0.0,
    disconnects_per_min: Annotated[float, typer.Option(help="random client disconnects")] = 0.0,
) -> None:
    """Start a simulated OPC UA sensor hub and print its endpoint."""
    from ..profiles import OpcUaProfile, load_profile
    from ..sim._opcua_hub import HubFaults, OpcUaSensorHub

    users: dict[str, str] = {}
    for entry in user or []:
        name, sep, password = entry.partition(":")
        if not sep or not name:
            raise ConfigurationError(f"--user: {entry!r} is not NAME:PASSWORD")
        users[name] = password
    loaded = load_profile(profile)
    if not isinstance(loaded, OpcUaProfile):
        raise ConfigurationError(f"--profile: {profile!r} is not an OPC UA profile")
    hub = OpcUaSensorHub(
        loaded,
        host=host,
        port=port,
        seed=seed,
        time_scale=time_scale,
        security=("Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt") if secure else ("None",),
        users=users,
        faults=HubFaults(slow_reply_s=slow_s, disconnects_per_min=disconnects_per_min),
        trusted_certificates=list(trust or []),
        auto_accept_certificates=auto_accept,
    )

    async def main() -> None:
        console = stdout_console()
        async with hub:
            console.print(
                f"sensor hub ({loaded.name}) listening at {hub.endpoint}", highlight=False
            )
            console.print(
                f"security: {', '.join(hub.security)}; users: {', '.join(users) or 'anonymous'}"
            )
            if secure:
                trusted = "any (auto-accept)" if auto_accept else str(len(trust or []))
                console.print(f"trusted client certificates: {trusted}", highlight=False)
            if server_certificate is not None and hub.server_certificate_der is not None:
                server_certificate.write_bytes(hub.server_certificate_der)
                console.print(f"server certificate: {server_certificate}", highlight=False)
            console.print("Ctrl-C stops it.", style="dim")
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            try:
                await stop.wait()
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)

    asyncio.run(main())

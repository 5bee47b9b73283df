"""The day's work against a running daemon: ``status``, ``set``, ``pause``/``resume``/``cancel``,
``estop``, ``clear-fault`` and ``watch`` of the whole site.

Each command finds the daemon as the others do (``--broker``, ``$LABDEVICES_BROKER``, the
daemon's runtime file), acts as the logged-in user (or ``--user``), and is authorised and
audited by the daemon, not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from . import app
from ._output import print_json, stdout_console, table
from ._reach import BrokerOption, CaOption, SessionOption, SiteOption, UserOption
from ._users import _errors, open_client

if TYPE_CHECKING:
    from ..client import JobInfo, LabClient, Reading, SiteStatus

__all__ = ["status_json", "watch_site"]

JsonOption = Annotated[
    bool, typer.Option("--json", help="print JSON (stable field names) for scripts")
]
ReasonRequired = Annotated[str, typer.Option("--reason", help="why (required, audited)")]
ReasonOptional = Annotated[str | None, typer.Option("--reason", help="why (audited)")]


def _value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "—" if value is None else str(value)


def _when(t: float | None) -> str:
    if t is None:
        return "—"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _reading_json(r: Reading) -> dict[str, Any]:
    return {"value": r.value, "unit": r.unit, "t": r.t, "quality": r.quality}


def _job_json(job: JobInfo) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "printer": job.printer,
        "state": job.state,
        "line": job.line,
        "lines_total": job.lines_total,
        "batch_id": job.batch_id,
        "submitted_by": job.submitted_by,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "error": job.error,
    }


def status_json(status: SiteStatus) -> dict[str, Any]:
    """``labdevices status --json``: field names are part of the CLI's contract."""
    return {
        "site": status.site,
        "daemons": [asdict(d) for d in status.daemons],
        "devices": [
            {
                "device": d.info.name,
                "daemon": d.info.daemon,
                "state": d.info.state,
                "profile": d.info.profile,
                "driver": d.info.driver,
                "error": d.info.error,
                "values": {k: _reading_json(v) for k, v in d.values.items()},
            }
            for d in status.devices
        ],
        "alarms": [asdict(a) for a in status.alarms],
        "jobs": [_job_json(j) for j in status.jobs],
    }


def _print_status(status: SiteStatus) -> None:
    console = stdout_console()
    now = time.time()
    several = len(status.daemons) > 1
    if several:  # a site of several daemons: who runs what
        daemons = table("daemon", "state", "devices", title=f"daemons of site {status.site!r}")
        for one in status.daemons:
            state = ("live" if one.live else "stopped") + (", leader" if one.leader else "")
            daemons.add_row(one.daemon, state, ", ".join(one.devices))
        console.print(daemons)
    columns = ["device", "state", "signal", "value", "unit", "age"]
    if several:
        columns.insert(1, "daemon")
    devices = table(*columns, title=f"site {status.site!r}")
    for d in status.devices:
        state = d.info.state + (f" ({d.info.error})" if d.info.error else "")
        first = [d.info.name, *([d.info.daemon or ""] if several else []), state]
        blank = [""] * len(first)
        if not d.values:
            devices.add_row(*first, "—", "—", "", "")
        for i, (name, r) in enumerate(sorted(d.values.items())):
            devices.add_row(
                *(first if i == 0 else blank),
                name,
                _value(r.value),
                r.unit,
                f"{now - r.t:.1f} s",
            )
    console.print(devices)
    alarms = table("id", "device", "alarm", "severity", "raised", title="active alarms")
    for a in status.alarms:
        alarms.add_row(str(a.alarm_id), a.device, a.name, a.severity, _when(a.raised_at))
    console.print(alarms if status.alarms else "active alarms: none")
    jobs = table("job", "printer", "state", "lines", "batch", "submitted by", title="jobs")
    for j in status.jobs:
        jobs.add_row(
            str(j.job_id),
            j.printer,
            j.state,
            f"{j.line}/{j.lines_total}",
            j.batch_id or "—",
            j.submitted_by or "—",
        )
    console.print(jobs if status.jobs else "jobs running, paused, queued or held: none")


@app.command("status")
def status(
    as_json: JsonOption = False,
    broker: BrokerOption = None,
    site: SiteOption = None,
    user: UserOption = None,
    session_file: SessionOption = None,
    ca_file: CaOption = None,
) -> None:
    """The site at a glance: devices with states and last values, active alarms, running jobs."""

    async def run() -> SiteStatus:
        async with open_client(broker, site, user, session_file, ca_file) as lab:
            return await lab.status()

    with _errors():
        found = asyncio.run(run())
    if as_json:
        print_json(status_json(found))
    else:
        _print_status(found)


@app.command("set")
def set_value(
    device: Annotated[str, typer.Argument(help="device name (as in `labdevices status`)")],
    signal_name: Annotated[str, typer.Argument(metavar="SIGNAL", help="a writable signal")],
    value: Annotated[float, typer.Argument(help="new value, in the signal's unit")],
    reason: ReasonRequired,
    broker: BrokerOption = None,
    site: SiteOption = None,
    user: UserOption = None,
    session_file: SessionOption = None,
    ca_file: CaOption = None,
) -> None:
    """Write a setpoint (checked against the profile's limits; audited with the old value)."""

    async def run() -> None:
        async with open_client(broker, site, user, session_file, ca_file) as lab:
            await lab.write(device, signal_name, value, reason=reason)

    with _errors():
        asyncio.run(run())
    stdout_console().print(f"{device}.{signal_name} set to {value:g}", highlight=False)


async def _job_action(lab: LabClient, action: str, job_id: int, reason: str | None) -> JobInfo:
    job = await lab.job(job_id)
    method = {"pause": lab.pause, "resume": lab.resume, "cancel": lab.cancel}[action]
    after = await method(job.printer, job_id=job_id, reason=reason)
    if action == "cancel" and not after.done:
        # a cancel stops the printer first (quickstop, valves, pressure): until it is done
        async with asyncio.timeout(60), contextlib.aclosing(lab.follow(job_id)) as events:
            async for _ in events:
                pass
        after = await lab.job(job_id)
    return after


def _job_command(action: str, done: str) -> None:
    def command(
        job_id: Annotated[int, typer.Argument(metavar="JOB", help="job id")],
        reason: ReasonOptional = None,
        broker: BrokerOption = None,
        site: SiteOption = None,
        user: UserOption = None,
        session_file: SessionOption = None,
        ca_file: CaOption = None,
    ) -> None:
        async def run() -> JobInfo:
            async with open_client(broker, site, user, session_file, ca_file) as lab:
                return await _job_action(lab, action, job_id, reason)

        with _errors():
            job = asyncio.run(run())
        stdout_console().print(
            f"job {job.job_id} on {job.printer} {done}: {job.state} "
            f"(line {job.line} of {job.lines_total})",
            highlight=False,
        )

    command.__doc__ = f"{action.capitalize()} a print job (as the logged-in user, audited)."
    app.command(action)(command)


_job_command("pause", "paused")
_job_command("resume", "resumed")
_job_command("cancel", "cancelled")


@app.command("estop")
def estop(
    printer: Annotated[str, typer.Argument(help="printer device name")],
    reason: ReasonOptional = None,
    broker: BrokerOption = None,
    site: SiteOption = None,
    user: UserOption = None,
    session_file: SessionOption = None,
    ca_file: CaOption = None,
) -> None:
    """Emergency stop (M112): the printer halts at once and stays in fault until
    `labdevices clear-fault PRINTER` (anyone logged in may stop; audited)."""

    async def run() -> None:
        async with open_client(broker, site, user, session_file, ca_file) as lab:
            await lab.estop(printer, reason=reason)

    with _errors():
        asyncio.run(run())
    stdout_console().print(
        f"{printer}: emergency stop sent; in fault until `labdevices clear-fault {printer}`",
        highlight=False,
    )


@app.command("clear-fault")
def clear_fault(
    device: Annotated[str, typer.Argument(help="device name")],
    reason: ReasonRequired,
    broker: BrokerOption = None,
    site: SiteOption = None,
    user: UserOption = None,
    session_file: SessionOption = None,
    ca_file: CaOption = None,
) -> None:
    """Bring a device out of fault (a supervisor's; audited with who and why): the daemon
    restarts it — a printer's firmware with M999, then a new handshake — until it is idle."""

    async def run() -> str:
        async with open_client(broker, site, user, session_file, ca_file) as lab:
            lab.timeout = 40.0  # the daemon waits up to 30 s for the device to be idle
            return (await lab.clear_fault(device, reason=reason)).state

    with _errors():
        state = asyncio.run(run())
    stdout_console().print(f"{device}: fault cleared, now {state}", highlight=False)


# ---- watch the whole site --------------------------------------------------------------------


async def watch_site(
    lab: LabClient, *, duration: float | None, refresh: float, stop: asyncio.Event
) -> None:
    """A live table of every device of the site (state and last values) until ``stop``.

    On a terminal the table is redrawn in place; in a pipe each change of a device's state
    is one line as it happens, and the table is printed once at the end.
    """
    from rich.live import Live

    console = stdout_console()
    first = await lab.status()
    states = {d.info.name: (d.info.state, d.info.error) for d in first.devices}
    latest: dict[tuple[str, str], Reading] = {
        (d.info.name, k): v for d in first.devices for k, v in d.values.items()
    }
    tty = sys.stdout.isatty()
    if duration is not None:
        asyncio.get_running_loop().call_later(duration, stop.set)

    def render() -> Any:
        now = time.time()
        t = table("device", "state", "signal", "value", "unit", "age", title=f"site {lab.site!r}")
        for name in sorted(states):
            state, error = states[name]
            shown = state + (f" ({error})" if error else "")
            rows = sorted((k[1], r) for k, r in latest.items() if k[0] == name)
            if not rows:
                t.add_row(name, shown, "—", "—", "", "")
            for i, (sig, r) in enumerate(rows):
                t.add_row(
                    name if i == 0 else "",
                    shown if i == 0 else "",
                    sig,
                    _value(r.value),
                    r.unit,
                    f"{now - r.t:.1f} s",
                )
        return t

    async def follow_states() -> None:
        async with lab.bus.subscribe(lab.topics.all_states()) as sub:
            async for message in sub:
                data = message.json()
                if not isinstance(data, dict) or "device" not in data:
                    continue
                name = str(data["device"])
                new = (str(data.get("state", "?")), data.get("error"))
                if states.get(name) != new and not tty:
                    when = datetime.now(UTC).strftime("%H:%M:%S")
                    why = f": {new[1]}" if new[1] else ""
                    console.print(f"{when} {name} {new[0]}{why}", highlight=False)
                states[name] = new

    async def follow_values() -> None:
        async with lab.telemetry() as readings:
            async for r in readings:
                latest[(r.device, r.signal)] = r

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(follow_states()), tg.create_task(follow_values())]
        try:
            if tty:
                with Live(console=console, auto_refresh=False) as live:
                    while not stop.is_set():
                        live.update(render(), refresh=True)
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), 1.0 / refresh)
            else:
                await stop.wait()
                console.print(render())
        finally:
            for task in tasks:
                task.cancel()


def run_watch_site(
    *,
    duration: float | None,
    refresh: float,
    broker: str | None,
    site: str | None,
    user: str | None,
    session_file: Any,
    ca_file: Any,
) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            async with open_client(broker, site, user, session_file, ca_file) as lab:
                await watch_site(lab, duration=duration, refresh=refresh, stop=stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    with _errors():
        asyncio.run(main())

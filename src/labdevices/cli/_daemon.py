"""``labdevices daemon``, ``submit``, ``alarms`` and ``demo``: run the daemon and talk to it over MQTT.

``demo`` starts the simulated lab, the daemon with its embedded broker and a fresh
store, submits a scaffold print planned by the toolpath core, shows its progress
and the final job record, then shuts everything down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import tempfile
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from . import app
from ._output import Table, stdout_console
from ._reach import BrokerOption, CaOption, SessionOption, SiteOption, UserOption

if TYPE_CHECKING:
    from ..client import JobInfo, LabClient
    from ..daemon import LoadedConfig

console = stdout_console()


@contextlib.asynccontextmanager
async def _simulated(loaded: LoadedConfig) -> AsyncIterator[LoadedConfig]:
    """The config with the addresses of its simulated lab, running while the context is open."""
    lab_name = loaded.config.simulated_lab
    if lab_name is None:
        yield loaded
        return
    from ..sim.lab import SimulatedLab

    async with SimulatedLab.from_file(lab_name) as lab:
        missing = sorted(set(loaded.config.devices) - set(lab.addresses))
        if missing:
            from ..errors import ConfigurationError

            raise ConfigurationError(
                f"{loaded.source}: devices {missing} are not in simulated lab {lab_name!r} "
                f"(it has {sorted(lab.addresses)})",
                file=loaded.source,
            )
        yield loaded.with_addresses(lab.addresses)


@app.command("daemon")
def daemon(
    config: Annotated[Path, typer.Option("-c", "--config", help="daemon config (TOML)")],
) -> None:
    """Run the daemon until SIGTERM or Ctrl-C: devices, telemetry, commands, jobs, interlocks."""
    from ..daemon import load_config

    loaded = load_config(config)
    asyncio.run(_run_daemon(loaded))


async def _run_daemon(loaded: LoadedConfig) -> None:
    from ..daemon import Daemon, redact_url, remove_runtime_file, write_runtime_file

    loop = asyncio.get_running_loop()
    async with _simulated(loaded) as ready, Daemon(ready) as d:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, d.stop)
        # Where client commands on this machine find us without --broker (no secrets in it).
        assert d.broker_url is not None
        runtime = write_runtime_file(d.broker_url, d.site, d.daemon_id)
        try:
            # One line a supervisor (or a test) can wait for.
            print(
                f"labdevices daemon ready: site {d.site!r}, daemon {d.daemon_id!r}, "
                f"broker {redact_url(d.broker_url)}, "
                f"store {redact_url(str(ready.config.store.location))}, "
                f"devices {', '.join(d.slots) or 'none'}; "
                + (f"dashboard {d.web_url}; " if d.web_url else "")
                + f"announced in {runtime}",
                flush=True,
            )
            await d.wait_stopped()
        finally:
            remove_runtime_file(d.site, d.daemon_id)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    print("labdevices daemon stopped", flush=True)


# ---- submit ----------------------------------------------------------------------------------


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("lines"),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[state]}"),
        console=console,
    )


async def follow_with_progress(lab: LabClient, submit_args: dict[str, Any]) -> JobInfo:
    """Submit a job, show a progress bar until it ends, return its final record."""
    from ..client import JobInfo

    info: JobInfo | None = None
    with _progress_bar() as bar:
        task = None
        async with contextlib.aclosing(lab.run(**submit_args)) as stream:
            async for item in stream:
                if isinstance(item, JobInfo):
                    info = item
                    task = bar.add_task(
                        f"job {item.job_id} on {item.printer}",
                        total=item.lines_total,
                        state="queued",
                    )
                    continue
                assert task is not None
                fields: dict[str, Any] = {"completed": item.line}
                if item.state is not None:
                    fields["state"] = item.state
                bar.update(task, **fields)
    assert info is not None
    return await lab.job(info.job_id)


def _bioink(b: Any) -> str:
    if not isinstance(b, dict):
        return str(b)
    name = str(b.get("name", b))
    return f"{name} (lot {b['lot']})" if b.get("lot") else name


def print_job(job: JobInfo) -> None:
    table = Table(title=f"job {job.job_id}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("state", job.state),
        ("printer", job.printer),
        ("batch", job.batch_id or "—"),
        ("patient", job.patient_id or "—"),
        ("bioinks", ", ".join(_bioink(b) for b in job.bioinks) or "—"),
        ("G-code SHA-256", job.gcode_sha256 or "—"),
        ("lines", f"{job.line} of {job.lines_total} acknowledged"),
        ("error", job.error or "—"),
    ]
    if job.started_at and job.ended_at:
        rows.append(("duration", f"{job.ended_at - job.started_at:.1f} s"))
    if job.submitted_by:
        who = job.submitted_by
        rows.insert(
            1,
            ("submitted by", f"{job.submitted_by_name} ({who})" if job.submitted_by_name else who),
        )
    for sig in job.signatures:
        rows.append(("signed", sig.manifestation))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


@app.command("submit")
def submit(
    job: Annotated[Path, typer.Argument(help="G-code file, or a toolpath job (.toml/.json)")],
    printer: Annotated[
        str | None, typer.Option(help="printer device (default: the only one)")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="follow the job to its end")] = False,
    batch_id: Annotated[str | None, typer.Option(help="batch identifier")] = None,
    patient_id: Annotated[str | None, typer.Option(help="patient identifier")] = None,
    broker: BrokerOption = None,
    site: SiteOption = None,
    user: UserOption = None,
    session_file: SessionOption = None,
    ca_file: CaOption = None,
) -> None:
    """Submit a print job to the daemon (exit 1 if a followed job does not complete)."""
    from ._users import open_client

    args: dict[str, Any] = {"printer": printer, "batch_id": batch_id, "patient_id": patient_id}
    if job.suffix.lower() in (".toml", ".json"):
        args["job"] = job
    else:
        try:
            args["gcode"] = job.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            from ..errors import ConfigurationError

            raise ConfigurationError(f"{job}: cannot read: {exc}", file=str(job)) from exc
    lab = open_client(broker, site, user, session_file, ca_file)
    final = asyncio.run(_submit(lab, args, wait))
    print_job(final)
    if wait and final.state != "completed":
        raise typer.Exit(1)


async def _submit(
    client: AbstractAsyncContextManager[LabClient], args: dict[str, Any], wait: bool
) -> JobInfo:
    async with client as lab:
        if wait:
            return await follow_with_progress(lab, args)
        return await lab.submit(**args)


# ---- alarms ----------------------------------------------------------------------------------


@app.command("alarms")
def alarms(
    ack: Annotated[int | None, typer.Option("--ack", help="acknowledge this alarm")] = None,
    reason: Annotated[str | None, typer.Option(help="why (with --ack; audited)")] = None,
    active: Annotated[bool, typer.Option("--active", help="only active or unacknowledged")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    broker: BrokerOption = None,
    site: SiteOption = None,
    user: UserOption = None,
    session_file: SessionOption = None,
    ca_file: CaOption = None,
) -> None:
    """List the site's alarms, or acknowledge one (as the logged-in user, audited)."""
    from dataclasses import asdict

    from ._users import open_client

    client = open_client(broker, site, user, session_file, ca_file)

    async def run() -> list[Any]:
        async with client as lab:
            if ack is not None:
                return [await lab.ack_alarm(ack, reason=reason)]
            return await lab.alarms(active_only=active)

    found = asyncio.run(run())
    if as_json:
        print(json.dumps([asdict(a) for a in found], indent=2))
        return
    table = Table("id", "device", "alarm", "severity", "active", "acknowledged by", "reason")
    for a in found:
        table.add_row(
            str(a.alarm_id),
            a.device,
            a.name,
            a.severity,
            "yes" if a.active else "no",
            a.acknowledged_by or "—",
            a.reason or "",
        )
    console.print(table)


# ---- demo ------------------------------------------------------------------------------------

#: A small 0/90° alginate lattice for the demo lab's pneumatic printer.
DEMO_JOB: dict[str, Any] = {
    "name": "demo-lattice",
    "printer": "marlin-pneumatic",
    "batch_id": "DEMO-0001",
    "patient_id": "P-DEMO",
    "layer_height_mm": 0.3,
    "bed_temperature_c": 20.0,
    "printheads": [
        {
            "tool": 0,
            "strand_width_mm": 0.45,
            "print_speed_mm_s": 8.0,
            "valve_lead_s": 0.05,
            "valve_lag_s": 0.05,
            "bioink": {
                "name": "alginate 1.5% w/v",
                "lot": "ALG-DEMO-0117",
                "cell_density_per_ml": 1e6,
                "rheology": {"consistency_pa_sn": 0.924, "flow_index": 0.686},
            },
            "nozzle": {"kind": "needle", "inner_diameter_mm": 0.41, "length_mm": 12.7},
        }
    ],
    "object": {
        "type": "scaffold",
        "shape": "rectangle",
        "center_mm": [50.0, 40.0],
        "size_mm": [12.0, 12.0],
        "layers": 4,
        "strand_spacing_mm": 1.2,
        "angles_deg": [0.0, 90.0],
        "perimeters": 1,
    },
}


@app.command("demo")
def demo(
    db: Annotated[
        str | None,
        typer.Option(
            "--store",
            "--db",
            help="store to keep: a file or postgresql://user@host:port/dbname (default: a "
            "temporary file, removed afterwards)",
        ),
    ] = None,
    layers: Annotated[int, typer.Option(min=1, max=50, help="scaffold layers")] = 4,
    config: Annotated[
        Path | None,
        typer.Option("-c", "--config", help="daemon config (default: config/demo.toml)"),
    ] = None,
    record_dir: Annotated[
        Path,
        typer.Option(help="folder for the batch record (PDF and its JSON electronic copy)"),
    ] = Path("."),
) -> None:
    """Simulated lab + daemon (embedded broker, SQLite or PostgreSQL) in GMP mode: an operator submits a
    planned scaffold print, a supervisor releases it with an electronic signature, it runs,
    and the batch record (PDF + JSON) is written."""
    from .._resources import data_dir
    from ..daemon import load_config
    from ..store import (
        default_key_path,
        default_witness_path,
        is_postgres_url,
        load_public_key,
        verify_store,
    )
    from ._proof import _print_report
    from ._record import write_record

    loaded = load_config(config or data_dir("config") / "demo.toml", overrides={"bus": {}})
    with tempfile.TemporaryDirectory(prefix="labdevices-demo-") as tmp:
        path: str | Path = db or Path(tmp) / "labdevices-demo.db"
        where = {"url": path} if is_postgres_url(path) else {"path": Path(path), "url": None}
        store = loaded.config.store.model_copy(update=where)
        # GMP mode on every printer: jobs wait, held, for a supervisor's release signature
        devices = {
            name: dev.model_copy(update={"require_release": True})
            if name in loaded.profiles and loaded.profiles[name].driver == "gcode"
            else dev
            for name, dev in loaded.config.devices.items()
        }
        update: dict[str, Any] = {"store": store, "devices": devices}
        if loaded.config.web is not None:
            # A free port: the demo is short-lived and must not fail on a busy 8080.
            host, _ = loaded.config.web.address()
            update["web"] = loaded.config.web.model_copy(update={"listen": f"{host}:0"})
        loaded.config = loaded.config.model_copy(update=update)
        job = dict(DEMO_JOB, object=dict(DEMO_JOB["object"], layers=layers))
        from ._users import DEMO_USERS, create_demo_users

        passwords = create_demo_users(path)
        console.print(
            "[bold]demo users[/] (new random passwords, shown once, for this demo only):",
            highlight=False,
        )
        for user, (full_name, roles) in DEMO_USERS.items():
            console.print(
                f"  {user:<12} {full_name:<22} {', '.join(roles):<11} {passwords[user]}",
                highlight=False,
            )
        final = asyncio.run(_demo(loaded, job, passwords))
        print_job(final)
        # The whole proof, as an inspector runs it: the daemon's public key and its witness.
        key = Path(loaded.config.store.key_file or default_key_path(path))
        witness = loaded.config.store.witness_file or default_witness_path(path)
        report = verify_store(path, public_key=load_public_key(key), witness=witness)
        _print_report(report)
        stem = f"batch-record-{final.batch_id or 'job'}-job{final.job_id}"
        pdf = write_record(path, final.job_id, record_dir / f"{stem}.pdf", "pdf")
        electronic = write_record(path, final.job_id, record_dir / f"{stem}.json", "json")
    console.print(
        f"[bold]batch record[/] written: {pdf.resolve()} (electronic copy: {electronic.resolve()})",
        highlight=False,
        soft_wrap=True,
    )
    if final.state != "completed" or report.exit_code != 0:
        raise typer.Exit(1)


async def follow_job(lab: LabClient, job: JobInfo) -> JobInfo:
    """Show a progress bar for a job already submitted, until it ends; return its final record."""
    with _progress_bar() as bar:
        task = bar.add_task(
            f"job {job.job_id} on {job.printer}", total=job.lines_total, state=job.state
        )
        async with contextlib.aclosing(lab.follow(job.job_id)) as events:
            async for event in events:
                fields: dict[str, Any] = {"completed": event.line}
                if event.state is not None:
                    fields["state"] = event.state
                bar.update(task, **fields)
    return await lab.job(job.job_id)


async def _demo(loaded: LoadedConfig, job: dict[str, Any], passwords: dict[str, str]) -> JobInfo:
    from ..client import LabClient
    from ..daemon import Daemon, redact_url

    console.print(f"[bold]starting[/] the simulated lab {loaded.config.simulated_lab!r} …")
    async with _simulated(loaded) as ready, Daemon(ready) as d:
        assert d.broker_url is not None
        console.print(
            f"[bold]daemon[/] for site {d.site!r} on {redact_url(d.broker_url)} (embedded broker), "
            f"store {redact_url(str(ready.config.store.location))}"
        )
        if d.web_url:
            console.print(f"[bold]dashboard[/] on {d.web_url} (log in as a demo user)")
        printer = next(name for name, slot in d.slots.items() if slot.is_printer)
        async with asyncio.timeout(30):
            await d.slots[printer].wait_ready()
        async with (
            LabClient(
                d.broker_url, site=d.site, user="olivia", password=passwords["olivia"]
            ) as olivia,
            LabClient(d.broker_url, site=d.site, user="sam", password=passwords["sam"]) as sam,
        ):
            console.print("[bold]logged in[/] as olivia (operator) and as sam (supervisor)")
            for info in await olivia.devices():
                console.print(f"  {info.name:<12} {info.state:<10} {info.profile}")
            console.print(
                "[bold]olivia[/] (operator) submits a scaffold print planned by the toolpath core …"
            )
            held = await olivia.submit(printer=printer, job=job)
            console.print(
                f"  job {held.job_id} is [bold]{held.state}[/]: GMP mode, it waits for a "
                "supervisor's release signature (olivia cannot release her own job)"
            )
            console.print(
                f"[bold]sam[/] (supervisor) reviews job {held.job_id}: batch {held.batch_id}, "
                f"patient {held.patient_id}, G-code SHA-256 {held.gcode_sha256}",
                highlight=False,
                soft_wrap=True,
            )
            _, released = await sam.sign(
                held.job_id,
                meaning="approved for printing",
                password=passwords["sam"],  # re-entered: a signature is a re-authentication
                comment="spec, bioink lot and G-code checked",
                content_sha256=held.content_sha256,
            )
            console.print(
                f"  signed [bold]approved for printing[/] (password re-entered): "
                f"job {held.job_id} is {released.state}"
            )
            final = await follow_job(olivia, released)
    console.print("[bold]shut down[/]: jobs settled, devices closed, store flushed")
    return final

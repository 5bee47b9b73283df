"""The ``audit`` group (its commands are in ``_proof.py``) and ``labdevices jobs [show ID]``: read
the store (file or PostgreSQL database) directly.

The store is opened read-only, so these commands are safe beside a running
daemon. The ``jobs`` group keeps its options on the group callback and on each
command, so that a ``--site`` option (asking a daemon over the bus instead of
reading the file) can sit beside ``--db``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from ..store import (
    JobRecord,
    StoreError,
    default_db_path,
    is_postgres_url,
    open_database,
    redact_url,
)
from . import app, err_console
from ._output import Table, print_json, stdout_console

_DB_HELP = (
    "the store: a file, or postgresql://user@host:port/dbname; default: $LABDEVICES_DB (either) if "
    f"set, else labdevices/labdevices.db in the per-user data folder (here: {default_db_path()})"
)
DbOption = Annotated[str | None, typer.Option("--store", "--db", help=_DB_HELP, show_default=False)]


def store_location(db: str | None) -> str | Path:
    """``--store`` as given (a path or a URL), else ``$LABDEVICES_DB`` (either), else the
    default store file."""
    env = os.environ.get("LABDEVICES_DB")
    return db or (env if env and is_postgres_url(env) else default_db_path())


audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)
jobs_app = typer.Typer(help="Print jobs recorded in the store.")
app.add_typer(audit_app, name="audit")
app.add_typer(jobs_app, name="jobs")


@contextmanager
def _store_errors() -> Iterator[None]:
    """A missing or corrupt store ends in one line naming the file and exit code 2."""
    try:
        yield
    except StoreError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _when(t: float | None) -> str:
    return "—" if t is None else datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


@jobs_app.callback(invoke_without_command=True)
def jobs(
    ctx: typer.Context,
    db: DbOption = None,
    limit: Annotated[int, typer.Option(help="show at most this many jobs, newest first")] = 50,
    as_json: Annotated[
        bool, typer.Option("--json", help="print JSON (stable field names) for scripts")
    ] = False,
) -> None:
    """List print jobs, newest first (`labdevices jobs show ID` for one job's full record)."""
    ctx.obj = db
    if ctx.invoked_subcommand is not None:
        return
    path = store_location(db)
    with _store_errors(), open_database(path, readonly=True) as store:
        records = store.list_jobs(limit=limit)
    if as_json:
        print_json(
            [
                {
                    "job_id": job.id,
                    "printer": job.printer,
                    "state": job.state.value,
                    "batch_id": job.batch_id,
                    "patient_id": job.patient_id,
                    "line": job.last_ack_line,
                    "lines_total": job.lines_total,
                    "created_at": job.created_at,
                    "ended_at": job.ended_at,
                }
                for job in records
            ]
        )
        return
    table = Table("id", "printer", "state", "batch", "patient", "progress", "created", "ended")
    table.columns[2].no_wrap = True
    for job in records:
        table.add_row(
            str(job.id),
            job.printer,
            _state(job),
            job.batch_id or "—",
            job.patient_id or "—",
            f"{job.last_ack_line}/{job.lines_total}",
            _when(job.created_at),
            _when(job.ended_at),
        )
    console = stdout_console()
    if not records:
        console.print(f"no jobs in {redact_url(str(path))}", highlight=False, soft_wrap=True)
        return
    console.print(table)


def _state(job: JobRecord) -> str:
    colour = {
        "completed": "green",
        "running": "cyan",
        "paused": "yellow",
        "queued": "white",
    }.get(job.state.value, "red")
    return f"[{colour}]{job.state.value}[/]"


@jobs_app.command("show")
def jobs_show(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(metavar="ID", help="job id")],
    db: DbOption = None,
) -> None:
    """Print one job's record: batch and patient, bioinks, G-code hash, state history, telemetry."""
    parent_db = ctx.obj if isinstance(ctx.obj, str) else None
    path = store_location(db or parent_db)
    with _store_errors(), open_database(path, readonly=True) as store:
        job = store.get_job(job_id)
        history = store.audit_records(object=f"job/{job_id}")
        signatures = store.list_signatures(f"job/{job_id}")
        summary = store.telemetry_summary(
            job.printer,
            start=job.started_at if job.started_at is not None else job.created_at,
            end=job.ended_at if job.ended_at is not None else time.time(),
        )
    console = stdout_console()
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold")
    fields.add_column()
    for name, value in [
        ("job", str(job.id)),
        ("printer", job.printer),
        ("state", _state(job)),
        ("batch", job.batch_id or "—"),
        ("patient", job.patient_id or "—"),
        ("bioinks", json.dumps(job.bioinks, ensure_ascii=False) if job.bioinks else "—"),
        ("G-code SHA-256", job.gcode_sha256 or "—"),
        ("content SHA-256", job.content_sha256 or "—"),
        ("submitted by", job.submitted_by or "—"),
        ("progress", f"line {job.last_ack_line} of {job.lines_total} acknowledged"),
        ("created", _when(job.created_at)),
        ("started", _when(job.started_at)),
        ("ended", _when(job.ended_at)),
        ("error", job.error or "—"),
    ]:
        fields.add_row(name, value)
    for sig in signatures:  # the manifestation: printed name, time, meaning
        fields.add_row("signed", sig.manifestation())
    console.print(fields)

    states = Table("time", "actor", "action", "change", "reason", title="state history (audited)")
    for rec in history:
        states.add_row(
            rec.time[:19].replace("T", " ") + " UTC",
            rec.actor,
            rec.action,
            _change(rec.old, rec.new),
            rec.reason or "",
        )
    console.print(states)

    if summary:
        tele = Table("signal", "unit", "samples", "min", "mean", "max", title="telemetry")
        for s in summary:
            tele.add_row(s.signal, s.unit, str(s.count), _num(s.min), _num(s.mean), _num(s.max))
        console.print(tele)
    else:
        console.print(
            f"no telemetry stored for {job.printer} during this job",
            highlight=False,
            soft_wrap=True,
        )


def _change(old: str | None, new: str | None) -> str:
    def state(text: str | None) -> str:
        if text is None:
            return "—"
        value = json.loads(text)
        return str(value.get("state", text)) if isinstance(value, dict) else text

    return f"{state(old)} → {state(new)}"


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.4g}"

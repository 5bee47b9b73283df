"""``labdevices record JOB``: the batch record of one job as PDF, HTML or JSON, from the store file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..store import open_database
from . import app
from ._output import stdout_console
from ._store import DbOption, _store_errors, store_location


def write_record(
    db: str | Path,
    job_id: int,
    out: Path,
    fmt: str,
    *,
    key: str | None = None,
    witness: Path | None = None,
) -> Path:
    """Render job ``job_id`` of the store ``db`` to ``out`` as ``pdf``, ``html`` or ``json``."""
    from ..record import collect_record, render_html, render_json, render_pdf

    with open_database(db, readonly=True) as store:
        record = collect_record(store, job_id, key=key, witness=witness)
    render = {"pdf": render_pdf, "html": render_html, "json": render_json}[fmt]
    data = render(record)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out


@app.command("record")
def record(
    job_id: Annotated[int, typer.Argument(metavar="JOB", help="job id")],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="file to write (default: batch-record-job<JOB>.<ext>)"),
    ] = None,
    html: Annotated[bool, typer.Option("--html", help="a self-contained HTML page")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="the electronic copy (complete, with hashes)")
    ] = False,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="the daemon's public key, kept apart from the store (PEM file or verifier key); "
            "default: <db>.key.pub",
        ),
    ] = None,
    witness: Annotated[
        Path | None,
        typer.Option(help="a witness's copy of the checkpoints; default: <db>.witness"),
    ] = None,
    db: DbOption = None,
) -> None:
    """Render a job's batch record: ids, bioinks and lots, printer, hashes, transitions,
    signatures, alarms, telemetry plots and the audit verification (PDF by default)."""
    if html and as_json:
        raise typer.BadParameter("give at most one of --html and --json")
    fmt = "json" if as_json else "html" if html else None
    if fmt is None:
        suffix = output.suffix.lower().lstrip(".") if output else ""
        fmt = suffix if suffix in ("html", "json") else "pdf"
    out = output or Path(f"batch-record-job{job_id}.{fmt}")
    with _store_errors():
        written = write_record(store_location(db), job_id, out, fmt, key=key, witness=witness)
    stdout_console().print(
        f"batch record of job {job_id} ({fmt.upper()}): {written}", highlight=False
    )

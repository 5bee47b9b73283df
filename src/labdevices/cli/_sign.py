"""``labdevices sign JOB --meaning approved``: an electronic signature on a job, over MQTT.

It shows what is being signed (job, batch, patient, bioinks, G-code and content hashes),
then asks for the signer's password (hidden): the signature is a re-authentication with
a meaning, bound to the content hash shown.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer
from rich.table import Table

from . import app
from ._daemon import ActorOption, BrokerOption, SiteOption, _actor, console

#: what the command accepts → the meaning recorded
MEANING_NAMES = {
    "reviewed": "reviewed",
    "approved": "approved for printing",
    "approved for printing": "approved for printing",
    "released": "released",
    "rejected": "rejected",
}


def _meaning(value: str) -> str:
    try:
        return MEANING_NAMES[value.strip().lower()]
    except KeyError:
        raise typer.BadParameter(
            f"{value!r} is not a meaning (use one of: {', '.join(sorted(MEANING_NAMES))})"
        ) from None


@app.command("sign")
def sign(
    job_id: Annotated[int, typer.Argument(metavar="JOB", help="job id")],
    meaning: Annotated[
        str,
        typer.Option(
            "--meaning",
            help="reviewed, approved (= approved for printing), released or rejected",
        ),
    ],
    comment: Annotated[str | None, typer.Option(help="a comment kept with the signature")] = None,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="read the password from standard input (scripts)"),
    ] = False,
    broker: BrokerOption = "mqtt://127.0.0.1:1883",
    site: SiteOption = "demo",
    actor: ActorOption = None,
) -> None:
    """Sign a job as --actor: shows what is signed, asks for your password, records the
    signature (in GMP mode a supervisor's release lets a held job start)."""
    from ..client import LabClient

    chosen = _meaning(meaning)
    user = _actor(actor)

    async def run() -> None:
        async with LabClient(broker, site=site, actor=user) as lab:
            job = await lab.job(job_id)
            table = Table(title=f"signing job {job_id}", show_header=False, title_justify="left")
            table.add_column(style="bold")
            table.add_column()
            lots = ", ".join(
                f"{b.get('name', '?')} (lot {b.get('lot') or '—'})"
                for b in job.bioinks
                if isinstance(b, dict)
            )
            for key, value in [
                ("job", f"{job.job_id}" + (f" ({job.name})" if job.name else "")),
                ("state", job.state),
                ("printer", f"{job.printer} ({job.profile or '—'})"),
                ("batch", job.batch_id or "—"),
                ("patient", job.patient_id or "—"),
                ("bioinks", lots or "—"),
                ("submitted by", job.submitted_by or "—"),
                ("G-code SHA-256", job.gcode_sha256 or "—"),
                ("content SHA-256", job.content_sha256 or "—"),
                ("signer", user),
                ("meaning", chosen),
            ]:
                table.add_row(key, value)
            console.print(table)
            if password_stdin:
                password = sys.stdin.readline().rstrip("\n")
            else:
                password = typer.prompt(f"password of {user} (signing {chosen!r})", hide_input=True)
            signature, after = await lab.sign(
                job_id,
                meaning=chosen,
                password=password,
                comment=comment,
                content_sha256=job.content_sha256,
            )
            console.print(
                f"[bold green]signed[/]: {signature.manifestation} — job {job_id} is {after.state}",
                highlight=False,
            )

    asyncio.run(run())

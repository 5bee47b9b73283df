"""``labdevices sign JOB --meaning approved``: an electronic signature on a job, over MQTT.

It shows what is being signed (job, batch, patient, bioinks, G-code and content hashes),
then asks for the signer's password (hidden): the signature is a re-authentication with
a meaning, bound to the content hash shown.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from . import app
from ._daemon import console
from ._output import Table
from ._reach import BrokerOption, CaOption, SessionOption, SiteOption, UserOption
from ._users import _errors, open_client, read_secret

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
    broker: BrokerOption = None,
    site: SiteOption = None,
    user: UserOption = None,
    session_file: SessionOption = None,
    ca_file: CaOption = None,
) -> None:
    """Sign a job as the user logged in: shows what is signed, asks for your password again,
    records the signature (in GMP mode a supervisor's release lets a held job start)."""
    chosen = _meaning(meaning)

    async def run() -> None:
        async with open_client(broker, site, user, session_file, ca_file) as lab:
            signer = lab.user or lab.actor
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
                ("signer", signer),
                ("meaning", chosen),
            ]:
                table.add_row(key, value)
            console.print(table)
            # the signature's own re-authentication (21 CFR 11.200), never from the environment
            password = read_secret(f"password of {signer} (signing {chosen!r}): ", env=False)
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

    with _errors():
        asyncio.run(run())

"""``labdevices audit verify|witness``, ``keys show`` and ``archive``: the proof of the record.

``audit verify`` exit codes: 0 verified (every record anchored by a signed checkpoint),
1 tampered (every problem listed, naming table and row), 2 the store cannot be read,
3 verified but with records not yet anchored (after the last checkpoint).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from ..store import StoreError, default_key_path, fingerprint, is_postgres_url, open_database
from ..store._checkpoints import (
    CheckpointError,
    WitnessLog,
    default_witness_path,
    load_verifier,
    parse_checkpoint,
    verifier_key,
)
from ..store._keys import public_key_bytes
from ..store._verify import StoreReport, verify_store
from . import app, err_console
from ._output import stdout_console
from ._store import DbOption, audit_app, store_location

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

keys_app = typer.Typer(help="The daemon's signing key.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

KeyOption = Annotated[
    str | None,
    typer.Option(
        "--key",
        help="the daemon's public key, kept apart from the store: a PEM file, or a verifier key "
        "string <name>+<key id>+<key> (`labdevices keys show`); default: <db>.key.pub",
        show_default=False,
    ),
]


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except StoreError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _public_key(key: str | None, db: str | Path, notes: list[str]) -> Ed25519PublicKey | None:
    if key is not None:
        return load_verifier(key)
    beside = default_key_path(db)
    for candidate in (beside.with_name(beside.name + ".pub"), beside):
        if candidate.exists():
            notes.append(
                f"public key taken from {candidate}, beside the store: pass --key with a copy "
                "kept elsewhere to trust it"
            )
            return load_verifier(candidate)
    return None


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str, int, int], None]]:
    if not enabled or not sys.stderr.isatty():
        yield lambda stage, done, total: None
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )
    tasks: dict[str, TaskID] = {}
    with bar:

        def tick(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total or None)
            bar.update(tasks[stage], completed=done, total=total or None)

        yield tick


@audit_app.command("verify")
def audit_verify(
    db: DbOption = None,
    key: KeyOption = None,
    witness: Annotated[
        Path | None,
        typer.Option(
            help="a witness's copy of the checkpoints (`labdevices audit witness`); "
            "default: <db>.witness if it exists"
        ),
    ] = None,
    archive: Annotated[
        Path | None,
        typer.Option(help="verify this archive (`labdevices archive`) instead of a store"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "-c",
            "--config",
            help="take the store, public key and witness file from this daemon config",
        ),
    ] = None,
) -> None:
    """Prove the whole record: the audit chain against the signed checkpoints and a witness, and
    every job, event, alarm, user, signature and telemetry row against it.

    Exit 0: verified. 1: tampered (every problem listed, naming table and row). 2: cannot read
    the store. 3: verified, but records after the last checkpoint are not yet anchored.
    """
    notes: list[str] = []
    if config is not None:
        from ..daemon import load_config

        store = load_config(config).config.store
        db = db or str(store.location)
        if key is None:
            private = store.key_file or default_key_path(store.location)
            key = str(private.with_name(private.name + ".pub"))
        witness = witness or store.witness_file
    path = archive or store_location(db)
    with _errors():
        public = _public_key(key, store_location(db) if archive is None else path, notes)
        if witness is None and archive is None:
            beside = default_witness_path(path)
            if beside.exists():
                witness = beside
                notes.append(f"witness {beside} is beside the store: keep a copy elsewhere")
        with _progress(not as_json) as tick:
            report = verify_store(
                path, public_key=public, witness=witness, progress=tick, archive=archive is not None
            )
    report.notes[:0] = notes
    if as_json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        _print_report(report)
    raise typer.Exit(report.exit_code)


def _print_report(report: StoreReport) -> None:
    console = stdout_console()
    for note in report.notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    checked = ", ".join(f"{n} {t}" for t, n in report.rows_checked.items())
    summary = (
        f"{report.records} audit records, {report.checkpoints} checkpoints"
        + (f", {report.witnessed} witnessed" if report.witnessed else "")
        + (f", key {report.key_fingerprint}" if report.key_fingerprint else "")
        + f"; rows: {checked}"
    )
    if report.problems or report.suppressed:
        err_console.print(
            f"[bold red]✗ {report.path}: TAMPERED — {len(report.problems)} problem(s)[/]",
            highlight=False,
            soft_wrap=True,
        )
        for p in report.problems:
            err_console.print(f"  {p.table} {p.row}: {p.what}", highlight=False, soft_wrap=True)
        for table, n in report.suppressed.items():
            err_console.print(f"  … and {n} more in {table}", highlight=False)
        err_console.print(f"  ({summary})", highlight=False, soft_wrap=True)
        return
    mark = "[bold green]✓[/]" if not report.unanchored else "[bold yellow]✓[/]"
    console.print(
        f"{mark} {report.path}: verified — {summary}; anchored up to seq {report.anchored_seq}",
        highlight=False,
        soft_wrap=True,
    )
    if report.unanchored:
        console.print(
            f"[yellow]not yet anchored: {report.unanchored} records[/] (seq "
            f"{report.anchored_seq + 1}–{report.head_seq}, after the last checkpoint)",
            highlight=False,
            soft_wrap=True,
        )


# -- keys ---------------------------------------------------------------------------------------


@keys_app.command("show")
def keys_show(
    db: DbOption = None,
    key: Annotated[
        Path | None,
        typer.Option(help="the key file (private or .pub); default: <db>.key beside the store"),
    ] = None,
    site: Annotated[
        str | None,
        typer.Option(help="the site, for the verifier key's name; default: from the checkpoints"),
    ] = None,
) -> None:
    """Print the daemon's public key and its fingerprint, for the validation file."""
    import base64

    path = store_location(db)
    with _errors():
        if key is None:
            beside = default_key_path(path)
            key = beside.with_name(beside.name + ".pub")
            if not key.exists():
                key = beside
        public = load_verifier(key)
        name = f"labdevices/{site}" if site else _origin(path)
    console = stdout_console()
    console.print(f"key file     {key}", highlight=False, soft_wrap=True)
    console.print(f"fingerprint  {fingerprint(public)}", highlight=False)
    console.print(
        f"public key   ed25519 {base64.b64encode(public_key_bytes(public)).decode()}",
        highlight=False,
    )
    if name:
        console.print(f"verifier key {verifier_key(name, public)}", highlight=False, soft_wrap=True)


def _origin(db: str | Path) -> str | None:
    if not is_postgres_url(db) and not Path(db).is_file():
        return None
    with open_database(db, readonly=True) as store:
        cps = store.checkpoints()
    return cps[-1][1].origin if cps else None


# -- witness ------------------------------------------------------------------------------------


async def run_witness(
    broker: str,
    site: str,
    out: Path,
    public: Ed25519PublicKey,
    *,
    on_accept: Callable[[int, int], None] | None = None,
    on_ignored: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Copy each checkpoint published on ``labdevices/{site}/audit/checkpoint`` into ``out``
    after checking it (signature, extends the last one held); ``CheckpointError`` on a fork
    or rollback by the daemon's key. Messages not signed by it are ignored (``on_ignored``).
    Runs until ``stop`` is set."""
    from ..bus import BusClient, Topics
    from ..daemon import parse_broker_urls

    log = WitnessLog(out, public)
    brokers = parse_broker_urls(broker)
    (host, port), *failover = brokers.endpoints
    async with (
        BusClient(
            host,
            port,
            failover=failover,
            site=site,
            username=brokers.user,
            password=brokers.password,
        ) as bus,
        bus.subscribe(Topics(site).audit_checkpoint()) as sub,
    ):
        waiter = asyncio.ensure_future((stop or asyncio.Event()).wait())
        try:
            while True:
                getter = asyncio.ensure_future(sub.get())
                done, _ = await asyncio.wait({getter, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    return
                message = getter.result()
                try:
                    item = message.json()
                    number, note = int(item["n"]), str(item["note"])
                    parse_checkpoint(note, public)
                except (ValueError, KeyError, TypeError, CheckpointError) as exc:
                    # Not the daemon's (anyone may publish on a broker without an ACL): ignored,
                    # loudly, rather than letting a stranger stop the witness.
                    reason = exc.message if isinstance(exc, CheckpointError) else "not a checkpoint"
                    if on_ignored is not None:
                        on_ignored(reason)
                    continue
                if log.accept(number, note) and on_accept is not None:
                    assert log.last is not None
                    on_accept(number, log.last[1].size)
        finally:
            waiter.cancel()


@audit_app.command("witness")
def audit_witness(
    broker: Annotated[str, typer.Option(help="the daemon's MQTT broker (mqtt[s]://host:port)")],
    site: Annotated[str, typer.Option(help="the site")],
    out: Annotated[Path, typer.Option("-o", "--out", help="this witness's checkpoint file")],
    key: Annotated[str, typer.Option(help="the daemon's public key (PEM file or verifier key)")],
) -> None:
    """Keep an independent copy of the site's signed checkpoints (run it on another machine).

    Each checkpoint must be signed by --key and extend the last one held; a fork or a rollback
    is refused loudly (exit 1), and then `audit verify --witness` on the store shows it.
    """
    console = stdout_console()
    with _errors():
        public = load_verifier(key)

    def accepted(number: int, size: int) -> None:
        console.print(f"checkpoint {number}: {size} records", highlight=False)

    def ignored(reason: str) -> None:
        err_console.print(f"[bold yellow]ignored a message:[/] {reason}", highlight=False)

    try:
        asyncio.run(run_witness(broker, site, out, public, on_accept=accepted, on_ignored=ignored))
    except CheckpointError as exc:
        err_console.print(f"[bold red]REFUSED:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


# -- archive ------------------------------------------------------------------------------------


def _parse_date(text: str) -> str:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date (YYYY-MM-DD[THH:MM[:SS]])") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@app.command("archive")
def archive(
    before: Annotated[
        str, typer.Option(help="archive records before this date (UTC unless given)")
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="the archive file to write (new)")],
    db: DbOption = None,
    key: KeyOption = None,
) -> None:
    """Export the records before a date with the checkpoints that prove them to one
    self-verifying file (`labdevices audit verify --archive FILE --key PUB`). Nothing is deleted
    from the store."""
    from ..store._archive import write_archive

    path = store_location(db)
    cut = _parse_date(before)
    notes: list[str] = []
    with _errors():
        public = _public_key(key, path, notes)
        if public is None:
            raise StoreError("no public key (--key) to check the checkpoints with", file=str(path))
        with _progress(True) as tick:
            summary = write_archive(path, out, before=cut, public_key=public, progress=tick)
    for note in notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    rows = ", ".join(f"{n} {t}" for t, n in summary.rows.items())
    stdout_console().print(
        f"archived to {summary.path}: {summary.records} audit records up to checkpoint "
        f"{summary.checkpoint} (before {summary.before}); {rows}"
        + (
            f"; {len(summary.omitted)} records changed later, left for a later archive"
            if summary.omitted
            else ""
        ),
        highlight=False,
        soft_wrap=True,
    )

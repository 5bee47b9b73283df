"""``labdevices retention run``: archive, roll up and remove raw telemetry past its policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from . import app, err_console
from ._output import stdout_console

retention_app = typer.Typer(help="Telemetry retention ([retention] in the daemon config).")
app.add_typer(retention_app, name="retention", no_args_is_help=True)


@retention_app.command("run")
def run(
    config: Annotated[Path, typer.Option("-c", "--config", help="daemon config (TOML)")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="count what would be removed; write nothing")
    ] = False,
    max_blocks: Annotated[
        int, typer.Option(min=1, help="telemetry blocks handled in this run (one archive)")
    ] = 2000,
    as_json: Annotated[bool, typer.Option("--json", help="the summary as JSON")] = False,
) -> None:
    """One retention run on the config's store, beside a running daemon or not: raw samples past
    `[retention]` are archived (`<store>.archive/`, verifies alone with `audit verify
    --archive`), rolled up per minute, and removed, each step recorded in the audit chain."""
    from ..daemon import load_config
    from ..store import (
        CheckpointSigner,
        default_key_path,
        load_or_create_signing_key,
        run_retention,
    )

    loaded = load_config(config)
    cfg = loaded.config
    if cfg.retention is None:
        err_console.print(
            f"[bold red]error:[/] {escape(loaded.source)}: no \\[retention] section: nothing is "
            "removed",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)
    store = cfg.store
    key_path = store.key_file or default_key_path(store.location)
    signer = None
    if key_path.exists():  # signs only a store its daemon closed (see run_retention)
        signer = CheckpointSigner(load_or_create_signing_key(key_path), f"labdevices/{cfg.site}")
    summary = run_retention(
        store.location,
        cfg.retention.policy(),
        archive_dir=cfg.retention.archive_dir,
        dry_run=dry_run,
        max_blocks=max_blocks,
        actor="cli",
        signer=signer,
        witness=store.witness_file,
    )
    if as_json:
        print(json.dumps(summary.as_json(), indent=2))
        return
    for note in summary.notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    verb = "would roll up" if dry_run else "rolled up"
    text = (
        f"{verb} {summary.samples} samples: {summary.blocks_removed} blocks removed, "
        f"{summary.blocks_trimmed} trimmed"
    )
    if not dry_run:
        text += f", {summary.rollups} minute rows"
        if summary.archive:
            text += f"; archive {summary.archive} (sha256 {summary.archive_sha256})"
    stdout_console().print(text, highlight=False, soft_wrap=True)

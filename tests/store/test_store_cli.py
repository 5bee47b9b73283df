"""``labdevices audit verify`` and ``labdevices jobs [show ID]`` against real stores (SQLite files
and PostgreSQL databases, ``--store`` taking either; ``--db`` is its older name)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import labdevices.cli._proof
import labdevices.cli._users  # noqa: F401
from labdevices.cli import app
from labdevices.devices import Sample
from labdevices.store import open_database

from ._tamper import tamper

runner = CliRunner()


def test_audit_verify_intact_but_unsigned(filled: str | Path) -> None:
    """A store written without a signing key verifies as a chain, but nothing is anchored (exit 3)."""
    result = runner.invoke(app, ["audit", "verify", "--store", str(filled)])
    assert result.exit_code == 3, result.output
    assert "verified — 12 audit records" in result.output
    assert "not yet anchored: 12 records" in result.output


def test_audit_verify_names_the_edited_record(filled: str | Path) -> None:
    tamper(filled, "UPDATE audit SET reason = 'nothing to see' WHERE seq = 4")
    result = runner.invoke(app, ["audit", "verify", "--db", str(filled)])
    assert result.exit_code == 1
    assert "audit seq 4: edited" in result.output


def test_audit_verify_uses_the_environment_default(
    filled: str | Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABDEVICES_DB", str(filled))
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 3, result.output
    assert str(filled) in result.output


def test_jobs_lists_the_store(filled: str | Path) -> None:
    result = runner.invoke(app, ["jobs", "--store", str(filled)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "printer1" in result.output
    assert "printer2" in result.output
    assert "B-001" in result.output
    assert "completed" in result.output


def test_jobs_show_prints_the_job_record(filled: str | Path) -> None:
    with open_database(filled) as db:
        started = db.get_job(1).started_at or 0.0
        db.insert_telemetry(
            [
                Sample("printer1", "head_temp", 20.0 + i, "degC", t=started + i / 1000)
                for i in range(3)
            ]
        )
    result = runner.invoke(
        app, ["jobs", "show", "1", "--store", str(filled)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    out = result.output
    for text in (
        "B-001",
        "P-17",
        "GelMA 5%",
        "0f" * 32,
        "line 500 of 500",
        "completed",
        "queued → running",
        "running → paused",
        "check nozzle",
        "bob",
        "head_temp",
        "21",
    ):
        assert text in out, text
    # the group's --store (here by its older name --db) reaches the subcommand too
    again = runner.invoke(app, ["jobs", "--db", str(filled), "show", "2"], env={"COLUMNS": "200"})
    assert again.exit_code == 0, again.output
    assert "printer2" in again.output
    assert "no telemetry stored for printer2" in again.output


def test_jobs_show_unknown_id(filled: str | Path) -> None:
    result = runner.invoke(app, ["jobs", "show", "99", "--db", str(filled)])
    assert result.exit_code == 2
    assert "no job with id 99" in result.output


@pytest.mark.parametrize("args", [["audit", "verify"], ["jobs"], ["jobs", "show", "1"]])
@pytest.mark.parametrize("content", [None, b"\x00garbage, not a database" * 50])
def test_missing_or_corrupt_store_is_named_without_traceback(
    tmp_path: Path, args: list[str], content: bytes | None
) -> None:
    db = tmp_path / "store.db"
    if content is not None:
        db.write_bytes(content)
    result = runner.invoke(app, [*args, "--db", str(db)])
    assert result.exit_code == 2
    assert "store.db" in result.output
    assert (
        "file not found" in result.output
        if content is None
        else "not a labdevices store" in result.output
    )
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not db.exists() or content is not None  # reading never creates a store


def test_cli_entry_point_reports_a_missing_store_without_traceback(tmp_path: Path) -> None:
    db = tmp_path / "absent.db"
    proc = subprocess.run(
        [sys.executable, "-m", "labdevices", "audit", "verify", "--db", str(db)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "absent.db: no store here (file not found)" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("args", [["audit", "verify"], ["jobs"], ["users", "list"]])
def test_unreachable_or_empty_postgresql_store_is_named_without_password(
    postgres_url: str, args: list[str]
) -> None:
    unreachable = "postgresql://lab:s3cret@127.0.0.1:1/site"
    result = runner.invoke(app, [*args, "--store", unreachable])
    assert result.exit_code == 2, result.output
    assert "postgresql://lab:***@127.0.0.1:1/site: cannot connect" in result.output
    assert "s3cret" not in result.output
    if args != ["users", "list"]:  # users list opens the store to write (it creates it)
        empty = runner.invoke(app, [*args, "--store", postgres_url])
        assert empty.exit_code == 2, empty.output
        assert "not a labdevices store" in empty.output

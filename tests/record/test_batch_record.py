"""The batch record (21 CFR 11.10(b)): the PDF an inspector reads says what the store holds.

A job is built through the real store (users, a GMP release signature, telemetry, an
alarm); its record is rendered and the PDF's text (poppler's pdftotext) is checked
field by field against the store, and the JSON copy against the same values.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labdevices.cli import _register as register_commands
from labdevices.cli import app
from labdevices.record import collect_record, render_html, render_json, render_pdf
from labdevices.store import SqliteDatabase, TelemetryPoint

GCODE = "G28\nM126 S255\nG1 X10 Y10 F600\nG1 X20 Y10\nM127\n"
BIOINKS = [
    {"tool": 0, "name": "alginate 1.5% w/v", "lot": "ALG-2026-117", "cell_density_per_ml": 1e6},
    {"tool": 1, "name": "GelMA 5%", "lot": "GM-55-A", "cell_density_per_ml": 2e6},
]


def pdf_text(pdf: Path) -> str:
    out = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
    )
    return out.stdout


def squash(text: str) -> str:
    """Whitespace runs as one space: table cells wrap, words stay."""
    return re.sub(r"\s+", " ", text)


def when(iso: str) -> str:
    """How the record prints an ISO UTC time: to the millisecond (tables say UTC in the header)."""
    return iso.replace("T", " ").removesuffix("Z")[:23]


@pytest.fixture
def store_with_job(tmp_path: Path) -> tuple[Path, int]:
    db = tmp_path / "lab.db"
    with SqliteDatabase(db) as store:
        store.add_user(
            "olivia",
            "Olivia Operator",
            ["operator"],
            by="admin",
            reason="t",
            password="tulip-h-7171",
        )
        store.add_user(
            "sam",
            "Sam Supervisor",
            ["supervisor"],
            by="admin",
            reason="t",
            password="copper-m-3838",
        )
        job = store.create_job(
            "printer",
            actor="olivia",
            batch_id="B-2026-0042",
            patient_id="P-0007",
            bioinks=BIOINKS,
            gcode=GCODE,
            lines_total=5,
            name="lattice",
            profile="marlin-pneumatic",
            spec={"name": "lattice", "layers": 4},
            release_required=True,
        )
        store.add_job_event(job.id, "plan", {"planned_duration_s": 12.5}, actor="olivia")
        assert job.content_sha256 is not None
        store.add_signature(f"job/{job.id}", "sam", "released", "lots checked", job.content_sha256)
        store.add_job_event(
            job.id,
            "printer",
            {
                "device": "printer",
                "profile": "marlin-pneumatic",
                "firmware": {"FIRMWARE_NAME": "Marlin 2.1.2 (sim)", "MACHINE_TYPE": "BioPrinter"},
            },
        )
        store.transition_job(job.id, "running", actor="daemon")
        t0 = time.time()
        store.insert_telemetry(
            [
                TelemetryPoint("printer", "pressure", t0 + i * 0.01, 100.0 + i, "kPa")
                for i in range(5)
            ]
            + [TelemetryPoint("incubator", "co2", t0 + i * 0.01, 5.0, "%") for i in range(5)]
        )
        store.raise_alarm("incubator", "incubator-door-open", "warning", reason="door open 30 s")
        store.record_progress(job.id, 5)
        time.sleep(0.06)  # the telemetry's times lie inside the job's window
        store.transition_job(job.id, "completed", actor="daemon")
    return db, job.id


def test_the_pdf_says_what_the_store_holds(
    store_with_job: tuple[Path, int], tmp_path: Path
) -> None:
    db, job_id = store_with_job
    with SqliteDatabase(db, readonly=True) as store:
        record = collect_record(store, job_id)
        job = store.get_job(job_id)
        [sig] = store.list_signatures(f"job/{job_id}")
        transitions = [
            r for r in store.audit_records(object=f"job/{job_id}") if r.action == "job.transition"
        ]
        [alarm] = store.list_alarms()
        summary = store.telemetry_summary("printer", start=job.started_at, end=job.ended_at)
        head = store.verify()
    pdf = tmp_path / "record.pdf"
    pdf.write_bytes(render_pdf(record))
    text = pdf_text(pdf)
    flat = squash(text)

    assert f"Batch record — print job {job_id}" in text
    for value in (
        job.batch_id,
        job.patient_id,
        job.name,
        job.printer,
        job.profile,
        job.submitted_by,
        job.gcode_sha256,
        job.content_sha256,
        "Marlin 2.1.2 (sim) (BioPrinter)",
        f"{job.last_ack_line} printed of {job.lines_total} planned",
        "(planned 12.5 s)",
        "required (supervisor signature, two-person rule)",
    ):
        assert value is not None and value in flat, value
    for ink in BIOINKS:
        assert f"{ink['name']} {ink['lot']}" in flat
    for key in ("created_at", "started_at", "ended_at"):
        assert when(record["job"][key]) in flat, key
    # the signature's manifestation: printed name, time, meaning (and what it bound)
    assert sig.full_name in flat and sig.meaning in flat and when(sig.time) in flat
    assert sig.manifestation() in flat
    # every state transition with its actor and time
    for r in transitions:
        new = json.loads(r.new or "{}")["state"]
        assert when(r.time) in flat and r.actor in flat and new in flat
    assert "held → queued" in flat and "queued → running" in flat and "running → completed" in flat
    assert f"{alarm.name}" in flat and when(record["alarms"][0]["raised_at"]) in flat
    [pressure] = summary
    assert re.search(rf"printer pressure kPa {pressure.count} 100 102 104", flat)
    # the verification result
    assert f"record {head.head_seq}, {head.head_hash}" in flat
    assert "no checkpoint yet covers this job's records" in flat
    # footer on every page: content hash, where the electronic copy is, page numbers
    pages = text.split("\f")[:-1]
    assert len(pages) >= 2
    for n, page in enumerate(pages, 1):
        assert f"content SHA-256 {job.content_sha256}" in page
        assert "electronic copy: JSON" in page and f"page {n} of {len(pages)}" in page


def test_the_json_copy_is_complete_and_the_html_self_contained(
    store_with_job: tuple[Path, int],
) -> None:
    db, job_id = store_with_job
    with SqliteDatabase(db, readonly=True) as store:
        record = collect_record(store, job_id)
        job = store.get_job(job_id)
        [sig] = store.list_signatures(f"job/{job_id}")
    data = json.loads(render_json(record))
    assert data["format"] == "labdevices.batch-record/1"
    assert data["job"]["gcode_sha256"] == job.gcode_sha256
    assert data["job"]["content_sha256"] == job.content_sha256
    assert data["job"]["events_sha256"] == job.events_sha256
    assert data["bioinks"] == BIOINKS
    assert data["signatures"][0]["manifestation"] == sig.manifestation()
    assert data["signatures"][0]["content_sha256"] == job.content_sha256
    assert data["signatures"][0]["audit_seq"] is not None
    assert data["printer"]["firmware"]["FIRMWARE_NAME"] == "Marlin 2.1.2 (sim)"
    samples = data["telemetry"]["devices"]["printer"]["signals"]["pressure"]["samples"]
    assert [v for _, v in samples] == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert set(data["telemetry"]["devices"]) == {"printer", "incubator"}
    assert data["verification"]["chain_ok"] is True and data["verification"]["checkpoint"] is None
    page = render_html(record).decode()
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from elsewhere
    assert sig.manifestation() in page and str(job.content_sha256) in page


def test_a_job_changed_behind_the_stores_back_shows_in_the_record(
    store_with_job: tuple[Path, int], tmp_path: Path
) -> None:
    db, job_id = store_with_job
    with SqliteDatabase(db, readonly=True) as store:
        before = collect_record(store, job_id)
    assert before["verification"]["content_ok"] is True
    assert before["signatures"][0]["matches_content"] is True
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE jobs SET patient_id = 'P-9999' WHERE id = ?", (job_id,))
    with SqliteDatabase(db, readonly=True) as store:
        record = collect_record(store, job_id)
    assert record["job"]["patient_id"] == "P-9999"
    assert record["verification"]["content_ok"] is False
    assert record["signatures"][0]["matches_content"] is False
    pdf = tmp_path / "tampered.pdf"
    pdf.write_bytes(render_pdf(record))
    flat = squash(pdf_text(pdf))
    assert "DOES NOT MATCH its content SHA-256" in flat
    assert re.search(r"Sam Supervisor sam .* released lots checked NO", flat)


def test_labdevices_record_writes_pdf_html_and_json(
    store_with_job: tuple[Path, int], tmp_path: Path
) -> None:
    db, job_id = store_with_job
    register_commands()
    runner = CliRunner()
    for flag, name in (([], "r.pdf"), (["--html"], "r.html"), (["--json"], "r.json")):
        out = tmp_path / name
        result = runner.invoke(app, ["record", str(job_id), "--db", str(db), "-o", str(out), *flag])
        assert result.exit_code == 0, result.output
        assert str(out) in result.output
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF-")
    assert json.loads((tmp_path / "r.json").read_text())["job"]["id"] == job_id
    missing = runner.invoke(app, ["record", "999", "--db", str(db), "-o", str(tmp_path / "x.pdf")])
    assert missing.exit_code == 2 and "no job with id 999" in missing.output

"""Electronic signatures and GMP release through the daemon (21 CFR 11.50, 11.70, 11.200).

Real parts: a Mosquitto broker, a simulated printer on a pty, the daemon, its SQLite file.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from labdevices.client import JobInfo, LabClient
from labdevices.daemon import Daemon, LoadedConfig
from labdevices.errors import Forbidden, Unauthenticated
from labdevices.record import collect_record, render_pdf
from labdevices.sim.printer import SimPrinterConfig, SimulatedPrinter
from labdevices.store import ContentMismatch, SqliteDatabase, verify_audit
from labdevices.testing._auth import issue_session
from labdevices.testing._mqtt import MosquittoBroker

from .conftest import deadline, job_lines, long_job, make_config

PASSWORDS = {
    "olivia": "tulip-harbour-71",
    "owen": "granite-violin-22",
    "sam": "copper-meadow-38",
    "sara": "lantern-quartz-49",
}
NAMES = {
    "olivia": "Olivia Operator",
    "owen": "Owen Operator",
    "sam": "Sam Supervisor",
    "sara": "Sara Supervisor",
}
ROLES = {
    "olivia": ["operator"],
    "owen": ["operator"],
    "sam": ["supervisor"],
    "sara": ["supervisor"],
}


def pdf_text(pdf: Path) -> str:
    """The PDF's text as poppler's pdftotext reads it (what a person's viewer shows)."""
    out = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
    )
    return out.stdout


SHORT_JOB = "G28\nG1 X5 Y5 F600\nG1 X6 Y5\nG1 X6 Y6\n"


def add_users(db: Path) -> None:
    with SqliteDatabase(db) as store:
        for user, password in PASSWORDS.items():
            store.add_user(
                user, NAMES[user], ROLES[user], by="admin", reason="test lab", password=password
            )


def client(broker: MosquittoBroker, site: str, db: Path, user: str) -> LabClient:
    """A client logged in as ``user`` (a session, as `labdevices login` gives)."""
    return LabClient(broker.url, site=site, session=issue_session(db, user, site=site))


def gmp_config(site: str, broker: MosquittoBroker, db: Path, port: str) -> LoadedConfig:
    """The test lab with its printer in GMP mode (``require_release = true``)."""
    loaded = make_config(site, broker, db, port)
    devices = dict(loaded.config.devices)
    devices["printer"] = devices["printer"].model_copy(update={"require_release": True})
    loaded.config = loaded.config.model_copy(update={"devices": devices})
    return loaded


async def wait_state(lab: LabClient, job_id: int, *states: str) -> str:
    async with contextlib.aclosing(lab.follow(job_id)) as events:
        async for event in events:
            if event.kind == "state" and event.state in states:
                return event.state
    return (await lab.job(job_id)).state


async def test_gmp_release_needs_a_supervisors_password_and_not_the_submitters_signature(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    add_users(db)
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim:
        assert sim.port is not None
        async with (
            Daemon(gmp_config(site, mqtt_broker, db, sim.port)),
            client(mqtt_broker, site, db, "olivia") as olivia,
            client(mqtt_broker, site, db, "owen") as owen,
            client(mqtt_broker, site, db, "sam") as sam,
            deadline(60),
        ):
            submitted = await olivia.submit(printer="printer", gcode=SHORT_JOB, batch_id="B-17")
            job_id = submitted.job_id
            assert submitted.state == "held" and submitted.release_required
            assert submitted.submitted_by == "olivia" and submitted.content_sha256

            # wrong password: refused, nothing signed, the job stays held
            with pytest.raises(Unauthenticated):
                await sam.sign(job_id, meaning="released", password="not-sams-password")
            # the re-entered user id must be the one signed in
            with pytest.raises(Unauthenticated, match="not the user signed in"):
                await sam.request(
                    f"{sam.topics.root}/daemon/cmd/sign",
                    {
                        "job_id": job_id,
                        "meaning": "released",
                        "user": "sara",
                        "password": PASSWORDS["sara"],
                        "content_sha256": submitted.content_sha256,
                    },
                )
            # the submitter cannot release her own job; neither can another operator
            # (operators lack record.sign: refused before the handler, by the daemon's guard)
            with pytest.raises(Forbidden, match=r"record\.sign"):
                await olivia.sign(job_id, meaning="released", password=PASSWORDS["olivia"])
            with pytest.raises(Forbidden, match=r"record\.sign"):
                await owen.sign(job_id, meaning="approved for printing", password=PASSWORDS["owen"])
            # a stale content hash (what the signer saw is not the job) is refused
            with pytest.raises(ContentMismatch):
                await sam.sign(
                    job_id, meaning="released", password=PASSWORDS["sam"], content_sha256="0" * 64
                )
            assert (await sam.job(job_id)).state == "held"
            assert (await sam.job(job_id)).signatures == []

            signature, after = await sam.sign(
                job_id,
                meaning="approved for printing",
                password=PASSWORDS["sam"],
                comment="checked against the batch plan",
            )
            assert after.state in ("queued", "running", "completed")
            assert signature.full_name == "Sam Supervisor"
            assert signature.content_sha256 == submitted.content_sha256
            assert await wait_state(sam, job_id, "completed", "failed") == "completed"
            final = await sam.job(job_id)
        assert job_lines(sim.executed) == SHORT_JOB.split("\n")[:-1]

    # the manifestation is in the job record: API, JSON and PDF
    [sig] = final.signatures
    assert (sig.full_name, sig.meaning, sig.user_id) == (
        "Sam Supervisor",
        "approved for printing",
        "sam",
    )
    assert sig.manifestation == f"Sam Supervisor (sam), {sig.time}, approved for printing"
    with SqliteDatabase(db, readonly=True) as store:
        record = collect_record(store, job_id)
        audit = store.audit_records()
    assert [s["manifestation"] for s in record["signatures"]] == [sig.manifestation]
    assert record["signatures"][0]["matches_content"] is True
    assert [(t["actor"], t["to"]) for t in record["transitions"]] == [
        ("olivia", "held"),
        ("sam", "queued"),
        ("daemon", "running"),
        ("daemon", "completed"),
    ]
    pdf = tmp_path / "record.pdf"
    pdf.write_bytes(render_pdf(record))
    text = pdf_text(pdf)
    assert "Sam Supervisor" in text and "approved for printing" in text
    assert sig.time.replace("T", " ")[:23] in text
    assert record["job"]["submitted_by"] == "olivia" and "olivia" in text
    assert record["printer"]["firmware"].get("FIRMWARE_NAME")
    # the daemon signed checkpoints: one covers the job's records, checked with the public key
    ver = record["verification"]
    assert ver["ok"] and ver["key_fingerprint"], ver
    assert ver["checkpoint"] is not None and ver["checkpoint"]["verified"] is True
    assert ver["checkpoint"]["size"] >= ver["job_last_seq"] > 0
    assert "its signature and the chain up to it verified" in " ".join(text.split())

    # every refusal was audited, and no password reached the audit trail
    refused = [r for r in audit if r.action == "command.refused"]
    assert {json.loads(r.new or "{}")["command"] for r in refused} == {"sign"}
    assert len(refused) == 3  # wrong password, other user id, stale content
    guarded = [r for r in audit if r.action == "request.refused" and "sign" in (r.new or "")]
    assert {r.actor for r in guarded} == {"olivia", "owen"}  # operators: no record.sign
    assert any(r.action == "user.login_failed" and r.object == "user/sam" for r in audit)
    everything = "\n".join(f"{r.old} {r.new} {r.reason}" for r in audit)
    assert not any(p in everything for p in [*PASSWORDS.values(), "not-sams-password"])
    assert [r.action for r in audit if r.object.startswith("signature/")] == ["record.sign"]
    assert verify_audit(db).ok


async def test_a_supervisor_cannot_release_a_job_they_submitted_and_rejected_cancels(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    add_users(db)
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim:
        assert sim.port is not None
        async with (
            Daemon(gmp_config(site, mqtt_broker, db, sim.port)),
            client(mqtt_broker, site, db, "sam") as sam,
            client(mqtt_broker, site, db, "sara") as sara,
            deadline(60),
        ):
            own = await sam.submit(printer="printer", gcode=SHORT_JOB)
            with pytest.raises(Forbidden, match="two-person rule"):
                await sam.sign(own.job_id, meaning="released", password=PASSWORDS["sam"])
            # reviewing one's own job is allowed; it does not release it
            _, reviewed = await sam.sign(own.job_id, meaning="reviewed", password=PASSWORDS["sam"])
            assert reviewed.state == "held"
            _, rejected = await sara.sign(
                own.job_id, meaning="rejected", password=PASSWORDS["sara"], comment="wrong lot"
            )
            assert rejected.state == "cancelled"
            assert [s.meaning for s in rejected.signatures] == ["reviewed", "rejected"]
        assert job_lines(sim.executed) == []
    assert verify_audit(db).ok


async def test_g_code_changed_after_release_is_refused_at_start(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    add_users(db)
    tampered = "G28\nG1 X77 Y77 F600\nG1 X78 Y77\nG1 X78 Y78\n"
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.02)) as sim:
        assert sim.port is not None
        async with (
            Daemon(gmp_config(site, mqtt_broker, db, sim.port)),
            client(mqtt_broker, site, db, "olivia") as olivia,
            client(mqtt_broker, site, db, "sam") as sam,
            deadline(90),
        ):
            busy = await olivia.submit(printer="printer", gcode=long_job())
            await sam.sign(busy.job_id, meaning="released", password=PASSWORDS["sam"])
            assert await wait_state(olivia, busy.job_id, "running") == "running"
            # two released jobs wait behind it; then one's G-code, the other's row, is changed
            gcode_job = await olivia.submit(printer="printer", gcode=SHORT_JOB)
            row_job = await olivia.submit(printer="printer", gcode=SHORT_JOB)
            for job in (gcode_job, row_job):
                _, after = await sam.sign(job.job_id, meaning="released", password=PASSWORDS["sam"])
                assert after.state == "queued"
            with sqlite3.connect(db) as raw:
                raw.execute(
                    "UPDATE job_gcode SET gcode = ? WHERE job_id = ?", (tampered, gcode_job.job_id)
                )
                raw.execute("UPDATE jobs SET batch_id = 'B-OTHER' WHERE id = ?", (row_job.job_id,))
            await olivia.cancel("printer", job_id=busy.job_id, reason="make room")
            assert await wait_state(olivia, gcode_job.job_id, "failed", "completed") == "failed"
            assert await wait_state(olivia, row_job.job_id, "failed", "completed") == "failed"
            failed: JobInfo = await olivia.job(gcode_job.job_id)
            row_failed: JobInfo = await olivia.job(row_job.job_id)
        assert not any("X77" in line or "X78" in line for line in sim.executed)
    assert failed.error is not None and "refused to start" in failed.error
    assert "changed after submission" in failed.error
    assert row_failed.error is not None and "job row was changed" in row_failed.error
    with SqliteDatabase(db, readonly=True) as store:
        audit = store.audit_records(object=f"job/{gcode_job.job_id}")
    assert audit[-1].action == "job.transition" and audit[-1].reason == "content check before start"


async def test_a_held_job_waits_through_a_daemon_restart_and_runs_once_released(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    add_users(db)
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim:
        assert sim.port is not None
        async with (
            Daemon(gmp_config(site, mqtt_broker, db, sim.port)),
            client(mqtt_broker, site, db, "olivia") as olivia,
            deadline(30),
        ):
            held = await olivia.submit(printer="printer", gcode=SHORT_JOB)
            assert held.state == "held"
        # a new daemon on the same store: the job is still held (never started silently)
        async with (
            Daemon(gmp_config(site, mqtt_broker, db, sim.port)),
            client(mqtt_broker, site, db, "sam") as sam,
            deadline(30),
        ):
            assert (await sam.job(held.job_id)).state == "held"
            _, released = await sam.sign(held.job_id, meaning="released", password=PASSWORDS["sam"])
            assert released.state in ("queued", "running", "completed")
            assert await wait_state(sam, held.job_id, "completed", "failed") == "completed"
        assert job_lines(sim.executed) == SHORT_JOB.split("\n")[:-1]
    assert verify_audit(db).ok

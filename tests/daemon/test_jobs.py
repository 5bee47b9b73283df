"""Jobs through the client: planned, run on the simulated printer exactly as planned, audited."""

from __future__ import annotations

import contextlib
from pathlib import Path

from labdevices.client import JobEvent, JobInfo, LabClient
from labdevices.daemon import Daemon
from labdevices.devices.gcode import load_gcode
from labdevices.profiles import load_profile
from labdevices.sim.printer import SimPrinterConfig, SimulatedPrinter
from labdevices.store import JobState, verify_audit
from labdevices.testing._auth import issue_session
from labdevices.testing._mqtt import MosquittoBroker
from labdevices.toolpath import PrintJob, plan_job

from .conftest import job_lines, make_config, scaffold_spec


async def test_a_planned_job_runs_exactly_as_planned_and_the_audit_chain_verifies(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    spec = scaffold_spec()
    planned = load_gcode(
        plan_job(PrintJob.model_validate(spec), load_profile("marlin-pneumatic")).gcode
    )
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim:
        assert sim.port is not None
        async with (
            Daemon(make_config(site, mqtt_broker, db, sim.port)),
            LabClient(
                mqtt_broker.url, site=site, session=issue_session(db, "alice", site=site)
            ) as lab,
        ):
            events: list[JobEvent] = []
            info: JobInfo | None = None
            async with contextlib.aclosing(lab.run(printer="printer", job=spec)) as stream:
                async for item in stream:
                    if isinstance(item, JobInfo):
                        info = item
                    else:
                        events.append(item)
            assert info is not None
            assert info.lines_total == len(planned)
            assert info.batch_id == "B-2026-0042" and info.patient_id == "P-0007"
            final = events[-1]
            assert (final.kind, final.state) == ("state", "completed")
            assert [e.seq for e in events] == list(range(events[0].seq, final.seq + 1))
            assert [e.state for e in events if e.kind == "state"][-2:] == ["running", "completed"]
            record = await lab.job(info.job_id)
            assert record.state == "completed" and record.line == len(planned)
            assert record.bioinks[0]["name"] == "alginate 1.5% w/v"
        assert job_lines(sim.executed) == planned
    result = verify_audit(db)
    assert result.ok, result.message
    from labdevices.store import SqliteDatabase

    with SqliteDatabase(db, readonly=True) as store:
        actions = [r.action for r in store.audit_records()]
        job = store.get_job(info.job_id)
    assert job.state == JobState.COMPLETED
    assert actions[0] == "config.load"
    assert "job.create" in actions and actions.count("job.transition") == 2

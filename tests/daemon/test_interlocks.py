"""An interlock trips on a simulated printhead overheating: the job pauses, the alarm is raised,
acknowledged by a user, and all of it is audited."""

from __future__ import annotations

import contextlib
from pathlib import Path

from labdevices.client import AlarmInfo, LabClient
from labdevices.daemon import Daemon, InterlockConfig
from labdevices.sim.printer import SimPrinterConfig, SimulatedPrinter
from labdevices.store import SqliteDatabase, verify_audit
from labdevices.testing._auth import issue_session
from labdevices.testing._mqtt import MosquittoBroker

from .conftest import make_config

# A job whose printhead heater is set far too hot (a wrong line in a hand-edited file).
OVERHEATING_JOB = "\n".join(
    ["G28", "M104 S60", *(f"G1 X{10 + 10 * (i % 2)} Y10 F600" for i in range(400))]
)


async def test_overheating_printhead_pauses_the_job_and_raises_an_alarm(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    lock = InterlockConfig(
        name="printhead-overheat",
        device="printer",
        signal="nozzle_temperature",
        condition="above",
        value=37.0,
        hold_s=0.2,
        action="pause_job",
        severity="critical",
    )
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.02)) as sim:
        assert sim.port is not None
        config = make_config(site, mqtt_broker, db, sim.port, interlocks=[lock])
        async with (
            Daemon(config),
            LabClient(
                mqtt_broker.url, site=site, session=issue_session(db, "carol", site=site)
            ) as lab,
            lab.alarm_events() as alarm_events,
        ):
            job_id = None
            states = []
            async with contextlib.aclosing(
                lab.run(printer="printer", gcode=OVERHEATING_JOB)
            ) as stream:
                async for item in stream:
                    job_id = getattr(item, "job_id", job_id)
                    if getattr(item, "kind", None) == "state":
                        states.append(item.state)  # type: ignore[union-attr]
                        if item.state == "paused":  # type: ignore[union-attr]
                            break
            assert states[-2:] == ["running", "paused"]
            raised = await anext(alarm_events)
            assert (raised.event, raised.name, raised.severity) == (
                "raised",
                "printhead-overheat",
                "critical",
            )
            assert "nozzle_temperature above 37.0" in (raised.reason or "")
            assert not any(sim.state.valves.values())
            assert sim.state.temperatures_c[0] > 37.0

            active = await lab.alarms(active_only=True)
            assert [a.alarm_id for a in active] == [raised.alarm_id]
            acked = await lab.ack_alarm(raised.alarm_id, reason="heater setpoint corrected")
            assert isinstance(acked, AlarmInfo) and acked.acknowledged_by == "carol"
            assert (await anext(alarm_events)).event == "acknowledged"

            job = await lab.job(job_id or 0)
            assert job.state == "paused" and 0 < job.line < job.lines_total
            cancelled = await lab.cancel("printer", reason="overheated")
            assert cancelled.job_id == job_id
            async with contextlib.aclosing(lab.follow(job_id or 0)) as stream:
                async for event in stream:
                    last = event
            assert last.state == "cancelled"
    assert verify_audit(db).ok
    with SqliteDatabase(db, readonly=True) as store:
        records = store.audit_records()
    by_action = {r.action: r for r in records}
    assert by_action["alarm.raise"].object == f"alarm/{raised.alarm_id}"
    assert by_action["alarm.acknowledge"].actor == "carol"
    assert by_action["alarm.acknowledge"].reason == "heater setpoint corrected"
    paused = [r for r in records if r.action == "job.transition" and '"paused"' in (r.new or "")]
    assert paused[0].actor == "interlock:printhead-overheat"


async def test_a_hot_bed_has_its_setpoint_held_and_an_estop_halts_the_printer(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    lock = InterlockConfig(
        name="bed-too-warm",
        device="printer",
        signal="bed_temperature",
        condition="above",
        value=40.0,
        action="hold_setpoint",
        setpoint="bed_temperature_setpoint",
        setpoint_value=20.0,
    )
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim:
        assert sim.port is not None
        config = make_config(site, mqtt_broker, db, sim.port, interlocks=[lock])
        async with (
            Daemon(config) as daemon,
            LabClient(
                mqtt_broker.url, site=site, session=issue_session(db, "erin", site=site)
            ) as lab,
            lab.alarm_events() as alarm_events,
        ):
            await daemon.slots["printer"].wait_ready()
            await lab.write("printer", "bed_temperature_setpoint", 55.0)
            raised = await anext(alarm_events)
            assert (raised.event, raised.name) == ("raised", "bed-too-warm")
            await sim.wait_until(lambda s: "M140 S20.0" in s.executed)
            cleared = await anext(alarm_events)  # the bed cools below the threshold again
            assert (cleared.event, cleared.alarm_id) == ("cleared", raised.alarm_id)

            await lab.estop("printer", reason="test of the stop button")
            # the reply comes once M112 is written; the firmware reads it a moment later
            await sim.wait_until(lambda s: s.state.halted)
            assert daemon.slots["printer"].state == "fault"
    with SqliteDatabase(db, readonly=True) as store:
        records = store.audit_records()
    writes = [(r.actor, r.new) for r in records if r.action == "setpoint.write"]
    assert writes == [("erin", "55.0"), ("interlock:bed-too-warm", "20.0")]
    estop = next(r for r in records if r.action == "device.estop")
    assert (estop.actor, estop.reason) == ("erin", "test of the stop button")

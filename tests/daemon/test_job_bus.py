"""The bus neither loses nor confuses a job or a device state (issue #13, items 6–9).

Against a real Mosquitto: a recovered job's state continues its ``seq``; a retained state of
another store's job with the same id is not taken for the new job's; the daemon republishes
its retained states to a broker that came back empty; and a client reports every device
``unknown`` while the daemon is offline.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from labdevices.bus import BusClient
from labdevices.client import DeviceState, JobEvent, JobInfo, LabClient
from labdevices.daemon import Daemon
from labdevices.devices.gcode import load_gcode
from labdevices.sim.printer import SimPrinterConfig, SimulatedPrinter
from labdevices.store import JobState, SqliteDatabase
from labdevices.testing._auth import TEST_PASSWORD, add_test_user, issue_session
from labdevices.testing._mqtt import MosquittoBroker

from ..bus.conftest import CuttableLink
from .conftest import deadline, long_job, make_config

SHORT_JOB = "G28\nG1 X10 Y10 F600\nG1 X20 Y10 F600\n"


async def test_a_job_recovered_at_start_continues_its_seq_and_a_follower_sees_it_end(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    gcode = long_job(50)
    # What a daemon killed mid-job leaves behind: the job running at line 10.
    with SqliteDatabase(db) as store:
        job = store.create_job(
            "printer",
            actor="alice",
            gcode=gcode,
            gcode_sha256=hashlib.sha256(gcode.encode()).hexdigest(),
            lines_total=len(load_gcode(gcode)),
            profile="marlin-pneumatic",
        )
        store.transition_job(job.id, JobState.RUNNING, actor="daemon")
        store.record_progress(job.id, 10)
        before = len(store.get_job(job.id).events) + 10
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim:
        assert sim.port is not None
        async with (
            Daemon(make_config(site, mqtt_broker, db, sim.port)) as daemon,
            LabClient(
                mqtt_broker.url, site=site, session=issue_session(db, "alice", site=site)
            ) as lab,
            deadline(30),
        ):
            assert daemon.recovered == [job.id]
            events: list[JobEvent] = []
            async with contextlib.aclosing(lab.follow(job.id)) as stream:
                async for event in stream:
                    events.append(event)
    assert [(e.kind, e.state) for e in events] == [("state", "interrupted")]
    # Above anything the killed run can have published (one per stored event or line).
    assert events[0].seq > before
    assert events[0].store_id == daemon.store_id is not None


async def test_a_follower_across_a_restart_sees_every_state_of_a_held_job_released_later(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    add_test_user(db, "sam", ["supervisor"], password=TEST_PASSWORD)
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim:
        assert sim.port is not None
        config = make_config(site, mqtt_broker, db, sim.port)
        devices = dict(config.config.devices)  # GMP mode: jobs wait, held, for a release
        devices["printer"] = devices["printer"].model_copy(update={"require_release": True})
        config.config = config.config.model_copy(update={"devices": devices})
        async with (
            LabClient(
                mqtt_broker.url, site=site, session=issue_session(db, "olivia", site=site)
            ) as olivia,
            LabClient(
                mqtt_broker.url, site=site, session=issue_session(db, "sam", site=site)
            ) as sam,
            deadline(60),
        ):
            async with Daemon(config):
                held = await olivia.submit(printer="printer", gcode=SHORT_JOB)
                follower = olivia.follow(held.job_id)
                seen = [await anext(follower)]
            async with contextlib.aclosing(follower), Daemon(config):
                await sam.sign(held.job_id, meaning="released", password=TEST_PASSWORD)
                seen += [event async for event in follower]
    assert [e.state for e in seen if e.kind == "state"] == [
        "held",
        "queued",
        "running",
        "completed",
    ]
    assert [e.seq for e in seen] == sorted({e.seq for e in seen})


async def _run(lab: LabClient, **args: Any) -> tuple[JobInfo, list[JobEvent]]:
    info: JobInfo | None = None
    events: list[JobEvent] = []
    async with contextlib.aclosing(lab.run(**args)) as stream:
        async for item in stream:
            if isinstance(item, JobInfo):
                info = item
            else:
                events.append(item)
    assert info is not None
    return info, events


async def test_a_retained_state_of_an_old_stores_job_is_not_taken_for_the_new_job_of_that_id(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    old_db, new_db = tmp_path / "old.db", tmp_path / "new.db"
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.02)) as sim:
        assert sim.port is not None
        # The old store's job 1 is cancelled: its state stays retained on jobs/1/state.
        async with (
            Daemon(make_config(site, mqtt_broker, old_db, sim.port)) as old,
            LabClient(
                mqtt_broker.url, site=site, session=issue_session(old_db, "alice", site=site)
            ) as lab,
            deadline(60),
            contextlib.aclosing(lab.run(printer="printer", gcode=long_job())) as stream,
        ):
            asked = False
            async for item in stream:
                if isinstance(item, JobInfo):
                    first = item
                elif item.kind == "progress" and not asked:
                    asked = True
                    await lab.cancel("printer", reason="test")
                elif item.state == "cancelled":
                    cancelled = item
        assert first.job_id == 1 and cancelled.store_id == old.store_id
        # A new store: its first job has the same id.
        async with (
            BusClient(mqtt_broker.host, mqtt_broker.port, site=site) as watcher,
            watcher.subscribe(watcher.topics.job_state("1")) as watched,
        ):
            retained = await watched.get()
            assert retained.retain and retained.json()["state"] == "cancelled"
            async with (
                Daemon(make_config(site, mqtt_broker, new_db, sim.port)) as new,
                LabClient(
                    mqtt_broker.url, site=site, session=issue_session(new_db, "alice", site=site)
                ) as lab,
                deadline(60),
            ):
                assert new.store_id is not None and new.store_id != old.store_id
                # The new daemon clears the old store's retained state ...
                assert (await watched.get()).payload == b""
                # ... and one that lands afterwards (say, from the old daemon's queue) is
                # not taken for the new job 1 by the client.
                stale = {**retained.json(), "seq": 99}
                await watcher.publish(watcher.topics.job_state("1"), stale, retain=True)
                info, events = await _run(lab, printer="printer", gcode=SHORT_JOB)
                assert info.job_id == 1 and info.store_id == new.store_id
                followed = [e async for e in lab.follow(info.job_id)]
    assert [e.state for e in events if e.kind == "state"][-2:] == ["running", "completed"]
    assert {e.store_id for e in events} == {new.store_id}
    assert [(e.state, e.store_id) for e in followed] == [("completed", new.store_id)]


async def test_device_states_come_back_after_the_broker_restarts_without_retained_messages(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.02)) as sim:
        assert sim.port is not None
        async with Daemon(make_config(site, mqtt_broker, db, sim.port)) as daemon, deadline(60):
            await daemon.slots["printer"].wait_ready()
            await daemon.bus.flush(30)
            mqtt_broker.kill()
            (mqtt_broker.workdir / "mosquitto.db").unlink(missing_ok=True)
            await daemon.bus.wait_disconnected()
            mqtt_broker.start()
            await daemon.bus.wait_connected(30)
            async with (
                BusClient(mqtt_broker.host, mqtt_broker.port, site=site) as late,
                late.subscribe(late.topics.state("printer")) as states,
            ):
                state = (await states.get()).json()
            assert (state["device"], state["state"]) == ("printer", "idle")


async def test_a_client_shows_every_device_unknown_while_the_daemon_is_offline(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    async with (
        SimulatedPrinter(config=SimPrinterConfig(time_scale=0.02)) as sim,
        CuttableLink(mqtt_broker.host, mqtt_broker.port) as link,
    ):
        assert sim.port is not None
        # The daemon reaches the broker through a link that can be cut, so its will fires.
        via_link = SimpleNamespace(url=f"mqtt://{link.host}:{link.port}")
        config = make_config(site, via_link, db, sim.port)  # type: ignore[arg-type]
        async with (
            Daemon(config, heartbeat_s=0.05),
            LabClient(
                mqtt_broker.url, site=site, session=issue_session(db, "alice", site=site)
            ) as lab,
            lab.device_states() as states,
            deadline(60),
        ):
            seen: list[DeviceState] = []

            async def until(want: str) -> DeviceState:
                async for state in states:
                    seen.append(state)
                    if state.state == want:
                        return state
                raise AssertionError("the states ended")

            async with lab.bus.subscribe(lab.topics.daemon_status()) as statuses:
                await until("idle")
                # A heartbeat after the connect reaches the client before the link is cut.
                while not (beat := (await statuses.get()).json())["t"] > beat["connected_at"]:
                    pass
                link.cut()
                unknown = await until("unknown")
            assert unknown.device == "printer" and not unknown.daemon_online
            # Unknown since the daemon's last heartbeat, not since it connected.
            assert unknown.since is not None and unknown.since >= beat["t"] > beat["connected_at"]
            link.restore()
            back = await until("idle")
            assert back.daemon_online and back.since is None

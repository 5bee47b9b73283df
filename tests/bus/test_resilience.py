"""The bus when things go wrong: broker restarts, cut connections, an absent broker, a closed client."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from typing import Any

import pytest
from pydantic import JsonValue

from labdevices.bus import BusClient, Request, TelemetryPublisher
from labdevices.devices import Sample
from labdevices.errors import DeviceConnectionError
from labdevices.testing._mqtt import MosquittoBroker

from .conftest import CuttableLink


async def test_broker_restart_mid_stream_loses_no_reply_and_no_job_event(
    make_bus: Any, mqtt_broker: MosquittoBroker
) -> None:
    server = await make_bus("server")
    client = await make_bus("client")
    observer = await make_bus("observer")
    n, held = 120, range(40, 60)
    runs: Counter[int] = Counter()
    broker_down = asyncio.Event()
    first_half_in = asyncio.Event()

    async def work(request: Request, topic: str) -> JsonValue:
        i = request.args["i"]
        assert isinstance(i, int)
        runs[i] += 1
        if len(runs) == 60:
            first_half_in.set()
        if i in held:  # these answer while the broker is down
            await broker_down.wait()
        server.post(server.topics.job_progress("j1"), {"seq": i})
        return i

    await server.serve(server.topics.commands("p1"), work)
    topic = client.topics.command("p1", "step")
    async with observer.subscribe(observer.topics.job_progress("j1")) as events:
        calls = [
            asyncio.create_task(client.request(topic, {"i": i}, timeout=30)) for i in range(60)
        ]
        await first_half_in.wait()
        await asyncio.to_thread(mqtt_broker.stop)
        await server.wait_disconnected()
        await client.wait_disconnected()
        calls += [
            asyncio.create_task(client.request(topic, {"i": i}, timeout=30)) for i in range(60, n)
        ]
        broker_down.set()
        await asyncio.to_thread(mqtt_broker.start)
        assert await asyncio.gather(*calls) == list(range(n))
        seen: Counter[int] = Counter()
        async with asyncio.timeout(30):
            while len(seen) < n:
                seen[(await events.get()).json()["seq"]] += 1
    assert sorted(seen) == list(range(n))
    assert set(runs.values()) == {1}, "a redelivered request ran twice"
    assert client.stats.connects >= 2
    assert server.stats.connects >= 2
    assert client.stats.queued_high_water >= n - 60
    assert server.stats.queued == client.stats.queued == 0


async def test_last_will_marks_the_daemon_offline_when_its_connection_dies(
    make_bus: Any, link: CuttableLink, site: str
) -> None:
    observer = await make_bus("observer")
    status = observer.topics.daemon_status("room-a")
    daemon = BusClient(
        link.host,
        link.port,
        site=site,
        client_id="daemon",
        status_topic=status,
        reconnect_min_s=0.02,
    )
    async with observer.subscribe(status) as statuses:
        async with daemon:
            await daemon.wait_connected(10)
            assert (await statuses.get()).json()["online"] is True
            link.cut()
            will = await statuses.get()
            assert will.json()["online"] is False
            assert will.json()["client_id"] == "daemon"
            link.restore()
            assert (await statuses.get()).json()["online"] is True
        # A clean close sends no will, so the client says it is offline itself.
        goodbye = await statuses.get()
    assert goodbye.json()["online"] is False
    assert daemon.stats.connection_losses == 1
    async with observer.subscribe(status) as late:
        retained = await late.get()
    assert retained.retain
    assert retained.json()["online"] is False


async def test_retained_state_reaches_later_subscribers(make_bus: Any) -> None:
    daemon = await make_bus("daemon")
    await daemon.publish(daemon.topics.state("p1"), {"state": "busy", "job": "j1"}, retain=True)
    await daemon.publish(daemon.topics.state("p2"), {"state": "idle"}, retain=True)
    late = await make_bus("late")
    async with late.subscribe(late.topics.all_states()) as states:
        got = {m.topic: (m.json(), m.retain) for m in [await states.get(), await states.get()]}
    assert got == {
        late.topics.state("p1"): ({"state": "busy", "job": "j1"}, True),
        late.topics.state("p2"): ({"state": "idle"}, True),
    }


async def test_telemetry_batches_counts_drops_while_the_broker_is_down_and_catches_up(
    make_bus: Any, mqtt_broker: MosquittoBroker
) -> None:
    daemon = await make_bus("daemon")
    watcher = await make_bus("watcher")
    received: dict[str, list[float]] = {"p1": [], "p2": []}
    last_batch: dict[str, Any] = {}
    publisher = TelemetryPublisher(daemon, max_samples=100, max_batch=50, linger_s=0)

    async def collect(count: int) -> None:
        async with asyncio.timeout(20):
            while sum(map(len, received.values())) < count:
                batch = (await batches.get()).json()
                received[batch["device"]] += [s["value"] for s in batch["samples"]]
                last_batch[batch["device"]] = batch

    async with watcher.subscribe(watcher.topics.all_telemetry()) as batches, publisher:
        for i in range(20):
            publisher.add(Sample("p1", "temperature", float(i), "degC"))
            publisher.add(Sample("p2", "pressure", float(i), "kPa"))
        await collect(40)
        # the watcher may see a batch before the broker's PUBACK reaches the publisher
        await publisher.flush(20)
        assert publisher.stats.batches == 2, "samples added at once go as one batch per device"

        await asyncio.to_thread(mqtt_broker.stop)
        await daemon.wait_disconnected()
        for i in range(20, 270):
            publisher.add(Sample("p1", "temperature", float(i), "degC"))  # never blocks
        assert publisher.stats.dropped == 150
        assert publisher.stats.dropped_by_device == {"p1": 150}
        assert publisher.buffered == 100

        await asyncio.to_thread(mqtt_broker.start)
        await publisher.flush(20)
        await collect(140)
    assert received["p1"] == [float(i) for i in [*range(20), *range(170, 270)]]
    assert received["p2"] == [float(i) for i in range(20)]
    assert last_batch["p1"]["dropped"] == 150
    assert last_batch["p1"]["samples"][-1]["unit"] == "degC"
    assert publisher.stats.published == 140
    assert publisher.stats.batches == 4, "the 100 kept samples catch up in batches of 50"


async def test_a_client_entered_without_a_broker_waits_then_delivers(
    mqtt_broker: MosquittoBroker, make_bus: Any, site: str
) -> None:
    watcher = await make_bus("watcher")
    async with watcher.subscribe(watcher.topics.alarm("p1")) as alarms:
        await asyncio.to_thread(mqtt_broker.stop)
        async with BusClient(
            mqtt_broker.host,
            mqtt_broker.port,
            site=site,
            client_id="late",
            reconnect_min_s=0.02,
            reconnect_max_s=0.1,
        ) as bus:
            with pytest.raises(
                DeviceConnectionError,
                match=re.escape(f"{mqtt_broker.url} within 0.05 s: ") + ".*refused",
            ):
                await bus.wait_connected(0.05)
            sent = bus.post(bus.topics.alarm("p1"), {"alarm": "door_open", "raised": True})
            assert bus.stats.queued == 1
            await asyncio.to_thread(mqtt_broker.start)
            await sent
        alarm = await alarms.get()
    assert alarm.json() == {"alarm": "door_open", "raised": True}


async def test_lifecycle_no_reentry_exit_twice_no_publish_after_close(site: str) -> None:
    bus = BusClient("127.0.0.1", 1, site=site)
    async with bus:
        with pytest.raises(RuntimeError, match="twice"):
            await bus.__aenter__()
    await bus.__aexit__(None, None, None)
    with pytest.raises(DeviceConnectionError, match="closed"):
        bus.post(bus.topics.state("p1"), {})


def _wipe(broker: MosquittoBroker) -> None:
    """Kill the broker and start it with nothing: no retained message, no session survives."""
    broker.kill()
    (broker.workdir / "mosquitto.db").unlink(missing_ok=True)
    broker.start()


async def test_retained_messages_are_published_again_when_the_broker_comes_back_empty(
    make_bus: Any, mqtt_broker: MosquittoBroker
) -> None:
    daemon = await make_bus("daemon")
    state, cleared = daemon.topics.state("p1"), daemon.topics.state("p2")
    await daemon.publish(state, {"state": "idle", "n": 1}, retain=True)
    await daemon.publish(state, {"state": "busy", "n": 2}, retain=True)
    await daemon.publish(cleared, {"state": "idle"}, retain=True)
    await daemon.publish(cleared, b"", retain=True)  # cleared: not to come back
    await daemon.publish(daemon.topics.telemetry("p1"), {"not": "retained"})
    await asyncio.to_thread(_wipe, mqtt_broker)
    await daemon.wait_disconnected()
    await daemon.wait_connected(30)
    await daemon.flush(30)
    late = await make_bus("late")
    async with late.subscribe(late.topics.all_states()) as states:
        got = await asyncio.wait_for(states.get(), 30)
        # A marker published after the subscription: anything retained came before it.
        await daemon.publish(late.topics.state("marker"), {"state": "marker"}, retain=True)
        rest = []
        while (m := await asyncio.wait_for(states.get(), 30)).topic != late.topics.state("marker"):
            rest.append(m)
    assert (got.topic, got.json(), got.retain) == (state, {"state": "busy", "n": 2}, True)
    assert rest == []
    assert daemon.stats.retained_republished >= 1


async def test_only_the_newest_retained_topics_are_remembered_for_a_reconnect(
    make_bus: Any, mqtt_broker: MosquittoBroker
) -> None:
    # A daemon that ran many jobs must not keep (and republish) every job state forever.
    daemon = await make_bus("daemon", retained_limit=3)
    topics = [daemon.topics.job_state(str(i)) for i in range(1, 6)]
    for topic in topics:
        await daemon.publish(topic, {"state": "completed"}, retain=True)
    await daemon.publish(topics[0], {"state": "completed", "again": True}, retain=True)
    await asyncio.to_thread(_wipe, mqtt_broker)
    await daemon.wait_disconnected()
    await daemon.wait_connected(30)
    await daemon.flush(30)
    late = await make_bus("late")
    marker = late.topics.job_state("marker")
    async with late.subscribe(f"{late.topics.root}/jobs/+/state") as states:
        await daemon.publish(marker, {"state": "marker"}, retain=True)
        seen = []
        while (m := await asyncio.wait_for(states.get(), 30)).topic != marker:
            seen.append(m.topic)
    assert sorted(seen) == sorted([topics[3], topics[4], topics[0]])


async def test_heartbeats_say_when_the_client_was_last_alive_and_the_will_claims_no_time(
    make_bus: Any, link: CuttableLink, site: str
) -> None:
    observer = await make_bus("observer")
    status = observer.topics.daemon_status("room-a")
    daemon = BusClient(
        link.host,
        link.port,
        site=site,
        client_id="daemon",
        status_topic=status,
        status_extra={"store_id": "s1"},
        heartbeat_s=0.05,
        reconnect_min_s=0.02,
    )
    async with observer.subscribe(status) as statuses, daemon:
        await daemon.wait_connected(10)
        first = (await statuses.get()).json()
        beats = [(await statuses.get()).json() for _ in range(3)]
        link.cut()
        while (will := (await statuses.get()).json())["online"]:
            beats.append(will)
        link.restore()
        again = (await statuses.get()).json()
    connected_at = first["connected_at"]
    assert first["online"] is True and first["store_id"] == "s1"
    assert first["t"] >= connected_at
    assert all(b["online"] and b["connected_at"] == connected_at for b in beats)
    times = [first["t"], *(b["t"] for b in beats)]
    assert times == sorted(times) and times[-1] > connected_at
    # The will was made at connect time: it names that connection, not a time it went offline.
    assert will == {
        "online": False,
        "client_id": "daemon",
        "connected_at": connected_at,
        "t": None,
        "store_id": "s1",
        "instance": first["instance"],
    }
    # The same client object on a new connection: same instance, new connected_at.
    assert again["online"] is True and again["connected_at"] > times[-1]
    assert again["instance"] == first["instance"]
    # counted once the broker acknowledged them: the last beat seen may lose its ack in the cut
    assert daemon.stats.heartbeats >= 2

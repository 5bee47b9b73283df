"""Bridged brokers: a client fails over to the standby when its broker dies, and loses nothing it was acknowledged."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

from pydantic import JsonValue

from labdevices.bus import BusClient, Request, Topics
from labdevices.testing._mqtt import BridgedBrokers, MosquittoBroker

from .conftest import CuttableLink


def bus_on(
    broker: MosquittoBroker | CuttableLink,
    site: str,
    *standby: MosquittoBroker | CuttableLink,
    **options: Any,
) -> BusClient:
    """A persistent client of ``broker`` (or a link to one) that fails over to ``standby``."""
    options.setdefault("client_id", f"c-{uuid.uuid4().hex[:8]}")
    return BusClient(
        broker.host,
        broker.port,
        failover=[(b.host, b.port) for b in standby],
        site=site,
        reconnect_min_s=0.02,
        reconnect_max_s=0.2,
        **options,
    )


async def test_a_server_fails_over_to_the_standby_and_loses_no_reply_or_retained_state(
    bridged_brokers: BridgedBrokers, site: str
) -> None:
    primary, standby = bridged_brokers.primary, bridged_brokers.standby
    runs: Counter[int] = Counter()
    primary_dead = asyncio.Event()
    n, held = 60, range(20, 40)
    twenty_in = asyncio.Event()
    last = [-1]  # the newest retained state the server posted

    async with (
        bus_on(primary, site, standby, client_id="server") as server,
        bus_on(standby, site) as client,
    ):
        state_topic = server.topics.state("p1")

        async def work(request: Request, topic: str) -> JsonValue:
            i = request.args["i"]
            assert isinstance(i, int)
            runs[i] += 1
            last[0] = i
            if len(runs) == len(held):
                twenty_in.set()
            if i in held:  # answered after the primary died: the reply goes out on the standby
                await primary_dead.wait()
            server.post(state_topic, {"i": i}, retain=True)
            return i

        await server.serve(server.topics.commands("p1"), work)
        await server.wait_connected(10)
        await client.wait_connected(10)
        assert server.broker == primary.url
        topic = client.topics.command("p1", "step")
        # Requests from a client on the standby reach the server on the primary over the bridge.
        calls = [asyncio.create_task(client.request(topic, {"i": i}, timeout=30)) for i in held]
        await twenty_in.wait()
        await asyncio.to_thread(primary.kill)
        await server.wait_disconnected()
        await server.wait_connected(10)
        assert server.broker == standby.url
        primary_dead.set()
        calls += [
            asyncio.create_task(client.request(topic, {"i": i}, timeout=30)) for i in range(40, n)
        ]
        assert await asyncio.gather(*calls) == [*held, *range(40, n)]
        await server.flush(10)
        assert set(runs.values()) == {1}, "a request ran twice"
        assert server.stats.failovers == 1
        # The newest retained state is on the standby, though it was last set while the
        # primary lived or died: the server published its retained messages again there.
        async with bus_on(standby, site) as late, late.subscribe(state_topic) as states:
            assert (await states.get()).json() == {"i": last[0]}


async def test_a_requester_that_fails_over_sends_its_unanswered_requests_again(
    bridged_brokers: BridgedBrokers, site: str
) -> None:
    primary, standby = bridged_brokers.primary, bridged_brokers.standby
    runs: Counter[str] = Counter()
    started, go = asyncio.Event(), asyncio.Event()
    async with (
        # The client reaches the standby through a link held shut until the reply is lost.
        CuttableLink(standby.host, standby.port) as link,
        bus_on(standby, site, client_id="server") as server,
        bus_on(primary, site, link) as client,
    ):

        async def work(request: Request, topic: str) -> JsonValue:
            runs[request.id] += 1
            started.set()
            await go.wait()
            return "done"

        await server.serve(server.topics.commands("p1"), work)
        await server.wait_connected(10)
        await client.wait_connected(10)
        call = asyncio.create_task(client.request(client.topics.command("p1", "slow"), timeout=30))
        async with asyncio.timeout(20):
            await started.wait()
        link.cut()
        await asyncio.to_thread(primary.kill)
        await client.wait_disconnected()
        # The reply goes out on the standby while the client has no session there: lost.
        go.set()
        await server.flush(10)
        assert not call.done()
        # Connected to the standby, the client asks again, same id; the server answers the
        # copy from its cache without running the request again.
        link.restore()
        await client.wait_connected(10)
        assert client.broker == f"mqtt://{link.host}:{link.port}"
        assert await call == "done"
        assert client.stats.requests_resent == 1
        assert server.stats.duplicate_requests == 1
        assert list(runs.values()) == [1]


async def test_a_request_lost_with_the_responders_broker_is_sent_again_when_it_reconnects(
    bridged_brokers: BridgedBrokers, site: str
) -> None:
    primary, standby = bridged_brokers.primary, bridged_brokers.standby
    runs: Counter[str] = Counter()
    status = Topics(site).daemon_status("d1")
    async with (
        CuttableLink(primary.host, primary.port) as to_primary,
        CuttableLink(standby.host, standby.port) as to_standby,
        # (an attempt through a link that refuses can wait close_timeout_s for its CONNACK)
        bus_on(to_primary, site, to_standby, status_topic=status, close_timeout_s=1.0) as server,
        # The client stays on the standby all along: only the responder's status tells it.
        bus_on(standby, site, responder_status=Topics(site).daemon_status()) as client,
        client.subscribe(Topics(site).daemon_status()) as statuses,
    ):

        async def work(request: Request, topic: str) -> JsonValue:
            runs[request.id] += 1
            return "done"

        await server.serve(server.topics.commands("p1"), work)
        await server.wait_connected(10)
        while not (await statuses.get()).json()["online"]:
            pass
        # The server loses its broker; the request goes to the standby, over the bridge to
        # the primary, which dies with it (or before it).
        to_primary.cut()
        to_standby.cut()
        await server.wait_disconnected()
        call = asyncio.create_task(client.request(client.topics.command("p1", "x"), timeout=30))
        await client.flush(10)
        await asyncio.to_thread(primary.kill)
        assert not runs
        # Back on the standby, the server says it is online on a new connection: the client
        # sends the request again, and it runs once.
        to_standby.restore()
        assert await call == "done"
        assert client.stats.requests_resent == 1
        assert list(runs.values()) == [1]

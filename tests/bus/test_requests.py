"""Request/response over a real Mosquitto: correlation, concurrency, deadlines, bad input, errors."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest
from pydantic import JsonValue

from labdevices.bus import (
    BusClient,
    DeadlineExceeded,
    InternalError,
    MalformedRequest,
    Request,
    UnknownCommand,
    route_commands,
    start_embedded_broker,
)
from labdevices.errors import DeviceTimeoutError, LimitViolation
from labdevices.testing._mqtt import MosquittoBroker


async def echo(request: Request, topic: str) -> JsonValue:
    return {"args": request.args, "actor": request.actor, "topic": topic}


async def test_round_trip_carries_reply_topic_and_correlation_id_in_the_payload(
    make_bus: Any,
) -> None:
    server = await make_bus("server")
    client = await make_bus("client")
    observer = await make_bus("observer")
    await server.serve(server.topics.commands("p1"), echo)
    topic = client.topics.command("p1", "ping")
    async with (
        observer.subscribe(topic) as requests,
        observer.subscribe(client.reply_topic) as replies,
    ):
        result = await client.request(topic, {"x": 1}, timeout=5, actor="alice")
        request = (await requests.get()).json()
        reply = (await replies.get()).json()
    assert result == {"args": {"x": 1}, "actor": "alice", "topic": topic}
    assert request["reply_to"] == client.reply_topic
    assert request["actor"] == "alice"
    assert request["deadline"] > time.time()
    assert reply == {"id": request["id"], "ok": True, "result": result}


async def test_concurrent_requests_get_their_own_replies(make_bus: Any) -> None:
    server = await make_bus("server")
    client = await make_bus("client")
    n = 40
    arrived: list[int] = []
    gates = {i: asyncio.Event() for i in range(n)}
    all_arrived = asyncio.Event()

    async def slow_square(request: Request, topic: str) -> JsonValue:
        i = request.args["i"]
        assert isinstance(i, int)
        arrived.append(i)
        if len(arrived) == n:
            all_arrived.set()
        await gates[i].wait()
        return i * i

    await server.serve(server.topics.commands("p1"), slow_square)
    topic = client.topics.command("p1", "square")
    calls = [asyncio.create_task(client.request(topic, {"i": i}, timeout=10)) for i in range(n)]
    await all_arrived.wait()
    for i in reversed(range(n)):  # answer in the opposite order
        gates[i].set()
    assert await asyncio.gather(*calls) == [i * i for i in range(n)]
    assert server.stats.requests_served == n


async def test_a_request_past_its_deadline_is_refused_not_run(make_bus: Any) -> None:
    server = await make_bus("server")
    client = await make_bus("client")
    runs = 0

    async def count(request: Request, topic: str) -> JsonValue:
        nonlocal runs
        runs += 1
        return runs

    await server.serve(server.topics.commands("p1"), count)
    topic = client.topics.command("p1", "go")
    with pytest.raises(DeadlineExceeded, match="not executed") as info:
        await client.request(topic, timeout=5, deadline=time.time() - 1)
    assert info.value.code == "deadline_exceeded"
    assert info.value.device == "p1"
    assert runs == 0
    assert server.stats.deadline_refused == 1
    assert await client.request(topic, timeout=5) == 1


async def test_a_request_that_waited_out_its_deadline_for_an_absent_responder_is_not_run(
    make_bus: Any, mqtt_broker: MosquittoBroker, site: str
) -> None:
    runs = 0

    async def count(request: Request, topic: str) -> JsonValue:
        nonlocal runs
        runs += 1
        return runs

    # The responder's persistent session exists, but the responder is away.
    first = await make_bus("server")
    await first.serve(first.topics.commands("p1"), count)
    await first.__aexit__(None, None, None)
    client = await make_bus("client")
    observer = await make_bus("observer")
    topic = client.topics.command("p1", "go")
    async with observer.subscribe(client.reply_topic) as replies:
        with pytest.raises(DeviceTimeoutError, match="no reply"):
            await client.request(topic, timeout=0.2)
        # It comes back and finds the stale request waiting in its session.
        again = BusClient(mqtt_broker.host, mqtt_broker.port, site=site, client_id=first.client_id)
        # Serving before entering: what waits in the session is handled, not unrouted.
        await again.serve(again.topics.commands("p1"), count)
        async with again:
            reply = (await replies.get()).json()
    assert reply["ok"] is False
    assert reply["error"]["code"] == "deadline_exceeded"
    assert runs == 0
    assert again.stats.deadline_refused == 1


async def test_malformed_requests_get_structured_errors_or_are_counted(
    make_bus: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = await make_bus("server")
    client = await make_bus("client")
    await server.serve(server.topics.commands("p1"), echo)
    topic = client.topics.command("p1", "ping")
    inbox = client.topics.reply_inbox("raw")
    async with client.subscribe(inbox) as replies:
        await client.publish(topic, b"\x00 not json")
        await client.publish(topic, [1, 2, 3])
        await client.publish(topic, {"id": "m1", "reply_to": "elsewhere/inbox", "actor": "x"})
        await client.publish(topic, {"id": "m2", "reply_to": inbox, "args": "nope", "extra": 1})
        reply = (await replies.get()).json()
        # The server survived all of it and still answers.
        assert (await client.request(topic, {"ok": 1}, timeout=5))["args"] == {"ok": 1}  # type: ignore[index, call-overload]
    assert reply["id"] == "m2"
    assert reply["ok"] is False
    assert reply["error"]["code"] == MalformedRequest.code
    for field in ("args", "extra", topic):
        assert field in reply["error"]["message"]
    assert server.stats.malformed_replied == 1
    assert server.stats.malformed_dropped == 3
    # the three unanswerable ones came from one sender: logged once, counted thrice
    dropped = [
        r
        for r in caplog.records
        if "dropped a malformed request" in r.getMessage() and r.levelno == logging.WARNING
    ]
    assert len(dropped) == 1, [r.getMessage() for r in dropped]


async def test_unknown_command_and_handler_errors_are_structured(make_bus: Any) -> None:
    server = await make_bus("server")
    client = await make_bus("client")

    async def set_temperature(request: Request, topic: str) -> JsonValue:
        raise LimitViolation("300 °C is above the limit of 250 °C", device="p1", signal="t")

    async def crash(request: Request, topic: str) -> JsonValue:
        raise RuntimeError("bug")

    await server.serve(
        server.topics.commands("p1"),
        route_commands({"set_temperature": set_temperature, "crash": crash, "ping": echo}),
    )
    with pytest.raises(UnknownCommand, match=r"'fly'.*known: crash, ping, set_temperature") as info:
        await client.request(client.topics.command("p1", "fly"), timeout=5)
    assert info.value.device == "p1"
    with pytest.raises(LimitViolation, match="above the limit") as limit:
        await client.request(
            client.topics.command("p1", "set_temperature"), {"value": 300}, timeout=5
        )
    assert limit.value.device == "p1"
    with pytest.raises(InternalError, match="RuntimeError: bug"):
        await client.request(client.topics.command("p1", "crash"), timeout=5)


async def test_no_responder_times_out_naming_the_device(make_bus: Any) -> None:
    client = await make_bus("client")
    with pytest.raises(
        DeviceTimeoutError, match=r"no reply to .*/p9/cmd/ping within 0\.2 s"
    ) as info:
        await client.request(client.topics.command("p9", "ping"), timeout=0.2)
    assert info.value.device == "p9"


async def test_works_on_mqtt_5_too(make_bus: Any) -> None:
    server = await make_bus("server", protocol="5")
    client = await make_bus("client", protocol="5")
    await server.serve(server.topics.commands("p1"), echo)
    result = await client.request(client.topics.command("p1", "ping"), {"v": 5}, timeout=5)
    assert result["args"] == {"v": 5}  # type: ignore[index, call-overload]


async def test_round_trip_and_retained_state_on_the_embedded_broker() -> None:
    async with start_embedded_broker() as broker:
        assert broker.port > 0
        async with (
            BusClient(broker.host, broker.port, site="lab1", client_id="server") as server,
            BusClient(broker.host, broker.port, site="lab1") as client,
        ):
            await server.wait_connected(5)
            await client.wait_connected(5)
            await server.serve(server.topics.commands("p1"), echo)
            result = await client.request(client.topics.command("p1", "ping"), {"x": 2}, timeout=5)
            assert result["args"] == {"x": 2}  # type: ignore[index, call-overload]
            await server.publish(server.topics.state("p1"), {"state": "idle"}, retain=True)
            async with client.subscribe(client.topics.all_states()) as states:
                state = await states.get()
    assert (state.topic, json.loads(state.payload), state.retain) == (
        "labdevices/lab1/p1/state",
        {"state": "idle"},
        True,
    )


async def test_a_redelivered_request_is_answered_again_but_not_run_again(make_bus: Any) -> None:
    server = await make_bus("server")
    client = await make_bus("client")
    runs = 0

    async def count(request: Request, topic: str) -> JsonValue:
        nonlocal runs
        runs += 1
        return runs

    await server.serve(server.topics.commands("p1"), count)
    inbox = client.topics.reply_inbox("raw")
    envelope = {"id": "dup-1", "reply_to": inbox, "actor": "alice", "args": {}}
    async with client.subscribe(inbox) as replies:
        await client.publish(client.topics.command("p1", "go"), envelope)
        first = (await replies.get()).json()
        await client.publish(client.topics.command("p1", "go"), envelope)
        second = (await replies.get()).json()
    assert first == second == {"id": "dup-1", "ok": True, "result": 1}
    assert runs == 1
    assert server.stats.duplicate_requests == 1


async def test_the_embedded_broker_stops_cleanly_under_connected_clients(site: str) -> None:
    async with start_embedded_broker() as broker:
        bus = BusClient(
            broker.host, broker.port, site=site, client_id="stays", reconnect_min_s=0.02
        )
        await bus.__aenter__()
        await bus.wait_connected(5)
    await bus.wait_disconnected()
    assert bus.stats.connection_losses == 1
    await bus.__aexit__(None, None, None)

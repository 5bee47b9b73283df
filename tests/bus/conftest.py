"""Fixtures of the bus tests: a real Mosquitto, and bus clients connected to it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from labdevices.bus import BusClient
from labdevices.testing._mqtt import MosquittoBroker

__all__ = ["link", "make_bus", "site"]


@pytest.fixture
def site() -> str:
    """A site of its own per test, so retained messages of other tests stay out of its topics."""
    return f"lab-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def make_bus(mqtt_broker: MosquittoBroker, site: str) -> AsyncIterator[Callable[..., Any]]:
    """``await make_bus(name, **options)``: a connected, persistent ``BusClient`` closed after the test."""
    async with AsyncExitStack() as stack:

        async def make(name: str = "c", *, connect: bool = True, **options: Any) -> BusClient:
            options.setdefault("reconnect_min_s", 0.02)
            options.setdefault("reconnect_max_s", 0.2)
            options.setdefault("site", site)
            # A unique id per test: persistent sessions of earlier tests stay out of the way.
            client_id = options.pop("client_id", f"{name}-{uuid.uuid4().hex[:8]}")
            host = options.pop("host", mqtt_broker.host)
            port = options.pop("port", mqtt_broker.port)
            bus = BusClient(host, port, client_id=client_id, **options)
            await stack.enter_async_context(bus)
            if connect:
                await bus.wait_connected(10)
            return bus

        yield make


class CuttableLink:
    """A TCP relay between clients and the broker whose connections can be cut.

    ``cut()`` resets every relayed connection at once and refuses new ones, as a
    pulled cable or a killed process would look to the broker; ``restore()``
    lets connections through again (same port).
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = "127.0.0.1"
        self.port = 0
        self.refusing = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> CuttableLink:
        self._server = await asyncio.start_server(self._relay, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        await self._server.wait_closed()

    def cut(self) -> None:
        self.refusing = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.refusing = False

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self.refusing:
                writer.transport.abort()
                return
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            self._writers |= {writer, up_writer}
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._pipe(reader, up_writer))
                tasks.create_task(self._pipe(up_reader, writer))
        finally:
            self._tasks.discard(task)
            writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.transport.abort()


@pytest.fixture
async def link(mqtt_broker: MosquittoBroker) -> AsyncIterator[CuttableLink]:
    """A cuttable TCP link to the test broker."""
    async with CuttableLink(mqtt_broker.host, mqtt_broker.port) as relay:
        yield relay

"""An embedded MQTT 3.1.1 broker (amqtt) on loopback, for the zero-setup demo when no broker is configured."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ..errors import DeviceConnectionError

__all__ = ["EmbeddedBroker", "start_embedded_broker"]

log = logging.getLogger("labdevices.bus.broker")

_LISTENER = "default"  # amqtt requires a listener of this name


@dataclass(frozen=True)
class EmbeddedBroker:
    """Where the embedded broker listens."""

    host: str
    port: int

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


@contextlib.asynccontextmanager
async def start_embedded_broker(
    host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[EmbeddedBroker]:
    """Run an amqtt broker on ``host``:``port`` (0: a free port the OS picks) while the context is open.

    The listening socket is ours (an amqtt "external" listener), so port 0 works and
    the chosen port is known; anonymous clients are allowed, no $SYS task runs.
    Sessions and retained messages live in memory only.
    """
    from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
    from amqtt.broker import Broker

    broker = Broker(
        {
            "listeners": {
                _LISTENER: {"type": "external", "bind": f"{host}:{port}"},
            },
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )
    connections: set[asyncio.Task[None]] = set()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        try:
            await broker.external_connected(
                StreamReaderAdapter(reader), StreamWriterAdapter(writer), _LISTENER
            )
        finally:
            connections.discard(task)
            writer.close()

    await broker.start()
    try:
        try:
            server = await asyncio.start_server(on_connection, host, port)
        except OSError as exc:
            raise DeviceConnectionError(
                f"embedded MQTT broker cannot listen on {host}:{port}: {exc}"
            ) from exc
        try:
            bound = server.sockets[0].getsockname()
            log.info("embedded MQTT broker on %s:%s", bound[0], bound[1])
            yield EmbeddedBroker(str(bound[0]), int(bound[1]))
        finally:
            server.close()
            await broker.shutdown()
            # Connection handlers end once the broker stopped their sessions; cancel any that did not.
            for task in list(connections):
                task.cancel()
            if connections:
                await asyncio.wait(set(connections))
            await server.wait_closed()
    finally:
        if broker.transitions.state == "started":
            await broker.shutdown()

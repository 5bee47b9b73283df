"""An embedded MQTT 3.1.1 broker (amqtt) on loopback, for the zero-setup demo when no broker is configured."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import DeviceConnectionError

__all__ = ["BrokerAccess", "EmbeddedBroker", "start_embedded_broker"]


class BrokerAccess(Protocol):
    """Who may connect and what they may publish, subscribe to and receive (``auth.BrokerRules``)."""

    def may_publish(self, user: str | None, topic: str) -> bool: ...
    def may_subscribe(self, user: str | None, topic_filter: str) -> bool: ...
    def may_receive(self, user: str | None, topic: str) -> bool: ...


#: user name, password → whether they may connect
Authenticate = Callable[[str | None, str | None], Awaitable[bool]]

# amqtt builds its plugins from dotted paths and plain config: each running broker's
# checks are found here by the id its plugin config carries (see _broker_plugins.py).
GUARDS: dict[str, tuple[Authenticate, BrokerAccess]] = {}


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
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    authenticate: Authenticate | None = None,
    access: BrokerAccess | None = None,
) -> AsyncIterator[EmbeddedBroker]:
    """Run an amqtt broker on ``host``:``port`` (0: a free port the OS picks) while the context is open.

    The listening socket is ours (an amqtt "external" listener), so port 0 works and
    the chosen port is known; no $SYS task runs. Sessions and retained messages live in
    memory only. With ``authenticate`` and ``access`` (the daemon gives both) only
    clients it accepts connect, and each publish, subscription and delivery is checked
    against ``access``; without them anonymous clients may do anything.
    """
    from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
    from amqtt.broker import Broker

    from ._broker_plugins import GuardedBroker

    guard_id = ""
    plugins: dict[str, Any]
    if authenticate is not None and access is not None:
        guard_id = uuid.uuid4().hex
        GUARDS[guard_id] = (authenticate, access)
        plugins = {
            f"{__package__}._broker_plugins.LabAuthPlugin": {"guard": guard_id},
            f"{__package__}._broker_plugins.LabTopicPlugin": {"guard": guard_id},
        }
    else:
        plugins = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
    try:
        broker = (GuardedBroker if guard_id else Broker)(
            {
                "listeners": {
                    _LISTENER: {"type": "external", "bind": f"{host}:{port}"},
                },
                "plugins": plugins,
            }
        )
    except BaseException:
        GUARDS.pop(guard_id, None)
        raise
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
        GUARDS.pop(guard_id, None)
        if broker.transitions.state == "started":
            await broker.shutdown()

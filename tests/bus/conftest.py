"""Fixtures of the bus tests: a real Mosquitto, and bus clients connected to it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from labdevices.bus import BusClient
from labdevices.testing._mqtt import MosquittoBroker, mosquitto_session, mqtt_broker

__all__ = ["mosquitto_session", "mqtt_broker"]

SITE = "lab1"

BusFactory = Callable[..., "AsyncIterator[BusClient]"]


@pytest.fixture
async def make_bus(mqtt_broker: MosquittoBroker) -> AsyncIterator[Callable[..., Any]]:
    """``await make_bus(name, **options)``: a connected, persistent ``BusClient`` closed after the test."""
    async with AsyncExitStack() as stack:

        async def make(name: str = "c", *, connect: bool = True, **options: Any) -> BusClient:
            options.setdefault("reconnect_min_s", 0.02)
            options.setdefault("reconnect_max_s", 0.2)
            options.setdefault("site", SITE)
            # A unique id per test: persistent sessions of earlier tests stay out of the way.
            client_id = options.pop("client_id", f"{name}-{uuid.uuid4().hex[:8]}")
            bus = BusClient(mqtt_broker.host, mqtt_broker.port, client_id=client_id, **options)
            await stack.enter_async_context(bus)
            if connect:
                await bus.wait_connected(10)
            return bus

        yield make

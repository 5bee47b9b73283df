"""Fan-out of live events (samples, device states, alarms) to each open dashboard's stream.

Publishing never waits: each subscriber keeps a bounded list of pending events, oldest dropped
(and counted) when a browser reads too slowly, so one stalled tab cannot slow the daemon.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import JsonValue

from ..devices import Sample

__all__ = ["LiveHub", "LiveSubscriber", "sample_event"]

#: events a subscriber may have pending before the oldest are dropped
MAX_PENDING = 20_000


def sample_event(sample: Sample) -> dict[str, JsonValue]:
    value = sample.value
    if isinstance(value, float) and not math.isfinite(value):
        value = None  # JSON (and so the browser) has no NaN
    return {
        "type": "sample",
        "device": sample.device,
        "signal": sample.signal,
        "value": value,
        "unit": sample.unit,
        "t": sample.t,
        "quality": sample.quality,
    }


class LiveSubscriber:
    """One open stream: ``await next_batch()`` returns what came since, or None once closed."""

    def __init__(self, max_pending: int) -> None:
        self._pending: deque[dict[str, JsonValue]] = deque(maxlen=max_pending)
        self._wake = asyncio.Event()
        self.closed = False
        self.dropped = 0

    def push(self, event: dict[str, JsonValue]) -> None:
        if len(self._pending) == self._pending.maxlen:
            self.dropped += 1
        self._pending.append(event)
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def next_batch(self) -> list[dict[str, JsonValue]] | None:
        while not self._pending and not self.closed:
            self._wake.clear()
            await self._wake.wait()
        if self.closed:
            return None
        batch = list(self._pending)
        self._pending.clear()
        return batch


class LiveHub:
    """Where the daemon's telemetry pipeline and bus feed the dashboards."""

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self._subscribers: set[LiveSubscriber] = set()
        self._max_pending = max_pending
        self.closed = False

    def __len__(self) -> int:
        return len(self._subscribers)

    def on_sample(self, sample: Sample) -> None:
        if self._subscribers:
            self.publish(sample_event(sample))

    def publish(self, event: dict[str, JsonValue]) -> None:
        for subscriber in self._subscribers:
            subscriber.push(event)

    @contextmanager
    def subscribe(self) -> Iterator[LiveSubscriber]:
        subscriber = LiveSubscriber(self._max_pending)
        if self.closed:
            subscriber.close()
        self._subscribers.add(subscriber)
        try:
            yield subscriber
        finally:
            self._subscribers.discard(subscriber)

    def close(self) -> None:
        """End every stream (the server is stopping)."""
        self.closed = True
        for subscriber in self._subscribers:
            subscriber.close()

"""Telemetry to MQTT in batches, without ever blocking the device polling that produces it.

Samples wait in one bounded buffer; when it is full the oldest sample is dropped
and counted, per device, and each batch carries its device's drop count so a
subscriber can tell a gap from a quiet device. Batches are handed to the bus only
while it is connected and one at a time, so the bus queue stays small and the
buffer catches up in ``max_batch`` chunks when the broker returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, Self

from pydantic import JsonValue

from ._client import BusClient

__all__ = ["SampleLike", "TelemetryPublisher", "TelemetryStats"]


class SampleLike(Protocol):
    """What a sample must have (``labdevices.devices.Sample`` has it)."""

    @property
    def device(self) -> str: ...
    @property
    def signal(self) -> str: ...
    @property
    def value(self) -> float | bool | str | None: ...
    @property
    def unit(self) -> str: ...
    @property
    def t(self) -> float: ...


@dataclass
class TelemetryStats:
    accepted: int = 0
    dropped: int = 0
    published: int = 0
    batches: int = 0
    dropped_by_device: Counter[str] = field(default_factory=Counter)


def sample_json(sample: SampleLike) -> JsonValue:
    """One sample as it appears in a batch (device is on the batch)."""
    item: dict[str, JsonValue] = {
        "signal": sample.signal,
        "value": sample.value,
        "unit": sample.unit,
        "t": sample.t,
    }
    quality = getattr(sample, "quality", None)
    if quality is not None and quality != "good":
        item["quality"] = quality
        item["reason"] = getattr(sample, "reason", None)
    return item


class TelemetryPublisher:
    """Batches samples to ``labdevices/{site}/{device}/telemetry``; an async context manager.

    A batch payload is ``{"device", "t", "samples": [{signal, value, unit, t}, ...], "dropped"}``
    where ``dropped`` counts that device's samples dropped since start. ``linger_s``
    trades a little latency for fewer, larger messages.
    """

    def __init__(
        self,
        bus: BusClient,
        *,
        max_samples: int = 10_000,
        max_batch: int = 500,
        linger_s: float = 0.002,
        qos: int = 1,
        close_timeout_s: float = 5.0,
    ) -> None:
        if max_samples < 1 or max_batch < 1:
            raise ValueError("max_samples and max_batch must be at least 1")
        self.stats = TelemetryStats()
        self._bus = bus
        self._max_samples = max_samples
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._qos = qos
        self._close_timeout_s = close_timeout_s
        self._buffer: deque[SampleLike] = deque()
        self._topic_of: dict[str, str] = {}
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def add(self, sample: SampleLike) -> None:
        """Queue one sample; never blocks. Drops (and counts) the oldest one when full."""
        if sample.device not in self._topic_of:
            self._topic_of[sample.device] = self._bus.topics.telemetry(sample.device)
        if len(self._buffer) >= self._max_samples:
            oldest = self._buffer.popleft()
            self.stats.dropped += 1
            self.stats.dropped_by_device[oldest.device] += 1
        self._buffer.append(sample)
        self.stats.accepted += 1
        self._idle.clear()
        self._ready.set()

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every buffered sample was acknowledged by the broker (``TimeoutError`` after ``timeout``)."""
        async with asyncio.timeout(timeout):
            await self._idle.wait()

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise RuntimeError("a TelemetryPublisher cannot be entered twice")
        self._task = asyncio.create_task(self._run(), name="telemetry publisher")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task = self._task
        if task is None or task.done():
            if task is not None:
                await task  # surface a crash of the loop
            return
        try:
            if self._bus.connected:
                with contextlib.suppress(TimeoutError):
                    await self.flush(self._close_timeout_s)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            while not self._buffer:
                self._idle.set()
                self._ready.clear()
                await self._ready.wait()
            await self._bus.wait_connected()
            if self._linger_s > 0 and len(self._buffer) < self._max_batch:
                await asyncio.sleep(self._linger_s)
            await self._publish_batch()

    async def _publish_batch(self) -> None:
        count = min(len(self._buffer), self._max_batch)
        by_device: dict[str, list[JsonValue]] = {}
        for _ in range(count):
            sample = self._buffer.popleft()
            by_device.setdefault(sample.device, []).append(sample_json(sample))
        now = time.time()
        acks = [
            self._bus.post(
                self._topic_of[device],
                {
                    "device": device,
                    "t": now,
                    "samples": samples,
                    "dropped": self.stats.dropped_by_device[device],
                },
                qos=self._qos,
            )
            for device, samples in by_device.items()
        ]
        # The bus resends these across reconnects until acknowledged; waiting keeps its queue short.
        await asyncio.gather(*acks)
        self.stats.published += count
        self.stats.batches += len(acks)

"""The telemetry pipeline: every sample to MQTT in batches, deadbanded ones to the store.

``add`` never blocks nor awaits, so device polling never waits on the broker or
the disk: the MQTT side is a bounded ``TelemetryPublisher``, the store side a
bounded buffer written in batches; both count what they drop.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..bus import TelemetryPublisher
from ..devices import Sample
from ..errors import LabDeviceError
from ..store import Store, StoreUnavailable

__all__ = ["PipelineStats", "TelemetryPipeline"]

log = logging.getLogger("labdevices.daemon")


@dataclass
class PipelineStats:
    samples: int = 0
    stored: int = 0
    store_dropped: int = 0
    store_errors: int = 0


class TelemetryPipeline:
    """Fans samples out to MQTT, the store (those ``accept`` keeps: a deadband) and listeners
    (interlocks); keeps the latest value of every signal."""

    def __init__(
        self,
        publisher: TelemetryPublisher,
        store: Store,
        accept: Callable[[Sample], bool],
        *,
        flush_interval_s: float = 0.5,
        max_buffered: int = 100_000,
        listeners: list[Callable[[Sample], None]] | None = None,
    ) -> None:
        self.stats = PipelineStats()
        self.latest: dict[tuple[str, str], Sample] = {}
        self._publisher = publisher
        self._store = store
        self._accept = accept
        self._flush_interval_s = flush_interval_s
        self._buffer: deque[Sample] = deque()
        self._max_buffered = max_buffered
        self._listeners = list(listeners or [])
        self._pending = asyncio.Event()

    def add_listener(self, listener: Callable[[Sample], None]) -> None:
        self._listeners.append(listener)

    def add(self, sample: Sample) -> None:
        self.stats.samples += 1
        self.latest[(sample.device, sample.signal)] = sample
        self._publisher.add(sample)
        if self._accept(sample):
            if len(self._buffer) >= self._max_buffered:
                self._buffer.popleft()
                self.stats.store_dropped += 1
            self._buffer.append(sample)
            self._pending.set()
        for listener in self._listeners:
            listener(sample)

    async def run_store_writer(self) -> None:
        """Write buffered samples in batches, at most once per ``flush_interval_s``."""
        while True:
            await self._pending.wait()
            await asyncio.sleep(self._flush_interval_s)  # batch: one transaction per interval
            await self.flush_store()

    async def flush_store(self) -> None:
        """Write everything buffered now."""
        self._pending.clear()
        batch = list(self._buffer)
        self._buffer.clear()
        if not batch:
            return
        try:
            self.stats.stored += await self._store.insert_telemetry(batch)
        except StoreUnavailable as exc:
            # The database is away (a PostgreSQL restart): keep the batch for the next flush,
            # oldest first, within the same bound as the buffer.
            self.stats.store_errors += 1
            self._buffer.extendleft(reversed(batch))
            while len(self._buffer) > self._max_buffered:
                self._buffer.popleft()
                self.stats.store_dropped += 1
            self._pending.set()
            log.warning("telemetry: %d samples kept for the next write: %s", len(batch), exc)
        except LabDeviceError as exc:
            self.stats.store_errors += 1
            log.error("telemetry: %d samples not stored: %s", len(batch), exc)

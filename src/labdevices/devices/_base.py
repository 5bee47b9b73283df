"""The Device lifecycle shared by every driver: state machine, samples, background loops.

A ``Device`` is an async context manager. Entering connects (cleaning up if that
fails), exiting stops its background loops and closes the link; exit is safe to
call twice, re-entry is refused. States: ``offline → connecting → idle ⇄ busy →
(paused) → idle``, and ``fault`` from any state.
"""

from __future__ import annotations

import asyncio
import enum
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Literal, Self, TypeVar

from ..errors import LabDeviceError
from ..profiles import ProfileBase, SignalBase

__all__ = ["Device", "DeviceState", "Quality", "Sample", "SampleBatch"]

Quality = Literal["good", "stale", "bad"]


class DeviceState(enum.StrEnum):
    OFFLINE = "offline"
    CONNECTING = "connecting"
    IDLE = "idle"
    BUSY = "busy"
    PAUSED = "paused"
    FAULT = "fault"


@dataclass(slots=True)
class Sample:
    """One reading: ``t`` is wall-clock seconds since the epoch.

    Treat it as immutable. It is not frozen because a frozen dataclass costs four
    times as much to build, and telemetry builds hundreds of thousands a second.
    """

    device: str
    signal: str
    value: float | bool | str | None
    unit: str
    t: float = field(default_factory=time.time)
    quality: Quality = "good"
    reason: str | None = None


@dataclass(slots=True)
class SampleBatch:
    """Samples of one device taken at one time (one poll), stored by column.

    High-rate drivers publish these so that no per-sample object is built unless a
    consumer asks for one (iterating yields ``Sample``s).
    """

    device: str
    t: float
    signals: Sequence[str]
    values: Sequence[float | bool | str | None]
    units: Sequence[str]
    quality: Quality = "good"
    reason: str | None = None

    def __len__(self) -> int:
        return len(self.signals)

    def __iter__(self) -> Iterator[Sample]:
        d, t, q, r = self.device, self.t, self.quality, self.reason
        for s, v, u in zip(self.signals, self.values, self.units, strict=True):
            yield Sample(d, s, v, u, t, q, r)

    def sample(self, index: int) -> Sample:
        return Sample(
            self.device,
            self.signals[index],
            self.values[index],
            self.units[index],
            self.t,
            self.quality,
            self.reason,
        )

    @classmethod
    def of(cls, sample: Sample) -> SampleBatch:
        return cls(
            sample.device,
            sample.t,
            (sample.signal,),
            (sample.value,),
            (sample.unit,),
            sample.quality,
            sample.reason,
        )


P = TypeVar("P", bound=ProfileBase)

StateListener = Callable[[DeviceState, DeviceState], None]


class Device(ABC, Generic[P]):
    """Base of every driver. Subclasses implement ``_open``, ``_close`` and the I/O methods."""

    #: samples kept per subscriber before the oldest are dropped
    subscriber_queue_size = 1000

    def __init__(self, name: str, profile: P) -> None:
        self.name = name
        self.profile = profile
        self._state = DeviceState.OFFLINE
        self._state_changed = asyncio.Event()
        self._listeners: list[StateListener] = []
        self._subscribers: set[asyncio.Queue[Sample]] = set()
        self._batch_subscribers: set[asyncio.Queue[SampleBatch]] = set()
        self.dropped_samples = 0
        self._tasks: asyncio.TaskGroup | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._entered = False
        self._closed = False
        self.fault_reason: str | None = None

    # -- state -------------------------------------------------------------
    @property
    def state(self) -> DeviceState:
        return self._state

    def _set_state(self, new: DeviceState, reason: str | None = None) -> None:
        old = self._state
        if new == DeviceState.FAULT:
            self.fault_reason = reason
        if old == new:
            return
        self._state = new
        self._state_changed.set()
        self._state_changed = asyncio.Event()
        for listener in list(self._listeners):
            listener(old, new)

    def on_state_change(self, listener: StateListener) -> None:
        self._listeners.append(listener)

    async def wait_for_state(self, *states: DeviceState) -> DeviceState:
        """Return once the device is in one of ``states``."""
        while self._state not in states:
            await self._state_changed.wait()
        return self._state

    # -- samples -----------------------------------------------------------
    def _publish(self, sample: Sample) -> None:
        for q in self._subscribers:
            self._publish_one(q, sample)
        if self._batch_subscribers:
            self._publish_to_batch_subscribers(SampleBatch.of(sample))

    def _publish_to_batch_subscribers(self, batch: SampleBatch) -> None:
        for bq in self._batch_subscribers:
            if bq.full():
                self.dropped_samples += len(bq.get_nowait())
            bq.put_nowait(batch)

    def _publish_batch(self, batch: SampleBatch) -> None:
        """Publish one poll's samples; ``Sample`` objects are built only for per-sample subscribers."""
        if not batch.signals:
            return
        if self._batch_subscribers:
            self._publish_to_batch_subscribers(batch)
        if not self._subscribers:
            return
        samples = list(batch)
        n = len(samples)
        for q in self._subscribers:
            if q.maxsize - q.qsize() >= n:
                put = q.put_nowait
                for sample in samples:
                    put(sample)
            else:
                for sample in samples:
                    self._publish_one(q, sample)

    def _publish_one(self, q: asyncio.Queue[Sample], sample: Sample) -> None:
        if q.full():
            q.get_nowait()
            self.dropped_samples += 1
        q.put_nowait(sample)

    @asynccontextmanager
    async def subscribe_batches(self) -> AsyncIterator[asyncio.Queue[SampleBatch]]:
        """A bounded queue receiving ``SampleBatch``es (one per poll or report) while open.

        Cheaper than ``subscribe`` for high-rate consumers such as the telemetry pipeline.
        """
        q: asyncio.Queue[SampleBatch] = asyncio.Queue(self.subscriber_queue_size)
        self._batch_subscribers.add(q)
        try:
            yield q
        finally:
            self._batch_subscribers.discard(q)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Sample]]:
        """A bounded queue receiving every sample while the context is open."""
        q: asyncio.Queue[Sample] = asyncio.Queue(self.subscriber_queue_size)
        self._subscribers.add(q)
        try:
            yield q
        finally:
            self._subscribers.discard(q)

    def signal(self, name: str) -> SignalBase:
        signals: dict[str, SignalBase] = getattr(self.profile, "signals", {})
        try:
            return signals[name]
        except KeyError:
            known = ", ".join(sorted(signals)) or "none"
            raise LabDeviceError(
                f"unknown signal {name!r} (known: {known})", device=self.name
            ) from None

    def check_write(self, name: str, value: float) -> SignalBase:
        """Check a write against the profile before anything reaches the wire."""
        sig = self.signal(name)
        sig.check(self.name, name, value)
        return sig

    # -- background loops ----------------------------------------------------
    def _start_background(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        if self._tasks is None:
            coro.close()
            raise RuntimeError(f"{self.name}: background task {name!r} started outside the device")
        task = self._tasks.create_task(coro, name=f"{self.name}:{name}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # -- lifecycle ---------------------------------------------------------
    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError(f"{self.name}: device context entered twice (not re-entrant)")
        self._entered = True
        self._set_state(DeviceState.CONNECTING)
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        try:
            await self._open()
        except BaseException as exc:
            await self._shutdown(type(exc), exc, exc.__traceback__)
            raise
        if self._state == DeviceState.CONNECTING:
            self._set_state(DeviceState.IDLE)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._shutdown(exc_type, exc, tb)

    async def _shutdown(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._closed:
            return
        self._closed = True
        tasks, self._tasks = self._tasks, None
        try:
            await self._close()
        finally:
            if tasks is not None:
                for task in list(self._background):
                    task.cancel()
                try:
                    await tasks.__aexit__(exc_type, exc, tb)
                except BaseExceptionGroup as group:
                    # Background loops that died with a domain error already put the
                    # device in fault; the caller's own exception is what matters here.
                    if exc is None:
                        if len(group.exceptions) == 1:
                            raise group.exceptions[0] from None
                        raise
            if self._state != DeviceState.FAULT:
                self._set_state(DeviceState.OFFLINE)

    @abstractmethod
    async def _open(self) -> None:
        """Open the link and handshake; start background loops with ``_start_background``."""

    @abstractmethod
    async def _close(self) -> None:
        """Close the link. Called once, also after a failed ``_open``."""

    @abstractmethod
    async def read(self, signal: str) -> Sample:
        """Read one signal now."""

    @abstractmethod
    async def write(self, signal: str, value: float) -> None:
        """Write one signal after checking the profile's limits."""

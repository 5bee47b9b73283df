"""The Modbus TCP/RTU driver: block polling on monotonic deadlines, verified setpoint writes.

Signals that share a table and a poll interval are read in as few requests as
the profile allows (adjacent registers, at most ``max_registers_per_request``).
Every sample carries a quality: ``good``; ``stale`` (the last good value, while the
device does not answer or the link is down); ``bad`` (no value: an exception
response, or nothing read yet). A lost link is reopened by its own loop with
capped, jittered exponential backoff.

A device that leaves ``timeouts_before_reconnect`` requests in a row unanswered
(each after ``timeout_s`` and its retries: its timeout budget) is ``offline``, even
if its socket is open, until it answers a request again; a reopened socket is
probed with one request before the device is ``idle``.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import (
    ConfigurationError,
    DeviceConnectionError,
    DeviceFault,
    DeviceTimeoutError,
    LabDeviceError,
    ProtocolError,
)
from ..profiles import ModbusProfile, ModbusSignal
from ..transports._modbus import (
    ModbusExceptionResponse,
    ModbusLink,
    acquire_link,
    parse_modbus_address,
    release_link,
)
from ._base import Device, DeviceState, Sample, SampleBatch

__all__ = ["ModbusDevice", "PollStats", "plan_blocks"]

Decoder = Callable[[list[Any]], float | bool]


@dataclass(slots=True)
class _Field:
    name: str
    unit: str
    index: int
    decode: Decoder
    deadband: float


@dataclass(slots=True)
class _Block:
    """One read request: ``count`` registers (or bits) of ``table`` from ``address``."""

    table: str
    address: int
    count: int
    fields: list[_Field]
    names: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    plain: bool = False
    """No field has a deadband: every poll publishes every field."""
    raw: bool = False
    """Every register is one uint16 field with no scale: the read values are the samples."""
    last: SampleBatch | None = None


#: request-to-publish times kept per device: the last ~100 s at 10 Hz. A device polls for
#: months; 100,000 of them (the old bound) cost 3 MiB per device, 170 MiB for 55 devices.
LATENCY_WINDOW = 1024


@dataclass
class PollStats:
    """Counters of the poll loops; ``latency_s`` holds the last ``LATENCY_WINDOW``
    request-to-publish times (a benchmark that wants more swaps in a longer deque)."""

    polls: int = 0
    failures: int = 0
    overruns: int = 0
    reconnects: int = 0
    latency_s: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))


def _decoder(sig: ModbusSignal, index: int) -> Decoder:
    """A fast decoder for one signal at ``index`` of a block read (the poll hot path)."""
    scale, offset, dtype = sig.scale, sig.offset, sig.dtype
    identity = scale == 1.0 and offset == 0.0
    if dtype == "bool":
        return lambda values: bool(values[index])
    if dtype == "uint16" and sig.byte_order == "big":
        if identity:
            return lambda regs: regs[index]
        return lambda regs: regs[index] * scale + offset
    if dtype == "int16" and sig.byte_order == "big":

        def int16(regs: list[Any]) -> float:
            r: int = regs[index]
            return (r - 65536 if r & 0x8000 else r) * scale + offset

        return int16
    width = sig.width
    return lambda regs: sig.decode(regs[index : index + width])


def plan_blocks(
    signals: dict[str, ModbusSignal], max_registers: int, max_bits: int, max_gap: int
) -> list[_Block]:
    """Group signals of one table into block reads: adjacent (or within ``max_gap``), bounded."""
    blocks: list[_Block] = []
    by_table: dict[str, list[tuple[str, ModbusSignal]]] = {}
    for name, sig in signals.items():
        by_table.setdefault(sig.table, []).append((name, sig))
    for table, entries in by_table.items():
        limit = max_bits if table in ("coil", "discrete") else max_registers
        entries.sort(key=lambda e: e[1].address)
        current: list[tuple[str, ModbusSignal]] = []
        start = end = 0  # end: one past the last address in the block
        for name, sig in entries:
            sig_end = sig.address + sig.width
            if current and sig.address - end <= max_gap and sig_end - start <= limit:
                current.append((name, sig))
                end = max(end, sig_end)
                continue
            if current:
                blocks.append(_make_block(table, start, end, current))
            current, start, end = [(name, sig)], sig.address, sig_end
        if current:
            blocks.append(_make_block(table, start, end, current))
    return blocks


def _make_block(
    table: str, start: int, end: int, entries: list[tuple[str, ModbusSignal]]
) -> _Block:
    fields = [
        _Field(
            name, sig.unit, sig.address - start, _decoder(sig, sig.address - start), sig.deadband
        )
        for name, sig in entries
    ]
    plain = all(not f.deadband for f in fields)
    raw = (
        plain
        and table in ("holding", "input")
        and [f.index for f in fields] == list(range(end - start))
        and all(
            sig.dtype == "uint16"
            and sig.byte_order == "big"
            and sig.scale == 1.0
            and sig.offset == 0.0
            for _, sig in entries
        )
    )
    names = tuple(f.name for f in fields)
    units = tuple(f.unit for f in fields)
    return _Block(table, start, end - start, fields, names, units, plain, raw)


class ModbusDevice(Device[ModbusProfile]):
    """A Modbus device at ``tcp://host:port?unit=1`` or ``rtu:///dev/ttyX?baudrate=19200&unit=1``.

    Options: ``poll`` (default True) starts the poll loops; ``poll_interval_s``
    overrides the profile's default interval; ``seed`` seeds the backoff jitter.
    """

    def __init__(
        self,
        name: str,
        profile: ModbusProfile,
        address: str,
        *,
        poll: bool = True,
        poll_interval_s: float | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(name, profile)
        self.address = address
        self._addr = parse_modbus_address(address, device=name)
        self.unit = self._addr.unit if self._addr.unit is not None else profile.connection.unit
        self._poll = poll
        self._default_interval = (
            poll_interval_s if poll_interval_s is not None else profile.connection.poll_interval_s
        )
        self._random = random.Random(seed)
        self.stats = PollStats()
        self.last_error: LabDeviceError | None = None
        self._link: ModbusLink | None = None
        self._link_lost = asyncio.Event()
        self._link_up = asyncio.Event()
        self._last: dict[str, Sample] = {}
        self._published: dict[str, float | bool] = {}
        # signals whose last published sample was stale or bad: the next good one is always sent
        self._not_good: set[str] = set()
        self._timeouts = 0
        conn = profile.connection
        groups: dict[float, dict[str, ModbusSignal]] = {}
        for sig_name, sig in profile.signals.items():
            interval = (
                sig.poll_interval_s if sig.poll_interval_s is not None else self._default_interval
            )
            groups.setdefault(interval, {})[sig_name] = sig
        self._groups = {
            interval: plan_blocks(
                sigs, conn.max_registers_per_request, conn.max_bits_per_request, conn.max_gap
            )
            for interval, sigs in groups.items()
        }
        self._all_blocks = plan_blocks(
            profile.signals, conn.max_registers_per_request, conn.max_bits_per_request, conn.max_gap
        )

    # -- lifecycle -------------------------------------------------------------
    async def _open(self) -> None:
        link = acquire_link(self._addr, self.profile.connection, self.name)
        self._link = link
        link.on_lost(self._on_link_lost)
        await link.connect(self.name)
        self._link_up.set()
        self._start_background(self._reconnect_loop(), "reconnect")
        if self._poll:
            for interval, blocks in self._groups.items():
                self._start_background(self._poll_loop(interval, blocks), f"poll {interval:g}s")

    async def _close(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.remove_listener(self._on_link_lost)
            release_link(link)

    def _on_link_lost(self) -> None:
        self._link_up.clear()
        self._link_lost.set()

    @property
    def link(self) -> ModbusLink:
        if self._link is None:
            raise DeviceConnectionError("device is not open", device=self.name)
        return self._link

    # -- reading ---------------------------------------------------------------
    async def read(self, signal: str) -> Sample:
        """Read one signal now (one request); errors are raised, not turned into quality."""
        sig = self._modbus_signal(signal)
        values = await self.link.read(sig.table, sig.address, sig.width, self.unit, self.name)
        value: float | bool = bool(values[0]) if sig.dtype == "bool" else sig.decode(values)  # type: ignore[arg-type]
        return Sample(self.name, signal, value, sig.unit)

    async def snapshot(self) -> dict[str, Sample]:
        """Every signal now, read in blocks; a block that fails gives ``bad`` samples with the reason."""
        out: dict[str, Sample] = {}
        for block in self._all_blocks:
            try:
                values = await self.link.read(
                    block.table, block.address, block.count, self.unit, self.name
                )
            except (DeviceFault, DeviceTimeoutError, DeviceConnectionError, ProtocolError) as exc:
                for f in block.fields:
                    out[f.name] = Sample(
                        self.name, f.name, None, f.unit, quality="bad", reason=str(exc)
                    )
                continue
            t = time.time()
            for f in block.fields:
                out[f.name] = Sample(self.name, f.name, f.decode(values), f.unit, t)
        return {name: out[name] for name in self.profile.signals}

    def latest(self, signal: str) -> Sample | None:
        """The last sample the poll loops (or a write's read-back) produced for ``signal``."""
        found = self._last.get(signal)
        for block in (b for blocks in self._groups.values() for b in blocks):
            batch = block.last
            if batch is not None and signal in block.names:
                polled = batch.sample(block.names.index(signal))
                if found is None or polled.t > found.t:
                    found = polled
                break
        return found

    # -- writing ---------------------------------------------------------------
    async def write(self, signal: str, value: float) -> None:
        """Check the limits (nothing is sent on a violation), write, read back and verify."""
        self.check_write(signal, value)
        sig = self._modbus_signal(signal)
        link = self.link
        payload: list[int] | bool = bool(value) if sig.dtype == "bool" else sig.encode(value)
        async with link.lock:
            await link.write_locked(sig.table, sig.address, payload, self.unit, self.name)
            back = await link.read_locked(sig.table, sig.address, sig.width, self.unit, self.name)
        got: float | bool = bool(back[0]) if sig.dtype == "bool" else sig.decode(back)  # type: ignore[arg-type]
        expected: float | bool = bool(value) if sig.dtype == "bool" else sig.decode(payload)  # type: ignore[arg-type]
        tolerance = 1e-6 * max(1.0, abs(float(expected))) + sig.resolution() / 2
        if abs(float(got) - float(expected)) > tolerance:
            raise DeviceFault(
                f"write of {signal} = {value} {sig.unit} not verified: read back {got} {sig.unit}",
                device=self.name,
            )
        sample = Sample(self.name, signal, got, sig.unit)
        self._last[signal] = sample
        self._publish(sample)

    def _modbus_signal(self, name: str) -> ModbusSignal:
        sig = self.signal(name)
        if not isinstance(sig, ModbusSignal):  # pragma: no cover - profile type guarantees it
            raise ConfigurationError(f"signal {name!r} is not a Modbus signal", device=self.name)
        return sig

    # -- background loops --------------------------------------------------------
    async def _poll_loop(self, interval: float, blocks: list[_Block]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while self._link is not None:
            if not self._link_up.is_set():
                for block in blocks:
                    self._publish_unavailable(block, "stale", self._outage_reason())
                if interval == 0:
                    await self._link_up.wait()
            else:
                for block in blocks:
                    await self._poll_block(block)
            if interval > 0:
                # Deadlines on a fixed monotonic grid: no drift; missed ticks are skipped, not bunched.
                deadline += interval
                now = loop.time()
                if deadline < now:
                    missed = math.ceil((now - deadline) / interval)
                    self.stats.overruns += missed
                    deadline += missed * interval
                await asyncio.sleep(deadline - now)

    async def _poll_block(self, block: _Block) -> None:
        link = self._link
        if link is None:
            return
        t0 = time.perf_counter()
        try:
            values = await link.read(block.table, block.address, block.count, self.unit, self.name)
        except ModbusExceptionResponse as exc:
            self._answered()  # the device is there: it says why it cannot answer
            self._fail(exc)
            self._publish_unavailable(block, "bad", str(exc))
            return
        except (DeviceTimeoutError, ProtocolError) as exc:
            self._fail(exc)
            self._publish_unavailable(block, "stale", str(exc))
            self._unanswered(exc)
            return
        except DeviceConnectionError as exc:
            if self._link_up.is_set():  # else the outage is known, and its cause kept
                self._fail(exc)
                self._on_link_lost()
            self._publish_unavailable(block, "stale", self._outage_reason())
            return
        if self._timeouts or self._state is not DeviceState.IDLE:
            self._answered()
        t = time.time()
        if block.plain:
            # The hot path: one columnar batch, no per-sample objects.
            vals = values if block.raw else [f.decode(values) for f in block.fields]
            batch = SampleBatch(self.name, t, block.names, vals, block.units)
            block.last = batch
            if self._not_good:
                self._not_good.difference_update(block.names)
        else:
            batch = self._deadbanded(block, values, t)
        self._publish_batch(batch)
        stats = self.stats
        stats.polls += 1
        stats.latency_s.append(time.perf_counter() - t0)

    def _answered(self) -> None:
        """The device answered a request: it is online (unless its link is still being reopened)."""
        self._timeouts = 0
        if self._state in (DeviceState.OFFLINE, DeviceState.CONNECTING) and self._link_up.is_set():
            self._set_state(DeviceState.IDLE)

    def _unanswered(self, exc: LabDeviceError) -> None:
        """A request went unanswered (or answered with garbage).

        ``timeouts_before_reconnect`` in a row, each after ``timeout_s`` and its
        retries, is the device's timeout budget: it is then offline, whether or not
        its socket is open, until it answers again. A TCP link of its own is reopened
        with backoff; a link shared with other devices (a gateway, an RTU bus) stays
        open for them, and the device's polls find out when it answers again.
        """
        self._timeouts += 1
        budget = self.profile.connection.timeouts_before_reconnect
        if self._timeouts < budget:
            return
        if self._state in (DeviceState.IDLE, DeviceState.CONNECTING):
            self.last_error = DeviceTimeoutError(
                f"offline: {self._timeouts} requests in a row unanswered; last: {exc.message}",
                device=self.name,
            )
            self._set_state(DeviceState.OFFLINE)
        link = self._link
        if link is not None and not link.is_serial and not link.shared:
            link.drop()

    def _deadbanded(self, block: _Block, values: list[Any], t: float) -> SampleBatch:
        """The fields that moved beyond their deadband (all of them after an outage)."""
        not_good = self._not_good
        names: list[str] = []
        vals: list[Any] = []
        units: list[str] = []
        for f in block.fields:
            value = f.decode(values)
            if f.deadband:
                prev = self._published.get(f.name)
                if (
                    prev is not None
                    and abs(value - prev) <= f.deadband
                    and (not not_good or f.name not in not_good)
                ):
                    continue
                self._published[f.name] = value
            self._last[f.name] = Sample(self.name, f.name, value, f.unit, t)
            names.append(f.name)
            vals.append(value)
            units.append(f.unit)
        if not_good:
            not_good.difference_update(block.names)
        return SampleBatch(self.name, t, names, vals, units)

    def _fail(self, exc: LabDeviceError) -> None:
        self.last_error = exc
        self.stats.failures += 1

    def _outage_reason(self) -> str:
        if self._state == DeviceState.OFFLINE and self.last_error is not None:
            return str(self.last_error)
        return f"link down: {self.last_error}" if self.last_error else "link down"

    def _publish_unavailable(self, block: _Block, quality: str, reason: str) -> None:
        """Samples that say a value is not fresh: never an invented value."""
        t = time.time()
        self._not_good.update(f.name for f in block.fields)
        for f in block.fields:
            prev = self.latest(f.name)
            if quality == "stale" and prev is not None and prev.value is not None:
                sample = Sample(self.name, f.name, prev.value, f.unit, t, "stale", reason)
            else:
                sample = Sample(self.name, f.name, None, f.unit, t, "bad", reason)
            self._publish(sample)

    async def _reconnect_loop(self) -> None:
        conn = self.profile.connection
        while True:
            await self._link_lost.wait()
            if self._state != DeviceState.OFFLINE:  # a silent device stays offline
                self._set_state(DeviceState.CONNECTING)
            attempt = 0
            while True:
                link = self._link
                if link is None:
                    return
                if link.connected and await self._probe(link):
                    break
                # Full-range jitter keeps devices that lost one gateway from reconnecting in step.
                delay = min(conn.reconnect_max_s, conn.reconnect_min_s * 2**attempt)
                await asyncio.sleep(delay * self._random.uniform(0.5, 1.0))
                try:
                    await link.connect(self.name)
                except (DeviceConnectionError, DeviceTimeoutError) as exc:
                    self.last_error = exc
                    attempt += 1
            self._link_lost.clear()
            self._timeouts = 0
            self.stats.reconnects += 1
            self._link_up.set()
            if self._state in (DeviceState.CONNECTING, DeviceState.OFFLINE):
                self._set_state(DeviceState.IDLE)

    async def _probe(self, link: ModbusLink) -> bool:
        """One request on a reopened link: an open socket is not yet a device that answers."""
        if not self._all_blocks:
            return True
        block = self._all_blocks[0]
        try:
            await link.read(block.table, block.address, block.count, self.unit, self.name)
        except ModbusExceptionResponse:
            return True  # it speaks Modbus
        except (DeviceTimeoutError, DeviceConnectionError, ProtocolError) as exc:
            self.last_error = exc
            if not link.is_serial and not link.shared:
                link.drop()
            return False
        return True

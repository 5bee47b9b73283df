"""A Modbus TCP / RTU-over-pty server that serves exactly a device profile, with seeded fault injection.

The register map is generated from the profile: each signal's value comes from a
physics model and is encoded as the profile says (type, word/byte order, scale,
offset); an address the profile does not name answers ILLEGAL_DATA_ADDRESS. Framing
and PDUs are pymodbus's, the socket/pty handling and the faults are ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import random
import time
import tty
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusIOException
from pymodbus.framer import FramerRTU, FramerSocket
from pymodbus.pdu import DecodePDU, ExceptionResponse

from ..profiles import ModbusProfile, ModbusSignal

__all__ = [
    "Fault",
    "FaultPlan",
    "ModbusSimulator",
    "RegisterImage",
    "SimModel",
    "SimUnit",
    "StaticModel",
]

_TABLE_BY_FC = {1: "coil", 2: "discrete", 3: "holding", 4: "input", 5: "coil", 6: "holding"}
_TABLE_BY_FC.update({15: "coil", 16: "holding"})


class SimModel(Protocol):
    """What a simulated device's physics offers the register map (signal names from the profile)."""

    def step(self, dt_s: float) -> None: ...
    def get(self, signal: str) -> float | bool: ...
    def set(self, signal: str, value: float | bool) -> None: ...


class StaticModel:
    """Values that change only when written: for benchmarks and register-map tests."""

    def __init__(self, values: dict[str, float | bool]) -> None:
        self.values = dict(values)

    def step(self, dt_s: float) -> None:
        pass

    def get(self, signal: str) -> float | bool:
        return self.values.get(signal, 0.0)

    def set(self, signal: str, value: float | bool) -> None:
        self.values[signal] = value


class Fault(enum.StrEnum):
    EXCEPTION = "exception"  # an exception response (code in the plan)
    TIMEOUT = "timeout"  # no answer at all
    SLOW = "slow"  # the answer comes after a delay
    DISCONNECT = "disconnect"  # TCP: the connection is closed instead of answering


@dataclass
class FaultPlan:
    """Faults drawn at random (seeded) per request, plus faults queued for the next requests."""

    seed: int = 0
    exception_rate: float = 0.0
    exception_code: int = ExcCodes.DEVICE_FAILURE
    timeout_rate: float = 0.0
    slow_rate: float = 0.0
    slow_s: float = 0.2
    disconnect_rate: float = 0.0
    _queued: deque[tuple[Fault, float]] = field(default_factory=deque, repr=False)
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def inject(self, fault: Fault | str, count: int = 1, *, arg: float | None = None) -> None:
        """Apply ``fault`` to the next ``count`` requests (arg: exception code or delay in s)."""
        kind = Fault(fault)
        if arg is None:
            arg = float(self.exception_code) if kind == Fault.EXCEPTION else self.slow_s
        self._queued.extend([(kind, arg)] * count)

    def clear(self) -> None:
        self._queued.clear()
        self.exception_rate = self.timeout_rate = self.slow_rate = self.disconnect_rate = 0.0

    def draw(self) -> tuple[Fault, float] | None:
        if self._queued:
            return self._queued.popleft()
        if not (self.exception_rate or self.timeout_rate or self.slow_rate or self.disconnect_rate):
            return None
        r = self._random.random()
        for kind, rate, arg in (
            (Fault.EXCEPTION, self.exception_rate, float(self.exception_code)),
            (Fault.TIMEOUT, self.timeout_rate, 0.0),
            (Fault.SLOW, self.slow_rate, self.slow_s),
            (Fault.DISCONNECT, self.disconnect_rate, 0.0),
        ):
            if r < rate:
                return kind, arg
            r -= rate
        return None


class RegisterImage:
    """The four Modbus tables of one unit, generated from its profile and fed by its model."""

    def __init__(self, profile: ModbusProfile, model: SimModel) -> None:
        self.profile = profile
        self.model = model
        # table -> address -> (signal name, word index within the signal)
        self.map: dict[str, dict[int, tuple[str, int]]] = {
            t: {} for t in ("holding", "input", "coil", "discrete")
        }
        for name, sig in profile.signals.items():
            for i in range(sig.width):
                self.map[sig.table][sig.address + i] = (name, i)
        self._cache: dict[str, dict[int, int]] = {t: {} for t in self.map}

    def refresh(self) -> None:
        """Encode every signal's current model value into the tables."""
        for name, sig in self.profile.signals.items():
            value = self.model.get(name)
            words: list[int] = (
                [int(bool(value))] if sig.dtype == "bool" else sig.encode(float(value))
            )
            cache = self._cache[sig.table]
            for i, word in enumerate(words):
                cache[sig.address + i] = word

    def read(self, table: str, address: int, count: int) -> list[int] | ExcCodes:
        cache = self._cache[table]
        try:
            return [cache[a] for a in range(address, address + count)]
        except KeyError:
            return ExcCodes.ILLEGAL_ADDRESS

    def write(self, table: str, address: int, words: list[int]) -> ExcCodes | None:
        """Apply a client's write: whole writable signals only, within the profile's limits."""
        amap = self.map[table]
        updates: list[tuple[str, ModbusSignal, float | bool]] = []
        a = address
        while a < address + len(words):
            entry = amap.get(a)
            if entry is None or entry[1] != 0:
                return ExcCodes.ILLEGAL_ADDRESS
            name = entry[0]
            sig = self.profile.signals[name]
            if not sig.writable or a + sig.width > address + len(words):
                return ExcCodes.ILLEGAL_ADDRESS
            chunk = words[a - address : a - address + sig.width]
            value: float | bool = bool(chunk[0]) if sig.dtype == "bool" else sig.decode(chunk)
            if not isinstance(value, bool) and (
                (sig.min is not None and value < sig.min - 1e-9)
                or (sig.max is not None and value > sig.max + 1e-9)
            ):
                return ExcCodes.ILLEGAL_VALUE
            updates.append((name, sig, value))
            a += sig.width
        for name, _sig, value in updates:
            self.model.set(name, value)
        self.refresh()
        return None


@dataclass
class SimUnit:
    """One simulated device behind the server: its profile and its physics."""

    profile: ModbusProfile
    model: SimModel


class _Context:
    """The datastore pymodbus request PDUs call (``datastore_update``)."""

    def __init__(self, sim: ModbusSimulator) -> None:
        self.sim = sim

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        image = self.sim._images[device_id]
        table = _TABLE_BY_FC[func_code]
        values = image.read(table, address, count)
        if isinstance(values, ExcCodes) or table not in ("coil", "discrete"):
            return values
        return [bool(v) for v in values]

    async def async_setValues(
        self, device_id: int, func_code: int, address: int, values: list[int] | list[bool]
    ) -> ExcCodes | None:
        image = self.sim._images[device_id]
        return image.write(_TABLE_BY_FC[func_code], address, [int(v) for v in values])


class ModbusSimulator:
    """Serves one or more units over Modbus TCP (``serve_tcp``) or RTU on a pty (``serve_rtu``).

    ``time_scale`` speeds up the physics (60: one wall second is one model minute);
    the models are advanced lazily, on each request, so nothing runs between polls.
    """

    def __init__(
        self,
        units: dict[int, SimUnit],
        *,
        time_scale: float = 1.0,
        faults: FaultPlan | None = None,
        max_step_s: float = 1.0,
    ) -> None:
        self.units = units
        self.time_scale = time_scale
        self.faults = faults or FaultPlan()
        self.max_step_s = max_step_s
        self.requests: Counter[tuple[int, int]] = Counter()
        self.garbage_frames = 0
        self.answered = asyncio.Event()
        self._images = {unit: RegisterImage(u.profile, u.model) for unit, u in units.items()}
        for image in self._images.values():
            image.refresh()
        self._context = _Context(self)
        self._last_step = time.monotonic()
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._rtu_task: asyncio.Task[None] | None = None
        self._framers = {True: FramerSocket(DecodePDU(True)), False: FramerRTU(DecodePDU(True))}
        self._pty: tuple[int, int] | None = None
        self._pty_buffer = b""
        self._silent = False
        self.host = "127.0.0.1"
        self.port = 0
        self.pty_path = ""
        self.model_time_s = 0.0

    # -- physics --------------------------------------------------------------------
    def advance(self) -> None:
        """Step every model to now (scaled), in steps of at most ``max_step_s`` model seconds."""
        now = time.monotonic()
        dt = (now - self._last_step) * self.time_scale
        if dt < 0.01 * self.max_step_s:
            return
        self._last_step = now
        self.model_time_s += dt
        steps = max(1, int(dt / self.max_step_s + 0.999))
        for unit in self.units.values():
            for _ in range(steps):
                unit.model.step(dt / steps)
        for image in self._images.values():
            image.refresh()

    # -- lifecycle ------------------------------------------------------------------
    async def __aenter__(self) -> ModbusSimulator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0: a free port); returns the port."""
        self._server = await asyncio.start_server(self._tcp_client, host, port, reuse_address=True)
        self.host = host
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def serve_rtu(self) -> str:
        """Open a pseudo-terminal pair and answer on it; returns the path clients open."""
        master, slave = os.openpty()
        tty.setraw(slave)
        tty.setraw(master)
        os.set_blocking(master, False)
        self._pty = (master, slave)
        self.pty_path = os.ttyname(slave)
        asyncio.get_running_loop().add_reader(master, self._pty_readable)
        return self.pty_path

    async def stop(self) -> None:
        """Stop listening and close every connection and the pty (safe twice)."""
        await self._stop_tcp()
        if self._pty is not None:
            master, slave = self._pty
            self._pty = None
            asyncio.get_running_loop().remove_reader(master)
            task, self._rtu_task = self._rtu_task, None
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            os.close(master)
            os.close(slave)
        await self._drain_connections()

    async def _stop_tcp(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await self.disconnect_clients()
            await server.wait_closed()

    async def disconnect_clients(self) -> None:
        """Drop every TCP client connection (the server keeps listening)."""
        for writer in list(self._connections.values()):
            writer.transport.abort()
        await self._drain_connections()

    async def _drain_connections(self) -> None:
        # Aborted transports end their handlers; cancelling a stream handler makes asyncio log
        # an error (Python 3.11), so that is only the fallback for one stuck in a slow reply.
        tasks = list(self._connections)
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=2.0)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        """A server restart: down inside the block (TCP closed, RTU silent), back on the same port after."""
        if self._pty is not None:
            self._silent = True
            try:
                yield
            finally:
                self._silent = False
            return
        port = self.port
        await self._stop_tcp()
        try:
            yield
        finally:
            await self.serve_tcp(self.host, port)

    # -- serving ----------------------------------------------------------------------
    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        framer = FramerSocket(DecodePDU(True))
        buffer = b""
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    return
                buffer += data
                while buffer:
                    used, pdu = self._decode(framer, buffer)
                    buffer = buffer[used:]
                    if pdu is None:
                        break
                    reply = await self._handle(pdu, tcp=True)
                    if reply is _DISCONNECT:
                        writer.transport.abort()
                        return
                    if isinstance(reply, bytes) and not writer.is_closing():
                        writer.write(reply)
        except (ConnectionError, OSError):
            return
        finally:
            self._connections.pop(task, None)
            writer.transport.abort()

    def _pty_readable(self) -> None:
        if self._pty is None:
            return
        try:
            data = os.read(self._pty[0], 4096)
        except BlockingIOError:
            return
        except OSError:
            return
        self._pty_buffer += data
        if self._rtu_task is None or self._rtu_task.done():
            # One server task at a time: an RTU bus carries one request after another.
            self._rtu_task = asyncio.get_running_loop().create_task(self._rtu_serve(), name="rtu")

    async def _rtu_serve(self) -> None:
        framer = FramerRTU(DecodePDU(True))
        while self._pty_buffer and self._pty is not None:
            used, pdu = self._decode(framer, self._pty_buffer)
            self._pty_buffer = self._pty_buffer[used:]
            if pdu is None:
                return
            if pdu.dev_id not in self._images:
                continue  # another device on the bus: not ours to answer
            reply = await self._handle(pdu, tcp=False)
            if isinstance(reply, bytes) and self._pty is not None:
                with contextlib.suppress(BlockingIOError):
                    os.write(self._pty[0], reply)

    def _decode(self, framer: Any, buffer: bytes) -> tuple[int, Any]:
        try:
            used, pdu = framer.handleFrame(buffer, 0, 0)
        except ModbusIOException:
            self.garbage_frames += 1
            return len(buffer), None
        if pdu is None and used:
            self.garbage_frames += 1
        return used, pdu

    async def _handle(self, pdu: Any, *, tcp: bool) -> bytes | object | None:
        """The framed answer to one request, ``None`` for no answer, or ``_DISCONNECT``."""
        unit = pdu.dev_id
        if unit not in self._images:
            if tcp and unit == 0 and len(self._images) == 1:
                unit = next(iter(self._images))
            else:
                response: Any = ExceptionResponse(pdu.function_code, ExcCodes.GATEWAY_NO_RESPONSE)
                return self._frame(response, pdu, tcp)
        self.requests[(unit, pdu.function_code)] += 1
        if self._silent:
            return None
        fault = self.faults.draw()
        if fault is not None:
            kind, arg = fault
            if kind == Fault.TIMEOUT:
                return None
            if kind == Fault.DISCONNECT:
                return _DISCONNECT if tcp else None
            if kind == Fault.EXCEPTION:
                return self._frame(ExceptionResponse(pdu.function_code, int(arg)), pdu, tcp)
            await asyncio.sleep(arg)  # Fault.SLOW
        self.advance()
        response = await pdu.datastore_update(self._context, unit)
        reply = self._frame(response, pdu, tcp)
        self.answered.set()
        self.answered = asyncio.Event()
        return reply

    def _frame(self, response: Any, request: Any, tcp: bool) -> bytes:
        response.transaction_id = request.transaction_id
        response.dev_id = request.dev_id
        return bytes(self._framers[tcp].buildFrame(response))

    # -- helpers for tests and tools ---------------------------------------------------
    def image(self, unit: int) -> RegisterImage:
        return self._images[unit]

    def value(self, signal: str, unit: int | None = None) -> float | bool:
        """The model's current value of ``signal`` (first unit by default)."""
        self.advance()
        u = self.units[unit if unit is not None else next(iter(self.units))]
        return u.model.get(signal)

    def request_count(self, unit: int | None = None, function_code: int | None = None) -> int:
        return sum(
            n
            for (u, fc), n in self.requests.items()
            if (unit is None or u == unit) and (function_code is None or fc == function_code)
        )


_DISCONNECT = object()

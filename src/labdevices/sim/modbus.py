"""A Modbus TCP / RTU-over-pty server that serves exactly a device profile, with seeded fault injection.

The register map is generated from the profile: each signal's value comes from a
physics model and is encoded as the profile says (type, word/byte order, scale,
offset); an address the profile does not name answers ILLEGAL_DATA_ADDRESS. Requests
are answered as the Modbus Application Protocol says (``_modbus_pdu``: exception 01
for a function code the device does not implement, 03 for a bad quantity or value,
02 for a bad address); MBAP and RTU framing, the socket/pty handling and the faults
are ours.
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
from typing import Protocol

from pymodbus.constants import ExcCodes

from ..profiles import ModbusProfile, ModbusSignal
from ._modbus_pdu import crc16, exception_pdu, rtu_next_frame, serve_pdu

__all__ = [
    "Fault",
    "FaultPlan",
    "ModbusSimulator",
    "RegisterImage",
    "SimModel",
    "SimUnit",
    "StaticModel",
]

#: function codes that change a table: on an RTU broadcast (unit 0) they are carried out, unanswered
_WRITE_FUNCTIONS = frozenset({5, 6, 15, 16, 22, 23})
#: an RTU request is over once the line has been quiet this long (3.5 characters on a real line)
_RTU_SILENCE_S = 0.05


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
        self._last_step = time.monotonic()
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._rtu_task: asyncio.Task[None] | None = None
        self._rtu_silence: asyncio.TimerHandle | None = None
        self._pty: tuple[int, int] | None = None
        self._pty_buffer = b""
        self._silent = False
        #: units that never answer (switched off behind a gateway that does not say so)
        self.silent_units: set[int] = set()
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
            if self._rtu_silence is not None:
                self._rtu_silence.cancel()
                self._rtu_silence = None
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
        try:
            while True:
                # MBAP header: transaction id, protocol id (0), length (unit + PDU), unit
                header = await reader.readexactly(7)
                tid, protocol, length, unit = (
                    int.from_bytes(header[0:2], "big"),
                    int.from_bytes(header[2:4], "big"),
                    int.from_bytes(header[4:6], "big"),
                    header[6],
                )
                if protocol != 0 or not 2 <= length <= 260:
                    # Not Modbus (an HTTP client, a TLS hello): nothing to resynchronise on. A
                    # length a little past the 253-byte PDU limit is read and answered 03.
                    self.garbage_frames += 1
                    return
                pdu = await reader.readexactly(length - 1)
                reply = await self._handle(unit, pdu, tcp=True)
                if reply is _DISCONNECT:
                    return
                if isinstance(reply, bytes) and not writer.is_closing():
                    writer.write(
                        tid.to_bytes(2, "big")
                        + b"\0\0"
                        + (len(reply) + 1).to_bytes(2, "big")
                        + bytes((unit,))
                        + reply
                    )
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            return
        finally:
            self._connections.pop(task, None)
            writer.transport.abort()

    def _pty_readable(self) -> None:
        if self._pty is None:
            return
        try:
            data = os.read(self._pty[0], 4096)
        except OSError:  # BlockingIOError included: nothing to read after all
            return
        self._pty_buffer += data
        if self._rtu_task is None or self._rtu_task.done():
            # One server task at a time: an RTU bus carries one request after another.
            self._rtu_task = asyncio.get_running_loop().create_task(self._rtu_serve(), name="rtu")

    def _rtu_quiet(self) -> None:
        """The line went quiet in the middle of a frame: what came is not a request."""
        self._rtu_silence = None
        if self._pty_buffer and (self._rtu_task is None or self._rtu_task.done()):
            self.garbage_frames += 1
            self._pty_buffer = b""

    async def _rtu_serve(self) -> None:
        while self._pty_buffer and self._pty is not None:
            if self._rtu_silence is not None:
                self._rtu_silence.cancel()
                self._rtu_silence = None
            found = rtu_next_frame(self._pty_buffer)
            if found is None:
                self._rtu_silence = asyncio.get_running_loop().call_later(
                    _RTU_SILENCE_S, self._rtu_quiet
                )
                return
            skip, length = found
            if skip:
                self.garbage_frames += 1
            frame = self._pty_buffer[skip : skip + length]
            self._pty_buffer = self._pty_buffer[skip + length :]
            unit, pdu = frame[0], frame[1:-2]
            if unit == 0:
                if pdu[0] in _WRITE_FUNCTIONS:  # broadcast: every unit carries it out, none answers
                    for u in self._images:
                        await self._handle(u, pdu, tcp=False)
                continue
            if unit not in self._images:
                continue  # another device on the bus: not ours to answer
            reply = await self._handle(unit, pdu, tcp=False)
            if isinstance(reply, bytes) and self._pty is not None:
                body = bytes((unit,)) + reply
                with contextlib.suppress(BlockingIOError):
                    os.write(self._pty[0], body + crc16(body).to_bytes(2, "little"))

    async def _handle(self, unit: int, pdu: bytes, *, tcp: bool) -> bytes | object | None:
        """The response PDU to one request PDU, ``None`` for no answer, or ``_DISCONNECT``."""
        if not 1 <= pdu[0] <= 127:
            # 0 is no function code, 128-255 mark exception responses: not a request at all
            self.garbage_frames += 1
            return None
        if unit not in self._images:
            if tcp and unit in (0, 255) and len(self._images) == 1:
                unit = next(iter(self._images))
            else:
                return exception_pdu(pdu[0], ExcCodes.GATEWAY_NO_RESPONSE)
        self.requests[(unit, pdu[0])] += 1
        if self._silent or unit in self.silent_units:
            return None
        fault = self.faults.draw()
        if fault is not None:
            kind, arg = fault
            if kind == Fault.TIMEOUT:
                return None
            if kind == Fault.DISCONNECT:
                return _DISCONNECT if tcp else None
            if kind == Fault.EXCEPTION:
                return exception_pdu(pdu[0], int(arg))
            await asyncio.sleep(arg)  # Fault.SLOW
        self.advance()
        reply = serve_pdu(self._images[unit], pdu)
        self.answered.set()
        self.answered = asyncio.Event()
        return reply

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

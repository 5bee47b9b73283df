"""Serve the simulated Marlin firmware on a pseudo-terminal and on TCP, with optional baud pacing.

The firmware core (``_marlin``) never does I/O; this module moves bytes between
it and the links, keeps the clock, and wakes the firmware when it has something
to do by itself (a move finishing, a heater settling, a ``busy:`` keepalive).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Literal

from ..errors import DeviceConnectionError, LabDeviceError
from ..profiles import GcodeProfile
from ._marlin import MarlinFirmware, PrinterState
from ._printer_config import SimPrinterConfig, resolve_profile

__all__ = ["SimulatedPrinter"]

# Bytes a paced link may hold before the reader is paused (the host's OS buffer takes the rest).
_IN_HIGH_WATER = 4096
# Pacing hands bytes over in slices of about this many wall seconds.
_PACING_SLICE_S = 0.001


class _Link:
    """One open connection to a host: bytes out, flow control in, close."""

    name = "link"

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def pause_reading(self) -> None:
        raise NotImplementedError

    def resume_reading(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _PtyLink(_Link):
    """The master side of a pseudo-terminal; the host opens the slave path like a serial port."""

    def __init__(self, engine: _Engine) -> None:
        self._engine = engine
        self._loop = engine.loop
        self.master, self._slave = os.openpty()
        # Raw mode: no echo, no line discipline, bytes pass unchanged as on a UART.
        tty.setraw(self._slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self._slave)
        self.name = self.path
        self._pending = bytearray()
        self._reading = False
        self._closed = False
        self.resume_reading()

    def _on_readable(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._engine.on_data(self, data)

    def write(self, data: bytes) -> None:
        if self._closed:
            return
        if self._pending:
            self._pending += data
            return
        try:
            n = os.write(self.master, data)
        except BlockingIOError:
            n = 0
        except OSError:
            return
        if n < len(data):
            # The host is not reading: keep the rest until the pty has room again.
            self._pending += data[n:]
            self._loop.add_writer(self.master, self._on_writable)

    def _on_writable(self) -> None:
        try:
            n = os.write(self.master, self._pending)
        except BlockingIOError:
            return
        except OSError:
            n = len(self._pending)
        del self._pending[:n]
        if not self._pending:
            self._loop.remove_writer(self.master)

    def pause_reading(self) -> None:
        if self._reading:
            self._loop.remove_reader(self.master)
            self._reading = False

    def resume_reading(self) -> None:
        if not self._reading and not self._closed:
            self._loop.add_reader(self.master, self._on_readable)
            self._reading = True

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close both ends: a host reading the slave then gets EIO, as when a USB cable is pulled."""
        if self._closed:
            return
        self.pause_reading()
        self._closed = True
        if self._pending:
            self._loop.remove_writer(self.master)
        os.close(self.master)
        os.close(self._slave)


class _TcpLink(_Link, asyncio.Protocol):
    """One TCP client, like a serial-to-network bridge (ser2net, ESP3D) in front of a board."""

    def __init__(self, engine: _Engine) -> None:
        self._engine = engine
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self.name = f"tcp {peer}"
        if not self._engine.attach_tcp(self):
            transport.close()  # a serial port has one host at a time

    def data_received(self, data: bytes) -> None:
        self._engine.on_data(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._engine.detach(self)

    def write(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)

    def pause_reading(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class _Engine:
    """Runs the firmware against the event loop's clock and one active link at a time."""

    def __init__(self, firmware: MarlinFirmware, loop: asyncio.AbstractEventLoop) -> None:
        self.firmware = firmware
        self.loop = loop
        baud = firmware.config.baudrate
        self._rate = baud / 10.0 if baud else None  # 8N1: ten bits on the wire per byte
        self._links: list[_Link] = []
        self._active: _Link | None = None
        self._tcp_client: _TcpLink | None = None
        self._in_queue = bytearray()
        self._in_clock = 0.0
        self._in_paused = False
        self._out_queue = bytearray()
        self._out_clock = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self.closed = False

    # links

    def add_link(self, link: _Link) -> None:
        self._links.append(link)
        if self._active is None:
            self._active = link
        self.service()

    def attach_tcp(self, link: _TcpLink) -> bool:
        if self._tcp_client is not None or self.closed:
            return False
        if self._active is None:
            self.service()  # what the firmware said while nobody listened is gone
        self._tcp_client = link
        self._links.append(link)
        self._active = link
        return True

    def detach(self, link: _Link) -> None:
        if link in self._links:
            self._links.remove(link)
        if self._tcp_client is link:
            self._tcp_client = None
        if self._active is link:
            self._active = self._links[0] if self._links else None
            self._in_queue.clear()
            self._out_queue.clear()
            self._in_paused = False

    def drop_link(self) -> None:
        """Close the active link (fault injection or ``disconnect()``)."""
        link = self._active
        self.firmware.link_closed()
        if link is not None:
            self.detach(link)
            link.close()

    # data path

    def on_data(self, link: _Link, data: bytes) -> None:
        if self.closed:
            return
        now = self.loop.time()
        if link is not self._active:
            self._active = link  # Marlin answers on the port a command came from
        if self._rate is None:
            self.firmware.receive(data, now)
        else:
            if not self._in_queue:
                self._in_clock = max(self._in_clock, now)
            self._in_queue += data
            if len(self._in_queue) > _IN_HIGH_WATER and not self._in_paused:
                link.pause_reading()
                self._in_paused = True
        self.service(now)

    def service(self, now: float | None = None) -> None:
        """Deliver paced input, let the firmware run, send its output, and plan the next wake-up."""
        if self.closed:
            return
        now = self.loop.time() if now is None else now
        fw = self.firmware
        rate = self._rate
        if rate is not None and self._in_queue:
            n = min(len(self._in_queue), int((now - self._in_clock) * rate))
            if n > 0:
                chunk = bytes(self._in_queue[:n])
                del self._in_queue[:n]
                self._in_clock += n / rate
                fw.receive(chunk, now)
            if self._in_paused and len(self._in_queue) < _IN_HIGH_WATER // 2:
                self._in_paused = False
                if self._active is not None:
                    self._active.resume_reading()
        fw.tick(now)
        if fw.link_dropped:
            self.drop_link()
        out = fw.take_output(now)
        if rate is None:
            if out and self._active is not None:
                self._active.write(out)
        else:
            if out:
                if not self._out_queue:
                    self._out_clock = max(self._out_clock, now)
                self._out_queue += out
            if self._out_queue:
                n = min(len(self._out_queue), int((now - self._out_clock) * rate))
                if n > 0:
                    if self._active is not None:
                        self._active.write(bytes(self._out_queue[:n]))
                    del self._out_queue[:n]
                    self._out_clock += n / rate
        self._check_waiters()
        self._schedule(now)

    def _schedule(self, now: float) -> None:
        times = []
        wake = self.firmware.next_wakeup()
        if wake is not None:
            times.append(wake)
        rate = self._rate
        if rate is not None:
            step = max(1.0, rate * _PACING_SLICE_S)
            if self._in_queue:
                times.append(self._in_clock + min(len(self._in_queue), step) / rate)
            if self._out_queue:
                times.append(self._out_clock + min(len(self._out_queue), step) / rate)
        if not times:
            return
        at = max(min(times), now)
        if self._timer is not None:
            if self._timer_at <= at and not self._timer.cancelled():
                return
            self._timer.cancel()
        self._timer_at = at
        self._timer = self.loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.service()

    # waiting for conditions (tests, CLI)

    def wait_for(self, predicate: Callable[[], bool]) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self.loop.create_future()
        if predicate():
            future.set_result(None)
        else:
            self._waiters.append((predicate, future))
        return future

    def _check_waiters(self) -> None:
        if not self._waiters:
            return
        still = []
        for predicate, future in self._waiters:
            if future.done():
                continue
            if predicate():
                future.set_result(None)
            else:
                still.append((predicate, future))
        self._waiters = still

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for link in list(self._links):
            link.close()
        self._links.clear()
        self._active = None
        for _, future in self._waiters:
            if not future.done():
                future.cancel()
        self._waiters.clear()


class SimulatedPrinter:
    """A simulated Marlin-style bioprinter on a pseudo-terminal (default) or TCP.

    ``async with SimulatedPrinter(profile="cellink-biox") as sim:`` starts it;
    ``sim.port`` is the pty path a host opens like a serial port, ``sim.url``
    what our driver connects to (the pty path, or ``socket://127.0.0.1:PORT``
    with ``transport="tcp"``). ``sim.executed`` lists every command executed,
    once, in order; ``sim.state`` is a snapshot of valves, pressures,
    temperatures, position and the halted flag.
    """

    def __init__(
        self,
        profile: str | Path | GcodeProfile | None = None,
        config: SimPrinterConfig | None = None,
        *,
        transport: Literal["pty", "tcp"] = "pty",
        tcp_port: int = 0,
    ) -> None:
        config = config or SimPrinterConfig()
        self.profile = resolve_profile(profile if profile is not None else config.profile)
        if profile is not None:
            config = config.model_copy(update={"profile": self.profile.name})
        self.config = config
        self.transport = transport
        self._tcp_port = tcp_port
        self._engine: _Engine | None = None
        self._pty: _PtyLink | None = None
        self._server: asyncio.Server | None = None
        self._entered = False
        self.firmware: MarlinFirmware | None = None

    # lifecycle

    async def __aenter__(self) -> SimulatedPrinter:
        if self._entered:
            raise RuntimeError("a SimulatedPrinter can be entered only once")
        self._entered = True
        loop = asyncio.get_running_loop()
        self.firmware = MarlinFirmware(self.profile, self.config, now=loop.time())
        self._engine = _Engine(self.firmware, loop)
        try:
            if self.transport == "pty":
                self._open_pty()
            else:
                await self.serve_tcp(self._tcp_port)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop serving; safe to call twice."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()
        self._pty = None
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(OSError):
                await server.wait_closed()

    def _open_pty(self) -> None:
        engine = self._require()
        self._pty = _PtyLink(engine)
        engine.add_link(self._pty)

    async def serve_tcp(self, port: int = 0) -> int:
        """Also listen on TCP (127.0.0.1); returns the port. One client at a time."""
        engine = self._require()
        if self._server is not None:
            return self.tcp_port or 0
        try:
            self._server = await engine.loop.create_server(
                lambda: _TcpLink(engine), "127.0.0.1", port
            )
        except OSError as exc:
            raise DeviceConnectionError(f"cannot listen on 127.0.0.1:{port}: {exc}") from exc
        return self.tcp_port or 0

    # where it listens

    @property
    def port(self) -> str | None:
        """The pty slave path (``/dev/pts/N``), or None when serving TCP only."""
        pty = self._live_pty()
        return pty.path if pty is not None else None

    @property
    def tcp_port(self) -> int | None:
        if self._server is None or not self._server.sockets:
            return None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """What a host connects to: the pty path, or ``socket://127.0.0.1:PORT``."""
        pty = self._live_pty()
        if self.transport == "pty" and pty is not None:
            return pty.path
        if self.tcp_port is not None:
            return f"socket://127.0.0.1:{self.tcp_port}"
        if pty is not None:
            return pty.path
        raise LabDeviceError("the simulated printer is not listening (disconnected?)")

    # what it did

    @property
    def executed(self) -> list[str]:
        """Every command executed, once each, in order, without line number or checksum."""
        return self._require_firmware().executed

    @property
    def emergency(self) -> list[tuple[float, str]]:
        """(loop time, word) of every M108/M112/M410 the emergency parser acted on on arrival."""
        return self._require_firmware().emergency

    @property
    def state(self) -> PrinterState:
        fw = self._require_firmware()
        return fw.state(self._engine.loop.time()) if self._engine is not None else fw.state()

    # faults and hands-on actions

    def reset(self) -> None:
        """Reset the firmware (``start`` banner, line numbers from 0, buffers cleared)."""
        engine = self._require()
        engine.firmware.reset(engine.loop.time())
        engine.service()

    def disconnect(self) -> None:
        """Close the link now, as if the cable were pulled. A pty then needs ``reconnect()``."""
        self._require().drop_link()

    def reconnect(self) -> str:
        """Plug the cable back in: a fresh pty (new ``port``) after a disconnect; returns the url."""
        if self._live_pty() is None and self.transport == "pty":
            self._open_pty()
        return self.url

    def _live_pty(self) -> _PtyLink | None:
        return self._pty if self._pty is not None and not self._pty.closed else None

    def set_regulator(self, tool: int, kpa: float) -> None:
        """Turn a manual pressure regulator's knob (printers without a pressure command)."""
        engine = self._require()
        engine.firmware.set_regulator(tool, kpa)
        engine.service()

    async def wait_until(
        self, predicate: Callable[[SimulatedPrinter], bool], timeout: float = 10.0
    ) -> None:
        """Wait until ``predicate(sim)`` holds (checked whenever the firmware does something)."""
        engine = self._require()
        async with asyncio.timeout(timeout):
            await engine.wait_for(lambda: predicate(self))

    def _require(self) -> _Engine:
        if self._engine is None:
            raise LabDeviceError("the simulated printer is not running (use `async with`)")
        return self._engine

    def _require_firmware(self) -> MarlinFirmware:
        if self.firmware is None:
            raise LabDeviceError("the simulated printer has not been started")
        return self.firmware

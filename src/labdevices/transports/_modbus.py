"""Modbus links over pymodbus: TCP sockets and RTU serial lines, shared by the devices behind them.

A ``ModbusLink`` is one pymodbus client with a lock, so that devices behind one
RTU bus or one TCP gateway never interleave requests. ``acquire_link`` hands out
one link per port (reference-counted, per event loop). Every call has a timeout;
pymodbus's exceptions become ``labdevices.errors`` naming the device.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
)

from ..errors import (
    ConfigurationError,
    DeviceConnectionError,
    DeviceFault,
    DeviceTimeoutError,
    LabDeviceError,
    ProtocolError,
)
from ..profiles._modbus import ModbusConnection

__all__ = [
    "EXCEPTION_NAMES",
    "ModbusAddress",
    "ModbusExceptionResponse",
    "ModbusLink",
    "acquire_link",
    "parse_modbus_address",
    "release_link",
]

#: Modbus exception codes by number (Modbus Application Protocol v1.1b3, section 7)
EXCEPTION_NAMES = {
    1: "ILLEGAL_FUNCTION",
    2: "ILLEGAL_DATA_ADDRESS",
    3: "ILLEGAL_DATA_VALUE",
    4: "SERVER_DEVICE_FAILURE",
    5: "ACKNOWLEDGE",
    6: "SERVER_DEVICE_BUSY",
    7: "NEGATIVE_ACKNOWLEDGE",
    8: "MEMORY_PARITY_ERROR",
    10: "GATEWAY_PATH_UNAVAILABLE",
    11: "GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND",
}

_READ_FC = {"holding": 3, "input": 4, "coil": 1, "discrete": 2}


class ModbusExceptionResponse(DeviceFault):
    """The device answered with a Modbus exception response."""

    def __init__(self, message: str, *, device: str | None, exception_code: int) -> None:
        self.exception_code = exception_code
        self.exception_name = EXCEPTION_NAMES.get(exception_code, f"CODE_{exception_code}")
        super().__init__(message, device=device)


@dataclass(frozen=True)
class ModbusAddress:
    """Where a device is: ``tcp://host:port?unit=1`` or ``rtu:///dev/ttyUSB0?baudrate=19200&unit=1``."""

    kind: Literal["tcp", "rtu"]
    host: str
    port: int
    path: str
    unit: int | None
    baudrate: int | None

    @property
    def link_key(self) -> str:
        """Devices with the same key share one link (one socket or one serial port)."""
        return f"tcp://{self.host}:{self.port}" if self.kind == "tcp" else f"rtu://{self.path}"


def parse_modbus_address(address: str, device: str | None = None) -> ModbusAddress:
    """Parse a Modbus address; a bad one raises ``ConfigurationError`` naming the device."""
    parts = urlsplit(address)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}

    def bad(why: str) -> ConfigurationError:
        return ConfigurationError(
            f"bad Modbus address {address!r}: {why} "
            "(want tcp://host:port?unit=1 or rtu:///dev/ttyUSB0?baudrate=19200&unit=1)",
            device=device,
        )

    unknown = set(query) - {"unit", "baudrate"}
    if unknown:
        raise bad(f"unknown option(s) {', '.join(sorted(unknown))}")
    try:
        unit = int(query["unit"]) if "unit" in query else None
        baudrate = int(query["baudrate"]) if "baudrate" in query else None
    except ValueError as exc:
        raise bad("unit and baudrate must be integers") from exc
    if unit is not None and not 0 <= unit <= 247:
        raise bad(f"unit {unit} is outside 0…247")
    if parts.scheme == "tcp":
        try:
            port = parts.port or 502
        except ValueError as exc:
            raise bad("port is not a number") from exc
        if not parts.hostname:
            raise bad("no host")
        return ModbusAddress("tcp", parts.hostname, port, "", unit, baudrate)
    if parts.scheme == "rtu":
        path = parts.path or parts.netloc
        if not path:
            raise bad("no serial port")
        return ModbusAddress("rtu", "", 0, path, unit, baudrate)
    raise bad(f"unknown scheme {parts.scheme!r}")


# One struct per register count: a block answer is unpacked in one call.
_REGISTER_STRUCTS = [struct.Struct(f">{n}H") for n in range(126)]


def _unpack_registers(pdu: ReadHoldingRegistersResponse, data: bytes) -> None:
    count, odd = divmod(data[0], 2)
    if odd or data[0] >= len(data) or count >= len(_REGISTER_STRUCTS):
        # pymodbus's decoder drops the frame (the request then times out), as for its own classes
        raise ModbusIOException(
            f"register answer with byte count {data[0]} in {len(data)} bytes",
            function_code=pdu.function_code,
        )
    pdu.registers = list(_REGISTER_STRUCTS[count].unpack_from(data, 1))


class _HoldingRegisters(ReadHoldingRegistersResponse):
    """pymodbus's answer to function code 3, unpacked in one call instead of one per register."""

    def decode(self, data: bytes) -> None:
        _unpack_registers(self, data)


class _InputRegisters(ReadInputRegistersResponse):
    """pymodbus's answer to function code 4, unpacked in one call instead of one per register."""

    def decode(self, data: bytes) -> None:
        _unpack_registers(self, data)


class ModbusLink:
    """One pymodbus client shared by every device behind it (one socket, gateway or RTU bus).

    Requests never interleave: every request holds ``lock``, which also makes a sequence
    atomic (a write and its read-back; connecting). After a timeout the answer may still
    come, and nothing in it says which request it answers: pymodbus's own TCP server
    stamps a late answer with the transaction id of the newest request, and an RTU frame
    has none. So on TCP the connection is replaced before the next request (and before
    each retry) and a late answer lands on a closed socket; on a serial bus it is let
    through (pymodbus drops it as unrequested) before the bus carries the next request.
    """

    def __init__(self, address: ModbusAddress, settings: ModbusConnection) -> None:
        self.address = address
        self.settings = settings
        self.lock = asyncio.Lock()
        self.requests = 0
        #: TCP connections replaced after a timeout (not counted as lost links)
        self.resets = 0
        self._listeners: list[Callable[[], None]] = []
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._generation = 0
        self._suspect = False
        self._users = 0

    @property
    def key(self) -> str:
        return self.address.link_key

    @property
    def is_serial(self) -> bool:
        return self.address.kind == "rtu"

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    @property
    def shared(self) -> bool:
        """More than one device uses this link (a gateway or an RTU bus)."""
        return self._users > 1

    def on_lost(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever the link drops (the devices then reconnect)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _new_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        self._generation += 1
        client = self._make_client(self._generation)
        # pymodbus's public hook for response classes: this client's register blocks decode faster
        client.register(_HoldingRegisters)
        client.register(_InputRegisters)
        return client

    def _make_client(self, generation: int) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        s = self.settings

        def trace(connected: bool) -> None:
            self._trace_connect(connected, generation)

        # pymodbus's own reconnect is off (reconnect_delay=0): the devices reconnect with backoff.
        if self.address.kind == "tcp":
            # No pymodbus retries on TCP: a retry on the same socket could be paired with
            # the late answer to the try before; ``_request`` retries on a new connection.
            return AsyncModbusTcpClient(
                self.address.host,
                port=self.address.port,
                framer=FramerType.SOCKET,
                timeout=s.timeout_s,
                retries=0,
                reconnect_delay=0,
                trace_connect=trace,
            )
        return AsyncModbusSerialClient(
            self.address.path,
            framer=FramerType.RTU,
            baudrate=self.address.baudrate or s.baudrate,
            bytesize=s.bytesize,
            parity=s.parity,
            stopbits=s.stopbits,
            timeout=s.timeout_s,
            retries=s.retries,
            reconnect_delay=0,
            trace_connect=trace,
        )

    def _trace_connect(self, connected: bool, generation: int) -> None:
        if connected or generation != self._generation:
            return  # a replaced connection closing is not a lost link
        client = self._client
        # A request in flight would otherwise wait out its timeout on a dead socket.
        future = getattr(getattr(client, "ctx", None), "response_future", None)
        if isinstance(future, asyncio.Future) and not future.done():
            future.set_exception(ConnectionException("connection lost"))
        for listener in list(self._listeners):
            listener()

    async def connect(self, device: str) -> None:
        """Open the link unless it is open; failure raises ``DeviceConnectionError``."""
        async with self.lock:
            if self.connected and not self._suspect:
                return
            await self._open(device)

    async def _open(self, device: str) -> None:
        """Open a new client in place of the old one; the caller holds ``lock``."""
        if self._client is not None:
            self._generation += 1  # the old client's disconnect is ours, not a lost link
            self._client.close()
            self._client = None
        client = self._new_client()
        self._suspect = False
        timeout = self.settings.connect_timeout_s
        try:
            async with asyncio.timeout(timeout + 1.0):
                ok = await client.connect()
        except TimeoutError as exc:
            client.close()
            raise DeviceTimeoutError(
                f"connecting to {self.key} took longer than {timeout} s", device=device
            ) from exc
        if not ok:
            client.close()
            raise DeviceConnectionError(f"cannot connect to {self.key}", device=device)
        self._client = client
        if self.is_serial:
            # pymodbus finishes opening a serial transport on the next loop turn.
            await asyncio.sleep(0)

    async def _reset(self, device: str) -> Any:
        """A new TCP connection after a timeout; if that fails the link is lost (listeners told)."""
        self.resets += 1
        try:
            await self._open(device)
        except LabDeviceError:
            for listener in list(self._listeners):
                listener()
            raise
        return self._client

    def drop(self) -> None:
        """Close the socket or port (e.g. after repeated timeouts); listeners are told."""
        client, self._client = self._client, None
        self._suspect = False
        if client is not None and client.connected:
            self._generation += 1
            client.close()
            for listener in list(self._listeners):
                listener()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            self._generation += 1
            client.close()

    async def read(
        self, table: str, address: int, count: int, unit: int, device: str
    ) -> list[int] | list[bool]:
        """Read ``count`` registers or bits from ``table`` starting at ``address``."""
        async with self.lock:
            return await self.read_locked(table, address, count, unit, device)

    async def read_locked(
        self, table: str, address: int, count: int, unit: int, device: str
    ) -> list[int] | list[bool]:
        """``read`` for a caller that already holds ``lock`` (e.g. write then read back).

        The poll hot path: the description of the request is only formatted when
        something goes wrong.
        """
        client = self._client
        if client is None or self._suspect or not client.connected:
            client = await self._ready(device)
        self.requests += 1
        method = _READ_METHOD[table]
        try:
            response = await getattr(client, method)(address, count=count, device_id=unit)
        except (ModbusException, OSError) as exc:
            response = await self._retry(
                exc,
                device,
                lambda c: getattr(c, method)(address, count=count, device_id=unit),
                lambda: _describe_read(table, address, count, unit),
            )
        if response.function_code != _READ_FC[table]:
            what = _describe_read(table, address, count, unit)
            if response.isError():
                raise _exception_response(response, device, what)
            raise ProtocolError(
                f"{what}: answer has function code {response.function_code}", device=device
            )
        if table in ("coil", "discrete"):
            bits = list(response.bits)
            if len(bits) < count:
                what = _describe_read(table, address, count, unit)
                raise ProtocolError(f"{what}: answer holds {len(bits)} bits", device=device)
            return bits[:count]
        registers = response.registers
        if len(registers) != count:
            what = _describe_read(table, address, count, unit)
            raise ProtocolError(f"{what}: answer holds {len(registers)} registers", device=device)
        return registers  # type: ignore[no-any-return]

    async def write_locked(
        self, table: str, address: int, values: list[int] | bool, unit: int, device: str
    ) -> None:
        """Write registers (fc 6/16) or a coil (fc 5); the caller holds ``lock``."""
        what = f"writing {table} at {address} (unit {unit})"
        if table == "coil":
            on = bool(values)

            def call(client: Any) -> Any:
                return client.write_coil(address, on, device_id=unit)

        elif table != "holding" or isinstance(values, bool):
            raise ConfigurationError(f"{what}: {table} cannot be written", device=device)
        elif len(values) == 1:
            word = values[0]

            def call(client: Any) -> Any:
                return client.write_register(address, word, device_id=unit)

        else:
            words = values

            def call(client: Any) -> Any:
                return client.write_registers(address, words, device_id=unit)

        response = await self._request(device, call, lambda: what)
        if response.isError():
            raise _exception_response(response, device, what)

    async def _request(
        self, device: str, call: Callable[[Any], Any], describe: Callable[[], str]
    ) -> Any:
        """One request (and on TCP its retries, each on a new connection); the caller holds ``lock``."""
        client = self._client
        if client is None or self._suspect or not client.connected:
            client = await self._ready(device)
        self.requests += 1
        try:
            return await call(client)
        except (ModbusException, OSError) as exc:
            return await self._retry(exc, device, call, describe)

    async def _retry(
        self,
        exc: Exception,
        device: str,
        call: Callable[[Any], Any],
        describe: Callable[[], str],
    ) -> Any:
        """After a failed try: on TCP, no answer in time means retries on new connections."""
        if self.is_serial or not isinstance(exc, ModbusIOException | TimeoutError):
            raise await self._failure(exc, device, describe()) from exc
        first = exc
        # The answer may still come on this socket, so never send there again.
        self._suspect = True
        for _ in range(self.settings.retries):
            client = await self._reset(device)
            self.requests += 1
            try:
                return await call(client)
            except (ModbusException, OSError) as again:
                if not isinstance(again, ModbusIOException | TimeoutError):
                    raise await self._failure(again, device, describe()) from again
                self._suspect = True
        raise await self._failure(first, device, describe()) from first

    async def _ready(self, device: str) -> Any:
        """The client to send on: a new connection after a timeout, never a reconnect after a loss."""
        if self._suspect and self._client is not None:
            return await self._reset(device)
        # Never let pymodbus reconnect behind our backoff: report the outage instead.
        raise DeviceConnectionError(f"link {self.key} is not connected", device=device)

    async def _failure(self, exc: Exception, device: str, what: str) -> LabDeviceError:
        """The labdevices error for what pymodbus raised during a request.

        pymodbus bounds every attempt by the profile's ``timeout_s``; the lock means its
        own request lock is never waited on, so no outer timeout is needed.
        """
        s = self.settings
        if isinstance(exc, ModbusIOException | TimeoutError):
            if self.is_serial:
                # RTU frames carry no transaction id: let a late answer land (pymodbus then
                # drops it as unrequested) before the bus carries the next request.
                await asyncio.sleep(s.timeout_s / 2)
            error: LabDeviceError = DeviceTimeoutError(
                f"{what}: no answer within {s.timeout_s} s ({s.retries} retries)", device=device
            )
        elif isinstance(exc, ConnectionException):
            error = DeviceConnectionError(f"{what}: link {self.key} lost", device=device)
        elif isinstance(exc, ModbusException):
            error = ProtocolError(f"{what}: {exc}", device=device)
        else:
            error = DeviceConnectionError(f"{what}: {exc}", device=device)
        return error


_READ_METHOD = {
    "holding": "read_holding_registers",
    "input": "read_input_registers",
    "coil": "read_coils",
    "discrete": "read_discrete_inputs",
}


def _describe_read(table: str, address: int, count: int, unit: int) -> str:
    return f"reading {count} {table} at {address} (unit {unit})"


def _exception_response(response: Any, device: str, what: str) -> ModbusExceptionResponse:
    code = int(getattr(response, "exception_code", 0))
    name = EXCEPTION_NAMES.get(code, f"CODE_{code}")
    return ModbusExceptionResponse(
        f"{what}: exception response {code} {name}", device=device, exception_code=code
    )


# One registry per event loop: a link's lock and client belong to the loop that made them.
_links: dict[tuple[int, str], ModbusLink] = {}


def acquire_link(address: ModbusAddress, settings: ModbusConnection, device: str) -> ModbusLink:
    """The shared link for ``address``'s port, created on first use."""
    key = (id(asyncio.get_running_loop()), address.link_key)
    link = _links.get(key)
    if link is None:
        link = _links[key] = ModbusLink(address, settings)
    elif link.is_serial and (address.baudrate or settings.baudrate) != (
        link.address.baudrate or link.settings.baudrate
    ):
        raise ConfigurationError(
            f"{address.link_key} is already open at another baud rate by another device",
            device=device,
        )
    link._users += 1
    return link


def release_link(link: ModbusLink) -> None:
    """Give a link back; the last user closes it."""
    link._users -= 1
    if link._users <= 0:
        link.close()
        for key, value in list(_links.items()):
            if value is link:
                del _links[key]

"""The Modbus simulator answers as the Modbus Application Protocol (v1.1b3) says a server must.

Raw frames over a real socket and a real pty, so that nothing in a client library
can hide a missing or wrong answer: every function code 1–127 is answered (data or
exception 01), every quantity limit gives exception 03 one past it and data at it,
addresses outside the map give 02, and the connection stays usable after each.
"""

from __future__ import annotations

import asyncio
import os
import struct
import tty
from collections.abc import AsyncIterator

import pytest
from pymodbus.client import AsyncModbusTcpClient

from labdevices.profiles import ModbusProfile
from labdevices.sim._modbus_pdu import SUPPORTED_FUNCTIONS, crc16
from labdevices.sim.modbus import ModbusSimulator, SimUnit, StaticModel

WAIT_S = 5.0  # an upper bound on waiting for an answer, never a delay

ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE = 1, 2, 3


def full_profile() -> ModbusProfile:
    """A device with every address a maximal request can reach: 125 registers, 2000 bits each."""
    signals: dict[str, dict[str, object]] = {}
    for i in range(125):
        signals[f"h{i}"] = {"table": "holding", "address": i, "writable": True}
        signals[f"i{i}"] = {"table": "input", "address": i}
    for i in range(2000):
        signals[f"c{i}"] = {"table": "coil", "address": i, "writable": True}
        signals[f"d{i}"] = {"table": "discrete", "address": i}
    return ModbusProfile.model_validate({"name": "full", "driver": "modbus", "signals": signals})


def values(profile: ModbusProfile) -> dict[str, float | bool]:
    out: dict[str, float | bool] = {}
    for name, sig in profile.signals.items():
        i = sig.address
        out[name] = (i % 3 == 0) if sig.table in ("coil", "discrete") else 1000 + i
    return out


class RawTcp:
    """A Modbus TCP client that sends exactly the PDU it is given."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.tid = reader, writer, 0

    async def ask(self, pdu: bytes, unit: int = 1) -> bytes:
        self.tid = (self.tid + 1) & 0xFFFF
        mbap = struct.pack(">HHHB", self.tid, 0, len(pdu) + 1, unit)
        self.writer.write(mbap + pdu)
        async with asyncio.timeout(WAIT_S):
            header = await self.reader.readexactly(7)
            tid, protocol, length, answered_unit = struct.unpack(">HHHB", header)
            body = await self.reader.readexactly(length - 1)
        assert (tid, protocol, answered_unit) == (self.tid, 0, unit)
        return body


@pytest.fixture
async def sim() -> AsyncIterator[ModbusSimulator]:
    profile = full_profile()
    simulator = ModbusSimulator({1: SimUnit(profile, StaticModel(values(profile)))})
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def raw(sim: ModbusSimulator) -> AsyncIterator[RawTcp]:
    port = await sim.serve_tcp()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield RawTcp(reader, writer)
    finally:
        writer.close()
        await writer.wait_closed()


def exception(fc: int, code: int) -> bytes:
    return bytes((fc | 0x80, code))


def read(fc: int, address: int, count: int) -> bytes:
    return struct.pack(">BHH", fc, address, count)


async def still_serves(raw: RawTcp) -> None:
    assert await raw.ask(read(4, 0, 1)) == bytes((4, 2)) + struct.pack(">H", 1000)


# -- every function code ------------------------------------------------------------------

#: a well-formed request for each supported function code and its expected answer
VALID = {
    1: (read(1, 0, 10), bytes((1, 2, 0b01001001, 0b10))),
    2: (read(2, 3, 4), bytes((2, 1, 0b1001))),  # 3 and 6 are on
    3: (read(3, 5, 2), bytes((3, 4)) + struct.pack(">HH", 1005, 1006)),
    4: (read(4, 124, 1), bytes((4, 2)) + struct.pack(">H", 1124)),
    5: (struct.pack(">BHH", 5, 7, 0xFF00), struct.pack(">BHH", 5, 7, 0xFF00)),
    6: (struct.pack(">BHH", 6, 9, 4242), struct.pack(">BHH", 6, 9, 4242)),
    15: (struct.pack(">BHHBB", 15, 8, 3, 1, 0b110), struct.pack(">BHH", 15, 8, 3)),
    16: (struct.pack(">BHHBHH", 16, 20, 2, 4, 7, 8), struct.pack(">BHH", 16, 20, 2)),
    # (1010 AND 0x00F2) OR (0x0025 AND NOT 0x00F2) = 0x00F2 & 0x03F2 | 0x0005
    22: (
        struct.pack(">BHHH", 22, 10, 0x00F2, 0x0025),
        struct.pack(">BHHH", 22, 10, 0x00F2, 0x0025),
    ),
    23: (
        struct.pack(">BHHHHBH", 23, 30, 2, 31, 1, 2, 77),
        bytes((23, 4)) + struct.pack(">HH", 1030, 77),  # written before it is read
    ),
}


@pytest.mark.parametrize("fc", range(1, 128))
async def test_every_function_code_gets_an_answer(
    raw: RawTcp, sim: ModbusSimulator, fc: int
) -> None:
    if fc in SUPPORTED_FUNCTIONS:
        request, expected = VALID[fc]
        assert await raw.ask(request) == expected
    else:
        # whatever the body: the device does not implement the function
        for body in (b"", b"\0\0\0\1", bytes(range(20))):
            assert await raw.ask(bytes((fc,)) + body) == exception(fc, ILLEGAL_FUNCTION)
    await still_serves(raw)


@pytest.mark.parametrize("fc", [0, 0x80, 0x83, 0xFF])
async def test_no_function_code_is_not_a_request(
    raw: RawTcp, sim: ModbusSimulator, fc: int
) -> None:
    """0 is not a function code and 128-255 mark exception responses: nothing to answer."""
    raw.tid += 1
    raw.writer.write(struct.pack(">HHHB", raw.tid, 0, 2, 1) + bytes((fc,)))
    await still_serves(raw)  # the answer that comes is the next request's
    assert sim.garbage_frames == 1


async def test_writes_change_what_is_read(raw: RawTcp, sim: ModbusSimulator) -> None:
    await raw.ask(VALID[22][0])
    assert sim.value("h10") == (1010 & 0x00F2) | (0x0025 & ~0x00F2)
    await raw.ask(VALID[5][0])
    assert sim.value("c7") is True
    await raw.ask(struct.pack(">BHH", 5, 7, 0x0000))
    assert sim.value("c7") is False
    await raw.ask(VALID[15][0])
    assert [sim.value(f"c{i}") for i in (8, 9, 10)] == [False, True, True]


# -- quantity limits --------------------------------------------------------------------


def write_coils(address: int, count: int) -> bytes:
    size = (count + 7) // 8
    return struct.pack(">BHHB", 15, address, count, size) + bytes(size)


def write_registers(address: int, count: int) -> bytes:
    return struct.pack(">BHHB", 16, address, count, 2 * count) + bytes(2 * count)


def read_write(read_n: int, write_n: int) -> bytes:
    return struct.pack(">BHHHHB", 23, 0, read_n, 0, write_n, 2 * write_n) + bytes(2 * write_n)


@pytest.mark.parametrize(
    ("request_pdu", "ok"),
    [
        pytest.param(read(fc, 0, n), ok, id=f"fc{fc}-count{n}")
        for fc, limit in ((1, 2000), (2, 2000), (3, 125), (4, 125))
        for n, ok in ((0, False), (1, True), (limit, True), (limit + 1, False), (0xFFFF, False))
    ]
    + [
        pytest.param(write_coils(0, n), ok, id=f"fc15-count{n}")
        for n, ok in ((0, False), (1, True), (1968, True), (1969, False))
    ]
    + [
        pytest.param(write_registers(0, n), ok, id=f"fc16-count{n}")
        for n, ok in ((0, False), (1, True), (123, True), (124, False))
    ]
    + [
        pytest.param(read_write(r, w), ok, id=f"fc23-read{r}-write{w}")
        for r, w, ok in (
            (0, 1, False),
            (1, 1, True),
            (125, 1, True),
            (126, 1, False),
            (1, 0, False),
            (1, 121, True),
            (1, 122, False),
        )
    ],
)
async def test_count_boundaries(raw: RawTcp, request_pdu: bytes, ok: bool) -> None:
    fc = request_pdu[0]
    answer = await raw.ask(request_pdu)
    if ok:
        assert answer[0] == fc, answer
    else:
        assert answer == exception(fc, ILLEGAL_VALUE)
    await still_serves(raw)


@pytest.mark.parametrize(
    ("request_pdu", "code"),
    [
        pytest.param(read(3, 124, 2), ILLEGAL_ADDRESS, id="read past the map"),
        pytest.param(read(3, 0xFFFF, 2), ILLEGAL_ADDRESS, id="read past 65535"),
        pytest.param(read(1, 1999, 2), ILLEGAL_ADDRESS, id="coils past the map"),
        pytest.param(read(3, 500, 126), ILLEGAL_VALUE, id="quantity before address"),
        pytest.param(struct.pack(">BHH", 5, 0, 0x1234), ILLEGAL_VALUE, id="coil value 0x1234"),
        pytest.param(struct.pack(">BHH", 5, 0, 0x00FF), ILLEGAL_VALUE, id="coil value 0x00FF"),
        pytest.param(struct.pack(">BHH", 5, 2000, 0xFF00), ILLEGAL_ADDRESS, id="coil not mapped"),
        pytest.param(struct.pack(">BHH", 6, 125, 1), ILLEGAL_ADDRESS, id="register not mapped"),
        pytest.param(
            struct.pack(">BHHBH", 16, 0, 2, 2, 1), ILLEGAL_VALUE, id="byte count disagrees"
        ),
        pytest.param(
            struct.pack(">BHHBB", 15, 0, 9, 1, 0), ILLEGAL_VALUE, id="coil byte count short"
        ),
        pytest.param(bytes((3, 0, 0)), ILLEGAL_VALUE, id="request cut short"),
        pytest.param(read(3, 0, 1) + b"\0", ILLEGAL_VALUE, id="request too long"),
        pytest.param(
            struct.pack(">BHHH", 22, 200, 0, 0), ILLEGAL_ADDRESS, id="mask write unmapped"
        ),
    ],
)
async def test_bad_requests_get_their_exception(raw: RawTcp, request_pdu: bytes, code: int) -> None:
    assert await raw.ask(request_pdu) == exception(request_pdu[0], code)
    await still_serves(raw)


async def test_pymodbus_client_mask_write_read_write_and_unsupported(sim: ModbusSimulator) -> None:
    """What crashed the old handler (22, 23) or got pymodbus's defaults (17) from a real client."""
    port = await sim.serve_tcp()
    client = AsyncModbusTcpClient("127.0.0.1", port=port, reconnect_delay=0, timeout=WAIT_S)
    assert await client.connect()
    try:
        mask = await client.mask_write_register(
            address=40, and_mask=0x00FF, or_mask=0x0100, device_id=1
        )
        assert not mask.isError()
        assert sim.value("h40") == (1040 & 0x00FF) | 0x0100
        rw = await client.readwrite_registers(
            read_address=40, read_count=2, write_address=41, values=[5], device_id=1
        )
        assert rw.registers == [(1040 & 0x00FF) | 0x0100, 5]
        ident = await client.report_device_id(device_id=1)
        assert ident.isError() and ident.exception_code == ILLEGAL_FUNCTION
        diag = await client.diag_read_diagnostic_register(device_id=1)
        assert diag.isError() and diag.exception_code == ILLEGAL_FUNCTION
    finally:
        client.close()


async def test_not_modbus_closes_the_connection(sim: ModbusSimulator) -> None:
    port = await sim.serve_tcp()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(WAIT_S):
        assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()
    assert sim.garbage_frames == 1


# -- RTU over a pty ---------------------------------------------------------------------


class RawRtu:
    """Raw RTU frames on the pty's client end."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)
        self.received = asyncio.Queue[bytes]()
        asyncio.get_running_loop().add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        self.received.put_nowait(os.read(self.fd, 4096))

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.fd)
        os.close(self.fd)

    def send(self, unit: int, pdu: bytes, *, good_crc: bool = True) -> None:
        body = bytes((unit,)) + pdu
        crc = crc16(body) ^ (0 if good_crc else 0x5555)
        os.write(self.fd, body + crc.to_bytes(2, "little"))

    async def answer(self, size: int) -> bytes:
        data = b""
        async with asyncio.timeout(WAIT_S):
            while len(data) < size:
                data += await self.received.get()
        assert crc16(data[:-2]) == int.from_bytes(data[-2:], "little")
        return data[1:-2]


@pytest.fixture
async def rtu(sim: ModbusSimulator) -> AsyncIterator[RawRtu]:
    client = RawRtu(await sim.serve_rtu())
    try:
        yield client
    finally:
        client.close()


@pytest.mark.parametrize("fc", [7, 8, 11, 17, 20, 21, 24, 43, 100, 127])
async def test_rtu_unsupported_function_is_exception_01(rtu: RawRtu, fc: int) -> None:
    rtu.send(1, bytes((fc,)) + (b"\0\0\0\0" if fc == 8 else b""))
    assert await rtu.answer(5) == exception(fc, ILLEGAL_FUNCTION)


async def test_rtu_boundaries_and_bad_frames(rtu: RawRtu, sim: ModbusSimulator) -> None:
    rtu.send(1, read(3, 0, 126))
    assert await rtu.answer(5) == exception(3, ILLEGAL_VALUE)
    rtu.send(1, struct.pack(">BHH", 5, 0, 0x1234))
    assert await rtu.answer(5) == exception(5, ILLEGAL_VALUE)
    rtu.send(1, VALID[23][0])
    assert await rtu.answer(3 + 4 + 2) == VALID[23][1]
    # A corrupted frame and a frame for another unit are not answered; the next one is.
    rtu.send(1, read(3, 0, 1), good_crc=False)
    rtu.send(9, read(3, 0, 1))
    rtu.send(1, read(3, 1, 1))
    assert await rtu.answer(7) == bytes((3, 2)) + struct.pack(">H", 1001)
    assert rtu.received.empty()
    assert sim.garbage_frames >= 1

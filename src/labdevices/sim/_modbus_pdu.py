"""The simulator's Modbus server core, sans I/O: request PDU in, response PDU out; RTU frame bounds.

It answers as the Modbus Application Protocol (v1.1b3) says a server must: the
data-access function codes 1–6, 15, 16, 22 and 23 on the unit's four tables, and
exception 01 (ILLEGAL FUNCTION) for every other code. Checks run in the spec's
order: function code (01), then quantity and structure (03), then address (02).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

__all__ = [
    "ILLEGAL_ADDRESS",
    "ILLEGAL_FUNCTION",
    "ILLEGAL_VALUE",
    "SUPPORTED_FUNCTIONS",
    "Tables",
    "crc16",
    "exception_pdu",
    "rtu_frame_length",
    "rtu_next_frame",
    "serve_pdu",
]

ILLEGAL_FUNCTION = 1
ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3

#: quantity limits per function code (spec section 6)
MAX_READ_BITS = 2000  # fc 1, 2
MAX_READ_REGISTERS = 125  # fc 3, 4, 23 (read part)
MAX_WRITE_BITS = 1968  # fc 15
MAX_WRITE_REGISTERS = 123  # fc 16
MAX_READ_WRITE_REGISTERS = 121  # fc 23 (write part)

_READ_TABLE = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}
SUPPORTED_FUNCTIONS = frozenset({1, 2, 3, 4, 5, 6, 15, 16, 22, 23})


class Tables(Protocol):
    """One unit's four tables: a read or a write either succeeds or names its exception code."""

    def read(self, table: str, address: int, count: int) -> list[int] | int: ...
    def write(self, table: str, address: int, words: list[int]) -> int | None: ...


def exception_pdu(function_code: int, code: int) -> bytes:
    return bytes((function_code | 0x80, code))


def _u16(data: bytes, at: int) -> int:
    return (data[at] << 8) | data[at + 1]


def _pack_bits(bits: list[int]) -> bytes:
    out = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def _unpack_bits(data: bytes, count: int) -> list[int]:
    return [(data[i // 8] >> (i % 8)) & 1 for i in range(count)]


def _words(data: bytes) -> list[int]:
    return [_u16(data, i) for i in range(0, len(data), 2)]


def _registers(words: list[int]) -> bytes:
    return b"".join(w.to_bytes(2, "big") for w in words)


def serve_pdu(tables: Tables, pdu: bytes) -> bytes:
    """The response PDU (function code and data) to one request PDU."""
    fc = pdu[0]
    data = pdu[1:]
    if fc not in SUPPORTED_FUNCTIONS:
        return exception_pdu(fc, ILLEGAL_FUNCTION)
    handler = _HANDLERS[fc]
    return handler(tables, fc, data)


def _read(tables: Tables, fc: int, data: bytes) -> bytes:
    limit = MAX_READ_BITS if fc in (1, 2) else MAX_READ_REGISTERS
    if len(data) != 4 or not 1 <= (count := _u16(data, 2)) <= limit:
        return exception_pdu(fc, ILLEGAL_VALUE)
    address = _u16(data, 0)
    if address + count > 0x10000:
        return exception_pdu(fc, ILLEGAL_ADDRESS)
    values = tables.read(_READ_TABLE[fc], address, count)
    if isinstance(values, int):
        return exception_pdu(fc, values)
    body = _pack_bits(values) if fc in (1, 2) else _registers(values)
    return bytes((fc, len(body))) + body


def _write_coil(tables: Tables, fc: int, data: bytes) -> bytes:
    if len(data) != 4 or (value := _u16(data, 2)) not in (0x0000, 0xFF00):
        return exception_pdu(fc, ILLEGAL_VALUE)
    code = tables.write("coil", _u16(data, 0), [1 if value else 0])
    return exception_pdu(fc, code) if code else bytes((fc,)) + data


def _write_register(tables: Tables, fc: int, data: bytes) -> bytes:
    if len(data) != 4:
        return exception_pdu(fc, ILLEGAL_VALUE)
    code = tables.write("holding", _u16(data, 0), [_u16(data, 2)])
    return exception_pdu(fc, code) if code else bytes((fc,)) + data


def _write_coils(tables: Tables, fc: int, data: bytes) -> bytes:
    if len(data) < 5:
        return exception_pdu(fc, ILLEGAL_VALUE)
    address, count, size = _u16(data, 0), _u16(data, 2), data[4]
    if not 1 <= count <= MAX_WRITE_BITS or size != (count + 7) // 8 or len(data) != 5 + size:
        return exception_pdu(fc, ILLEGAL_VALUE)
    if address + count > 0x10000:
        return exception_pdu(fc, ILLEGAL_ADDRESS)
    code = tables.write("coil", address, _unpack_bits(data[5:], count))
    return exception_pdu(fc, code) if code else bytes((fc,)) + data[:4]


def _write_registers(tables: Tables, fc: int, data: bytes) -> bytes:
    if len(data) < 5:
        return exception_pdu(fc, ILLEGAL_VALUE)
    address, count, size = _u16(data, 0), _u16(data, 2), data[4]
    if not 1 <= count <= MAX_WRITE_REGISTERS or size != 2 * count or len(data) != 5 + size:
        return exception_pdu(fc, ILLEGAL_VALUE)
    if address + count > 0x10000:
        return exception_pdu(fc, ILLEGAL_ADDRESS)
    code = tables.write("holding", address, _words(data[5:]))
    return exception_pdu(fc, code) if code else bytes((fc,)) + data[:4]


def _mask_write(tables: Tables, fc: int, data: bytes) -> bytes:
    if len(data) != 6:
        return exception_pdu(fc, ILLEGAL_VALUE)
    address, and_mask, or_mask = _u16(data, 0), _u16(data, 2), _u16(data, 4)
    current = tables.read("holding", address, 1)
    if isinstance(current, int):
        return exception_pdu(fc, current)
    value = (current[0] & and_mask) | (or_mask & ~and_mask & 0xFFFF)
    code = tables.write("holding", address, [value])
    return exception_pdu(fc, code) if code else bytes((fc,)) + data


def _read_write(tables: Tables, fc: int, data: bytes) -> bytes:
    if len(data) < 9:
        return exception_pdu(fc, ILLEGAL_VALUE)
    read_at, read_n, write_at, write_n, size = (
        _u16(data, 0),
        _u16(data, 2),
        _u16(data, 4),
        _u16(data, 6),
        data[8],
    )
    if (
        not 1 <= read_n <= MAX_READ_REGISTERS
        or not 1 <= write_n <= MAX_READ_WRITE_REGISTERS
        or size != 2 * write_n
        or len(data) != 9 + size
    ):
        return exception_pdu(fc, ILLEGAL_VALUE)
    if read_at + read_n > 0x10000 or write_at + write_n > 0x10000:
        return exception_pdu(fc, ILLEGAL_ADDRESS)
    # The spec's order: the write is carried out before the read.
    code = tables.write("holding", write_at, _words(data[9:]))
    if code:
        return exception_pdu(fc, code)
    values = tables.read("holding", read_at, read_n)
    if isinstance(values, int):
        return exception_pdu(fc, values)
    body = _registers(values)
    return bytes((fc, len(body))) + body


_HANDLERS: dict[int, Callable[[Tables, int, bytes], bytes]] = {
    1: _read,
    2: _read,
    3: _read,
    4: _read,
    5: _write_coil,
    6: _write_register,
    15: _write_coils,
    16: _write_registers,
    22: _mask_write,
    23: _read_write,
}


# -- RTU framing ---------------------------------------------------------------------------


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """The Modbus RTU CRC (polynomial 0xA001, initial 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def _crc_ok(frame: bytes) -> bool:
    return crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")


#: RTU request length (unit … CRC) for fixed-size requests; 15/16/23 depend on their byte count
_FIXED = {1: 8, 2: 8, 3: 8, 4: 8, 5: 8, 6: 8, 22: 10}
_COUNTED = {15: 7, 16: 7, 23: 11}  # header length up to and including the byte count
MAX_RTU_FRAME = 256


def rtu_frame_length(buffer: bytes) -> int | None:
    """Length of the request frame at the start of ``buffer``: > 0 a whole frame with a good
    CRC, < 0 that many bytes are garbage, ``None`` if more bytes are needed.

    A real RTU server finds frame ends by line silence (3.5 characters), which a pty
    does not carry: requests of the codes served have known lengths, others end at
    the first good CRC.
    """
    if len(buffer) < 4:
        return None
    fc = buffer[1]
    if fc in _FIXED or fc in _COUNTED:
        if fc in _FIXED:
            length = _FIXED[fc]
        else:
            header = _COUNTED[fc]
            if len(buffer) < header:
                return None
            length = header + buffer[header - 1] + 2
        if len(buffer) < length:
            return None
        return length if _crc_ok(buffer[:length]) else -1
    for length in range(4, min(len(buffer), MAX_RTU_FRAME) + 1):
        if _crc_ok(buffer[:length]):
            return length
    return -1 if len(buffer) >= MAX_RTU_FRAME else None


def rtu_next_frame(buffer: bytes) -> tuple[int, int] | None:
    """``(skip, length)``: the next good request frame follows ``skip`` garbage bytes;
    ``None`` if more bytes are needed (or the line's silence has to clear the garbage).

    After garbage, the next frame is found where a request of a served function code
    starts with a good CRC: bytes written back to back carry no silence between them.
    """
    length = rtu_frame_length(buffer)
    if length is not None and length > 0:
        return 0, length
    for skip in range(1, len(buffer) - 3):
        if buffer[skip + 1] in _FIXED or buffer[skip + 1] in _COUNTED:
            found = rtu_frame_length(buffer[skip:])
            if found is not None and found > 0:
                return skip, found
    return None

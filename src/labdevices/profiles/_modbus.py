"""Profiles of Modbus TCP/RTU devices (incubators, bioreactors): register map and link settings.

A signal names its table (holding/input registers, coils, discrete inputs), its
address, its data type with word and byte order, and the linear map from raw
register value to engineering units (``value = raw * scale + offset``). The
pure register codec lives here too, so the driver and the simulators encode a
profile the same way.
"""

from __future__ import annotations

import math
import struct
from typing import Literal, get_args

from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ErrorType

from ..files import StrictModel
from ._base import ProfileBase, SignalBase

__all__ = [
    "DataType",
    "ModbusConnection",
    "ModbusProfile",
    "ModbusSignal",
    "Table",
]

Table = Literal["holding", "input", "coil", "discrete"]
DataType = Literal["bool", "int16", "uint16", "int32", "uint32", "float32"]
Order = Literal["big", "little"]

#: registers per data type
WIDTH: dict[str, int] = {
    "bool": 1,
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
}
# struct codes for the big-endian 16/32-bit value behind the registers
_STRUCT = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f"}
_RAW_RANGE: dict[str, tuple[float, float]] = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "float32": (-3.4e38, 3.4e38),
}
BIT_TABLES = ("coil", "discrete")


class ModbusSignal(SignalBase):
    """A signal backed by one or two Modbus registers, a coil or a discrete input.

    ``type`` defaults to ``bool`` for coils and discrete inputs and ``uint16`` for
    registers. ``word_order`` is the order of the two registers of a 32-bit value
    (``big``: high word first), ``byte_order`` the order of the bytes inside each
    register (``big`` is the Modbus standard). ``deadband`` (engineering units):
    a new value is published only when it moved by more than this. ``poll_interval_s``
    overrides the profile's interval for this signal.
    """

    table: Table = "holding"
    type: DataType | None = None
    address: int = Field(ge=0, le=65535, description="0-based register/bit address")
    word_order: Order = "big"
    byte_order: Order = "big"
    scale: float = Field(default=1.0, description="engineering value = raw * scale + offset")
    offset: float = 0.0
    poll_interval_s: float | None = Field(default=None, ge=0)
    deadband: float = Field(default=0.0, ge=0)

    @field_validator("table")
    @classmethod
    def _table_writable(cls, table: Table, info: ValidationInfo) -> Table:
        if table in ("input", "discrete") and info.data.get("writable"):
            what = "input registers" if table == "input" else "discrete inputs"
            raise PydanticCustomError(
                "modbus_read_only",
                "{what} are read-only in Modbus; this signal cannot be writable = true",
                {"what": what},
            )
        return table

    @field_validator("type")
    @classmethod
    def _type_fits_table(cls, type_: DataType | None, info: ValidationInfo) -> DataType | None:
        table = info.data.get("table")
        if type_ is None or table is None:
            return type_
        if table in BIT_TABLES and type_ != "bool":
            raise PydanticCustomError(
                "modbus_type", "a {table} holds one bit: type must be 'bool'", {"table": table}
            )
        if table not in BIT_TABLES and type_ == "bool":
            raise PydanticCustomError(
                "modbus_type",
                "type 'bool' is for coils and discrete inputs, not {table} registers",
                {"table": table},
            )
        return type_

    @field_validator("address")
    @classmethod
    def _address_fits(cls, address: int, info: ValidationInfo) -> int:
        width = WIDTH[_resolve_type(info.data.get("table", "holding"), info.data.get("type"))]
        if address + width - 1 > 65535:
            raise PydanticCustomError(
                "modbus_address",
                "a {width}-register value at {address} runs past the last address 65535",
                {"width": width, "address": address},
            )
        return address

    @field_validator("scale")
    @classmethod
    def _scale_nonzero(cls, scale: float) -> float:
        if scale == 0 or not math.isfinite(scale):
            raise PydanticCustomError("modbus_scale", "scale must be a finite, non-zero number", {})
        return scale

    @model_validator(mode="after")
    def _limits_representable(self) -> ModbusSignal:
        if self.dtype == "bool":
            return self
        lo, hi = _RAW_RANGE[self.dtype]
        e1, e2 = lo * self.scale + self.offset, hi * self.scale + self.offset
        elo, ehi = min(e1, e2), max(e1, e2)
        for name in ("min", "max"):
            value = getattr(self, name)
            if value is not None and not elo <= value <= ehi:
                raise PydanticCustomError(
                    "modbus_limit",
                    "{name} = {value} cannot be encoded as {dtype} with scale {scale} and "
                    "offset {offset} (range {elo} … {ehi})",
                    {
                        "name": name,
                        "value": value,
                        "dtype": self.dtype,
                        "scale": self.scale,
                        "offset": self.offset,
                        # pydantic fills in names only, no format specs
                        "elo": f"{elo:g}",
                        "ehi": f"{ehi:g}",
                    },
                )
        return self

    # -- codec (pure, no I/O) -------------------------------------------------
    @property
    def dtype(self) -> DataType:
        """The data type, with the table's default applied."""
        return _resolve_type(self.table, self.type)

    @property
    def width(self) -> int:
        """Registers (or bits) this signal occupies."""
        return WIDTH[self.dtype]

    def decode(self, registers: list[int]) -> float:
        """Engineering value from this signal's ``width`` raw registers."""
        dtype = self.dtype
        raw = registers_to_raw(registers, dtype, self.word_order, self.byte_order)
        if self.scale == 1.0 and self.offset == 0.0:
            return raw  # integers stay integers
        return raw * self.scale + self.offset

    def encode(self, value: float) -> list[int]:
        """Raw registers for an engineering value (rounded to the nearest step, clamped)."""
        dtype = self.dtype
        raw: float = (value - self.offset) / self.scale
        if dtype != "float32":
            lo, hi = _RAW_RANGE[dtype]
            raw = min(max(round(raw), lo), hi)
        return raw_to_registers(raw, dtype, self.word_order, self.byte_order)

    def resolution(self) -> float:
        """The smallest step this signal can represent (0 for float32)."""
        return 0.0 if self.dtype == "float32" else abs(self.scale)


def _resolve_type(table: str, type_: str | None) -> DataType:
    if type_ is not None:
        return type_  # type: ignore[return-value]
    return "bool" if table in BIT_TABLES else "uint16"


def registers_to_raw(registers: list[int], dtype: str, word_order: str, byte_order: str) -> float:
    """Raw number held by 1 or 2 registers (Modbus data is big-endian unless told otherwise)."""
    regs = registers if word_order == "big" else registers[::-1]
    if byte_order == "little":
        regs = [((r & 0xFF) << 8) | (r >> 8) for r in regs]
    data = b"".join(r.to_bytes(2, "big") for r in regs)
    value: float = struct.unpack(">" + _STRUCT[dtype], data)[0]
    return value


def raw_to_registers(raw: float, dtype: str, word_order: str, byte_order: str) -> list[int]:
    """Registers holding a raw number (inverse of ``registers_to_raw``)."""
    code = _STRUCT[dtype]
    data = struct.pack(">" + code, raw if code == "f" else int(raw))
    regs = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if byte_order == "little":
        regs = [((r & 0xFF) << 8) | (r >> 8) for r in regs]
    return regs if word_order == "big" else regs[::-1]


class ModbusConnection(StrictModel):
    """Link settings and polling defaults; an address's query string may override ``unit``."""

    unit: int = Field(default=1, ge=0, le=247, description="default Modbus unit (slave) id")
    timeout_s: float = Field(default=1.0, gt=0, description="wait for one answer")
    retries: int = Field(default=1, ge=0, le=10, description="resends after a timeout")
    connect_timeout_s: float = Field(default=5.0, gt=0)
    max_registers_per_request: int = Field(default=125, ge=1, le=125)
    max_bits_per_request: int = Field(default=2000, ge=1, le=2000)
    max_gap: int = Field(
        default=0,
        ge=0,
        le=124,
        description="unused registers a block read may span (0: only truly adjacent signals)",
    )
    poll_interval_s: float = Field(default=1.0, ge=0, description="0: poll as fast as answered")
    timeouts_before_reconnect: int = Field(
        default=3,
        ge=1,
        description="unanswered requests in a row after which the device is offline "
        "(and a TCP link reopened)",
    )
    reconnect_min_s: float = Field(default=0.1, gt=0)
    reconnect_max_s: float = Field(default=10.0, gt=0)
    baudrate: int = Field(default=19200, gt=0, description="RTU only")
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8

    @model_validator(mode="after")
    def _backoff_ordered(self) -> ModbusConnection:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError(
                f"reconnect_min_s ({self.reconnect_min_s}) is greater than "
                f"reconnect_max_s ({self.reconnect_max_s})"
            )
        return self


class ModbusProfile(ProfileBase):
    """A Modbus TCP/RTU device: connection defaults and named register signals."""

    driver: Literal["modbus"]
    connection: ModbusConnection = ModbusConnection()
    signals: dict[str, ModbusSignal] = Field(default_factory=dict)

    @field_validator("signals", mode="wrap")
    @classmethod
    def _no_overlap(
        cls, value: object, handler: ValidatorFunctionWrapHandler
    ) -> dict[str, ModbusSignal]:
        """Every overlap of two signals, reported beside every other problem of the signals."""
        try:
            signals: dict[str, ModbusSignal] = handler(value)
        except ValidationError as exc:
            # The signals that are valid on their own may still overlap: say so too.
            overlaps = _overlaps(_valid_signals(value))
            if not overlaps:
                raise
            raise ValidationError.from_exception_data(
                exc.title, [*map(_line_error, exc.errors()), *overlaps]
            ) from None
        overlaps = _overlaps(signals)
        if overlaps:
            raise ValidationError.from_exception_data("signals", overlaps)
        return signals


def _valid_signals(value: object) -> dict[str, ModbusSignal]:
    if not isinstance(value, dict):
        return {}
    out = {}
    for name, raw in value.items():
        try:
            out[str(name)] = ModbusSignal.model_validate(raw)
        except ValidationError:
            continue
    return out


def _overlaps(signals: dict[str, ModbusSignal]) -> list[InitErrorDetails]:
    """One error per signal that reuses a register (or bit) of an earlier signal, in file order."""
    owner: dict[tuple[str, int], str] = {}
    errors: list[InitErrorDetails] = []
    for name, sig in signals.items():
        reported: set[str] = set()
        for addr in range(sig.address, sig.address + sig.width):
            other = owner.get((sig.table, addr))
            if other is None:
                owner[(sig.table, addr)] = name
                continue
            if other in reported:
                continue
            reported.add(other)
            o = signals[other]
            errors.append(
                {
                    "type": PydanticCustomError(
                        "modbus_overlap",
                        "{name}.address = {address}: {what} {addr} is already "
                        "used by {other} ({otype} at {oaddr}–{oend})",
                        {
                            "name": name,
                            "address": sig.address,
                            "what": _ITEM_NAME[sig.table],
                            "addr": addr,
                            "other": other,
                            "otype": o.dtype,
                            "oaddr": o.address,
                            "oend": o.address + o.width - 1,
                        },
                    ),
                    "loc": (),
                    "input": sig.address,
                }
            )
    return errors


_ITEM_NAME = {
    "holding": "holding register",
    "input": "input register",
    "coil": "coil",
    "discrete": "discrete input",
}
_BUILTIN_ERRORS = frozenset(get_args(ErrorType))


def _line_error(err: ErrorDetails) -> InitErrorDetails:
    """An error pydantic reported, in the form that builds a ``ValidationError`` again."""
    kind: str | PydanticCustomError = err["type"]
    if kind not in _BUILTIN_ERRORS:
        kind = PydanticCustomError(err["type"], err["msg"])
    line: InitErrorDetails = {"type": kind, "loc": err["loc"], "input": err["input"]}
    if "ctx" in err and not isinstance(kind, PydanticCustomError):
        line["ctx"] = err["ctx"]
    return line

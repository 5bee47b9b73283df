"""Transports: serial (pyserial, ptys, socket://), Modbus (pymodbus), OPC UA (asyncua).

The Modbus and OPC UA modules import their libraries on first use of a name from
them, so that a printer-only program does not pay for pymodbus and asyncua.
"""

from typing import TYPE_CHECKING, Any

from ._serial import SerialTransport

if TYPE_CHECKING:
    from ._modbus import (
        EXCEPTION_NAMES,
        ModbusAddress,
        ModbusExceptionResponse,
        ModbusLink,
        acquire_link,
        parse_modbus_address,
        release_link,
    )

__all__ = [
    "EXCEPTION_NAMES",
    "ModbusAddress",
    "ModbusExceptionResponse",
    "ModbusLink",
    "SerialTransport",
    "acquire_link",
    "parse_modbus_address",
    "release_link",
]

_MODBUS = set(__all__) - {"SerialTransport"}


def __getattr__(name: str) -> Any:
    if name in _MODBUS:
        from . import _modbus

        return getattr(_modbus, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Transports: serial (pyserial, ptys, socket://), Modbus (pymodbus), OPC UA (asyncua)."""

from ._serial import SerialTransport

__all__ = ["SerialTransport"]

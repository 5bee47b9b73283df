"""Devices: the shared lifecycle and the protocol drivers (gcode, modbus, opcua)."""

from ._base import Device, DeviceState, Quality, Sample

__all__ = ["Device", "DeviceState", "Quality", "Sample"]

"""Devices: the shared lifecycle and the protocol drivers (gcode, modbus, opcua)."""

from ._base import Device, DeviceState, Quality, Sample, SampleBatch
from ._factory import create_device

__all__ = ["Device", "DeviceState", "Quality", "Sample", "SampleBatch", "create_device"]

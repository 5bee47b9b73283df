"""Create the right driver for a profile and an address."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigurationError
from ..profiles import GcodeProfile, ModbusProfile, OpcUaProfile
from ._base import Device

__all__ = ["create_device"]


def create_device(
    name: str, profile: GcodeProfile | ModbusProfile | OpcUaProfile, address: str, **options: Any
) -> Device[Any]:
    """A device of the driver the profile names, at ``address``.

    Addresses: gcode — a serial port path or ``socket://host:port``; modbus —
    ``tcp://host:port?unit=1`` or ``rtu:///dev/ttyUSB0?baudrate=19200&unit=1``;
    opcua — ``opc.tcp://host:port/path``.
    """
    if isinstance(profile, GcodeProfile):
        from .gcode import GcodePrinter

        return GcodePrinter(name, profile, address, **options)
    if isinstance(profile, ModbusProfile):
        from .modbus import ModbusDevice

        return ModbusDevice(name, profile, address, **options)
    if isinstance(profile, OpcUaProfile):
        from .opcua import OpcUaDevice

        return OpcUaDevice(name, profile, address, **options)
    raise ConfigurationError(f"{name}: no driver for profile {profile.name!r}", device=name)

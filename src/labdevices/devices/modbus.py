"""modbus driver (placeholder until implemented)."""

from __future__ import annotations

from typing import Any

from ..profiles import ModbusProfile
from ._base import Device, Sample

__all__ = ["ModbusDevice"]


class ModbusDevice(Device[ModbusProfile]):
    def __init__(self, name: str, profile: ModbusProfile, address: str, **options: Any) -> None:
        super().__init__(name, profile)
        self.address = address

    async def _open(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        pass

    async def read(self, signal: str) -> Sample:
        raise NotImplementedError

    async def write(self, signal: str, value: float) -> None:
        raise NotImplementedError

"""Profiles of Modbus TCP/RTU devices (incubators, bioreactors). Fleshed out by the Modbus driver."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import ProfileBase, SignalBase

__all__ = ["ModbusProfile", "ModbusSignal"]


class ModbusSignal(SignalBase):
    """A signal backed by one or two Modbus registers, a coil or a discrete input."""

    table: Literal["holding", "input", "coil", "discrete"] = "holding"
    address: int = Field(ge=0, le=65535)


class ModbusProfile(ProfileBase):
    driver: Literal["modbus"]
    signals: dict[str, ModbusSignal] = Field(default_factory=dict)

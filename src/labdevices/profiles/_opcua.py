"""Profiles of OPC UA devices (sensor hubs). Fleshed out by the OPC UA driver."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import ProfileBase, SignalBase

__all__ = ["OpcUaProfile", "OpcUaSignal"]


class OpcUaSignal(SignalBase):
    """A signal backed by an OPC UA node."""

    node: str = Field(min_length=1, description="node id, e.g. ns=2;s=pH")


class OpcUaProfile(ProfileBase):
    driver: Literal["opcua"]
    signals: dict[str, OpcUaSignal] = Field(default_factory=dict)

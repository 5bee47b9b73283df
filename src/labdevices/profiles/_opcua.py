"""Profiles of OPC UA devices (sensor hubs): nodes, subscriptions, methods, security.

Node ids are OPC UA strings (``ns=2;s=pH``), or ``nsu=<namespace uri>;s=pH`` so a
profile does not depend on the namespace index a server happens to assign; a
browse path (names under the Objects folder, in the profile's ``namespace``) is
the alternative to a node id.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from ..errors import LimitViolation
from ..files import StrictModel
from ._base import ProfileBase, SignalBase

__all__ = [
    "OpcUaArgument",
    "OpcUaConnection",
    "OpcUaMethod",
    "OpcUaNodeRef",
    "OpcUaProfile",
    "OpcUaSecurity",
    "OpcUaSignal",
    "OpcUaSubscription",
    "UaDataType",
    "coerce_value",
]

#: OPC UA built-in scalar types a profile may use for values and method arguments
UaDataType = Literal[
    "Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64",
    "Float", "Double", "String",
]  # fmt: skip

_INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "SByte": (-(2**7), 2**7 - 1),
    "Byte": (0, 2**8 - 1),
    "Int16": (-(2**15), 2**15 - 1),
    "UInt16": (0, 2**16 - 1),
    "Int32": (-(2**31), 2**31 - 1),
    "UInt32": (0, 2**32 - 1),
    "Int64": (-(2**63), 2**63 - 1),
    "UInt64": (0, 2**64 - 1),
}


#: ns=2;s=pH, nsu=urn:x;s=pH, i=2258, g=<guid>, b=<base64>
NODE_ID_PATTERN = r"^(ns=\d+;|nsu=[^;]+;)?(i=\d+|s=.+|g=[0-9A-Fa-f-]{36}|b=.+)$"


def coerce_value(data_type: str, value: object) -> bool | int | float | str:
    """``value`` as the Python type of an OPC UA ``data_type``; ``ValueError`` says why not."""
    if data_type == "String":
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
        return value
    if data_type == "Boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        raise ValueError(f"expected a boolean, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {value!r}")
    if data_type in _INTEGER_RANGES:
        if not float(value).is_integer():
            raise ValueError(f"{data_type} needs a whole number, got {value!r}")
        lo, hi = _INTEGER_RANGES[data_type]
        if not lo <= value <= hi:
            raise ValueError(f"{value} does not fit in {data_type} ({lo}..{hi})")
        return int(value)
    if math.isnan(value):
        raise ValueError("NaN is not a number")
    return float(value)


class OpcUaNodeRef(StrictModel):
    """Either a node id or a browse path locates a node."""

    node: str | None = Field(
        default=None,
        pattern=NODE_ID_PATTERN,
        description="node id: ns=2;s=pH, nsu=urn:x;s=pH, i=2258",
    )
    browse_path: list[str] | None = Field(
        default=None,
        min_length=1,
        description="browse names under Objects, in the profile namespace ('0:Name' for the standard one)",
    )

    @model_validator(mode="after")
    def _one_locator(self) -> OpcUaNodeRef:
        if (self.node is None) == (self.browse_path is None):
            raise ValueError("give exactly one of `node` or `browse_path`")
        return self


class OpcUaSignal(SignalBase):
    """A signal backed by an OPC UA variable node.

    ``sampling_interval_ms`` and ``deadband`` (absolute, in the signal's unit)
    override the profile's subscription defaults for this signal; ``subscribe =
    false`` leaves it out of the data-change subscription (read on demand only).
    """

    node: str | None = Field(
        default=None,
        pattern=NODE_ID_PATTERN,
        description="node id: ns=2;s=pH, nsu=urn:x;s=pH, i=2258",
    )
    browse_path: list[str] | None = Field(default=None, min_length=1)
    data_type: UaDataType = "Double"
    subscribe: bool = True
    sampling_interval_ms: float | None = Field(default=None, ge=0)
    deadband: float | None = Field(default=None, ge=0, description="absolute, in `unit`")

    @model_validator(mode="after")
    def _one_locator(self) -> OpcUaSignal:
        if (self.node is None) == (self.browse_path is None):
            raise ValueError("give exactly one of `node` or `browse_path`")
        if self.deadband is not None and self.data_type in ("Boolean", "String"):
            raise ValueError(f"a deadband needs a numeric data_type, not {self.data_type}")
        return self


class OpcUaArgument(StrictModel):
    """One input argument of a method, checked before the call reaches the wire."""

    name: str = Field(min_length=1)
    type: UaDataType = "Double"
    unit: str = ""
    min: float | None = None
    max: float | None = None

    def convert(self, device: str, method: str, value: object) -> bool | int | float | str:
        try:
            out = coerce_value(self.type, value)
        except ValueError as exc:
            raise LimitViolation(
                f"{method}({self.name}): {exc}", device=device, signal=f"{method}.{self.name}"
            ) from None
        if isinstance(out, int | float) and not isinstance(out, bool):
            word, bound = None, None
            if self.min is not None and out < self.min:
                word, bound = "below", self.min
            elif self.max is not None and out > self.max:
                word, bound = "above", self.max
            if word is not None:
                raise LimitViolation(
                    f"{method}({self.name} = {out} {self.unit}) is {word} the limit {bound} {self.unit}",
                    device=device,
                    signal=f"{method}.{self.name}",
                    value=float(out),
                )
        return out


class OpcUaMethod(StrictModel):
    """A method the device offers: the object it belongs to, the method node, its arguments."""

    description: str = ""
    object: OpcUaNodeRef
    method: OpcUaNodeRef
    arguments: list[OpcUaArgument] = Field(default_factory=list)
    outputs: list[OpcUaArgument] = Field(default_factory=list)
    timeout_s: float | None = Field(default=None, gt=0, description="default: connection.timeout_s")


class OpcUaSubscription(StrictModel):
    """Defaults of the data-change subscription every subscribed signal joins."""

    publishing_interval_ms: float = Field(default=500.0, gt=0)
    sampling_interval_ms: float = Field(default=250.0, ge=0)
    deadband: float | None = Field(
        default=None, ge=0, description="absolute, in each signal's unit"
    )
    queue_size: int = Field(default=1, ge=0)


SecurityPolicy = Literal["None", "Basic256Sha256"]
SecurityMode = Literal["None", "Sign", "SignAndEncrypt"]


class OpcUaSecurity(StrictModel):
    """Message security and user identity.

    ``policy = "Basic256Sha256"`` needs ``mode`` Sign or SignAndEncrypt and the
    client's ``certificate`` (DER or PEM) and ``private_key`` (PEM) files;
    ``server_certificate`` pins the server's certificate (otherwise the one the
    server's endpoint presents is used). ``username``/``password`` log in as a
    user instead of anonymously.
    """

    policy: SecurityPolicy = "None"
    mode: SecurityMode = "None"
    certificate: str | None = None
    private_key: str | None = None
    private_key_password: str | None = None
    server_certificate: str | None = None
    application_uri: str = Field(
        default="urn:labdevices:client", description="must match the certificate's URI"
    )
    username: str | None = None
    password: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> OpcUaSecurity:
        problems = []
        if self.policy == "None" and self.mode != "None":
            problems.append(f"mode {self.mode!r} needs a policy (Basic256Sha256), not 'None'")
        if self.policy != "None":
            if self.mode == "None":
                problems.append(f"policy {self.policy!r} needs mode 'Sign' or 'SignAndEncrypt'")
            missing = [f for f in ("certificate", "private_key") if getattr(self, f) is None]
            if missing:
                problems.append(f"policy {self.policy!r} needs {' and '.join(missing)}")
        if self.password is not None and self.username is None:
            problems.append("a password needs a username")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class OpcUaConnection(StrictModel):
    """Timeouts, keep-alive and reconnect behaviour of the client."""

    timeout_s: float = Field(default=4.0, gt=0, description="every request's answer deadline")
    connect_timeout_s: float = Field(default=10.0, gt=0)
    keepalive_s: float = Field(
        default=1.0, gt=0, description="health probe period; a dead link is noticed within it"
    )
    reconnect_min_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    session_timeout_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> OpcUaConnection:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError(
                f"reconnect_min_s ({self.reconnect_min_s}) is greater than reconnect_max_s ({self.reconnect_max_s})"
            )
        return self


class OpcUaProfile(ProfileBase):
    """An OPC UA device: its namespace, signals, methods and how to talk to it."""

    driver: Literal["opcua"]
    namespace: str | None = Field(
        default=None, description="namespace URI of browse paths and of the simulator's nodes"
    )
    connection: OpcUaConnection = OpcUaConnection()
    subscription: OpcUaSubscription = OpcUaSubscription()
    security: OpcUaSecurity = OpcUaSecurity()
    signals: dict[str, OpcUaSignal] = Field(default_factory=dict)
    methods: dict[str, OpcUaMethod] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _namespace_for_paths(self) -> OpcUaProfile:
        refs: list[tuple[str, list[str] | None]] = [
            (f"signals.{n}", s.browse_path) for n, s in self.signals.items()
        ]
        for n, m in self.methods.items():
            refs += [(f"methods.{n}.object", m.object.browse_path)]
            refs += [(f"methods.{n}.method", m.method.browse_path)]
        if self.namespace is None:
            for where, path in refs:
                if path and any(":" not in part for part in path):
                    raise ValueError(
                        f"{where}.browse_path uses the profile namespace; set `namespace`"
                    )
        return self

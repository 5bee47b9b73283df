"""What every device profile has: identity, the driver it needs, and signals with limits."""

from __future__ import annotations

from pydantic import Field, model_validator

from ..errors import LimitViolation
from ..files import StrictModel

__all__ = ["ProfileBase", "SignalBase"]


class SignalBase(StrictModel):
    """A named quantity a device reports or accepts.

    ``min``/``max`` are the limits in engineering units (after scale and offset):
    every write is checked against them before it reaches the wire.
    """

    unit: str = Field(default="", description="engineering unit, e.g. degC, kPa, %")
    description: str = ""
    writable: bool = False
    min: float | None = Field(default=None, description="lowest value accepted for writes")
    max: float | None = Field(default=None, description="highest value accepted for writes")

    @model_validator(mode="after")
    def _limits_ordered(self) -> SignalBase:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self

    def check(self, device: str, name: str, value: float) -> None:
        """Raise ``LimitViolation`` unless ``value`` may be written to this signal."""
        if not self.writable:
            raise LimitViolation(
                f"signal {name!r} is read-only", device=device, signal=name, value=value
            )
        if value != value:  # NaN
            raise LimitViolation(
                f"{name} = NaN is not a number", device=device, signal=name, value=value
            )
        if self.min is not None and value < self.min:
            raise LimitViolation(
                f"{name} = {value} {self.unit} is below the limit {self.min} {self.unit}",
                device=device,
                signal=name,
                value=value,
            )
        if self.max is not None and value > self.max:
            raise LimitViolation(
                f"{name} = {value} {self.unit} is above the limit {self.max} {self.unit}",
                device=device,
                signal=name,
                value=value,
            )


class ProfileBase(StrictModel):
    """Identity of a device model. Subclasses add the protocol-specific parts."""

    name: str = Field(min_length=1, description="profile id, usually the file stem")
    vendor: str = ""
    model: str = ""
    description: str = ""

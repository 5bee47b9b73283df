"""The one error tree of labdevices.

Every failure a user can cause or meet is a ``LabDeviceError``; its subclasses say
what kind of failure it is, and carry the device, file or field it concerns, so
that a message can name them. Foreign exceptions are converted at the boundary
with ``raise ... from``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "BadRequest",
    "ConfigurationError",
    "DeviceConnectionError",
    "DeviceFault",
    "DeviceTimeoutError",
    "JobRejected",
    "LabDeviceError",
    "LimitViolation",
    "ProtocolError",
    "TooLarge",
    "map_os_errors",
]


class LabDeviceError(Exception):
    """Base of every labdevices error.

    ``device`` names the device concerned (if any), ``code`` is a stable,
    machine-readable identifier used in structured replies.
    """

    code = "error"

    def __init__(self, message: str, *, device: str | None = None) -> None:
        self.message = message
        self.device = device
        super().__init__(f"{device}: {message}" if device else message)


class ConfigurationError(LabDeviceError):
    """A config, profile or job file is malformed or invalid.

    ``problems`` lists every problem found, each already naming file and field.
    """

    code = "configuration"

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        problems: list[str] | None = None,
        device: str | None = None,
    ) -> None:
        self.file = file
        self.problems = problems or []
        full = message
        if self.problems:
            full = message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(full, device=device)


class DeviceConnectionError(LabDeviceError):
    """The link to a device could not be opened, or was lost."""

    code = "connection"


class DeviceTimeoutError(LabDeviceError):
    """A device did not answer in time."""

    code = "timeout"


class ProtocolError(LabDeviceError):
    """A device said something the protocol does not allow, or kept asking for the same thing."""

    code = "protocol"


class DeviceFault(LabDeviceError):
    """The device reports a fault (halted firmware, alarm, exception response)."""

    code = "device_fault"


class LimitViolation(LabDeviceError):
    """A value is outside the limits of the device profile; nothing was written."""

    code = "limit"

    def __init__(
        self,
        message: str,
        *,
        device: str | None = None,
        signal: str | None = None,
        value: float | None = None,
    ) -> None:
        self.signal = signal
        self.value = value
        super().__init__(message, device=device)


class JobRejected(LabDeviceError):
    """A job was refused: invalid, or the device cannot take it now."""

    code = "job_rejected"


class TooLarge(LabDeviceError):
    """A request, its arguments or one of its texts is larger than the API accepts."""

    code = "too_large"


class BadRequest(LabDeviceError):
    """A request is well-formed but asks for something that cannot exist (e.g. an id out of range)."""

    code = "bad_request"


@contextmanager
def map_os_errors(device: str | None, what: str) -> Iterator[None]:
    """Turn OS-level I/O failures into ``DeviceConnectionError`` naming the device."""
    try:
        yield
    except (OSError, EOFError) as exc:
        raise DeviceConnectionError(f"{what}: {exc}", device=device) from exc

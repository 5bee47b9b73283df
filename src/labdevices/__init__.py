"""labdevices: connect a bioprinting and cell-culture lab's devices to people and programs."""

from .errors import (
    ConfigurationError,
    DeviceConnectionError,
    DeviceFault,
    DeviceTimeoutError,
    JobRejected,
    LabDeviceError,
    LimitViolation,
    ProtocolError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "DeviceConnectionError",
    "DeviceFault",
    "DeviceTimeoutError",
    "JobRejected",
    "LabDeviceError",
    "LimitViolation",
    "ProtocolError",
    "__version__",
]

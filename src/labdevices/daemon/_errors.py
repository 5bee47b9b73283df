"""Errors of the daemon's API, in the one ``labdevices.errors`` tree (their codes travel in replies)."""

from __future__ import annotations

from ..errors import ConfigurationError, LabDeviceError

__all__ = [
    "DeviceAbsent",
    "NotInFault",
    "SiteConflict",
    "UnknownAlarm",
    "UnknownDevice",
    "UnknownJob",
    "UnknownSignal",
]


class UnknownDevice(LabDeviceError):
    """A request names a device the daemon does not have."""

    code = "unknown_device"


class UnknownSignal(LabDeviceError):
    """A request names a signal the device's profile does not have."""

    code = "unknown_signal"


class UnknownJob(LabDeviceError):
    """A request names a job the daemon does not know."""

    code = "unknown_job"


class UnknownAlarm(LabDeviceError):
    """A request names an alarm the store does not have."""

    code = "unknown_alarm"


class NotInFault(LabDeviceError):
    """``clear_fault`` on a device that is not in fault (nothing is done)."""

    code = "not_in_fault"


class SiteConflict(ConfigurationError):
    """A daemon cannot join its site: a device it would own is owned by another live daemon."""

    code = "site_conflict"


class DeviceAbsent(LabDeviceError):
    """A request names a device of the site whose daemon is not running (its lease ran out)."""

    code = "device_absent"

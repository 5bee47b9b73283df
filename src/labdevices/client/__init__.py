"""The async Python client of the labdevices daemon: devices, signals, telemetry, jobs, alarms."""

from ._client import (
    TERMINAL_JOB_STATES,
    AlarmInfo,
    DaemonInfo,
    DeviceInfo,
    DeviceState,
    DeviceStatus,
    JobEvent,
    JobInfo,
    LabClient,
    Reading,
    SignalInfo,
    SignatureInfo,
    SiteStatus,
)
from ._session import Session, default_session_path

__all__ = [
    "TERMINAL_JOB_STATES",
    "AlarmInfo",
    "DaemonInfo",
    "DeviceInfo",
    "DeviceState",
    "DeviceStatus",
    "JobEvent",
    "JobInfo",
    "LabClient",
    "Reading",
    "Session",
    "SignalInfo",
    "SignatureInfo",
    "SiteStatus",
    "default_session_path",
]

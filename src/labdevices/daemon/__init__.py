"""The daemon: supervises the lab's devices, publishes their telemetry, runs print jobs, trips
interlocks, and serves commands over MQTT, keeping every action in the audited store."""

from ._commands import daemon_command_topic
from ._config import (
    AuthConfig,
    BrokerList,
    BusConfig,
    DaemonConfig,
    DeviceConfig,
    InterlockConfig,
    LoadedConfig,
    RetentionConfig,
    StoreConfig,
    WebConfig,
    check_config,
    load_config,
    parse_broker_urls,
    parse_mqtt_url,
    redact_url,
)
from ._daemon import Daemon
from ._errors import UnknownAlarm, UnknownDevice, UnknownJob, UnknownSignal
from ._runtime import DaemonAddress, find_daemons, remove_runtime_file, write_runtime_file

__all__ = [
    "AuthConfig",
    "BrokerList",
    "BusConfig",
    "Daemon",
    "DaemonAddress",
    "DaemonConfig",
    "DeviceConfig",
    "InterlockConfig",
    "LoadedConfig",
    "RetentionConfig",
    "StoreConfig",
    "UnknownAlarm",
    "UnknownDevice",
    "UnknownJob",
    "UnknownSignal",
    "WebConfig",
    "check_config",
    "daemon_command_topic",
    "find_daemons",
    "load_config",
    "parse_broker_urls",
    "parse_mqtt_url",
    "redact_url",
    "remove_runtime_file",
    "write_runtime_file",
]

"""The MQTT topic layout of a site: builders and a parser, in one place.

Every topic lives under ``labdevices/{site}/``; see ``Topics`` for the layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import LabDeviceError

__all__ = [
    "RESERVED_NAMES",
    "ROOT",
    "TopicInfo",
    "TopicKind",
    "TopicNameError",
    "Topics",
    "parse_topic",
    "validate_device_name",
    "validate_name",
    "validate_publish_topic",
]

ROOT = "labdevices"

#: first-level names under a site that belong to the daemon, not to devices
RESERVED_NAMES = frozenset({"jobs", "daemon", "clients", "audit"})

_MAX_NAME = 128

TopicKind = Literal[
    "state",
    "telemetry",
    "alarm",
    "command",
    "job_submit",
    "job_progress",
    "job_state",
    "daemon_status",
    "reply",
    "audit_checkpoint",
]


class TopicNameError(LabDeviceError, ValueError):
    """A site, device, command, job or client name cannot be used in a topic.

    Also a ``ValueError``, so that pydantic validators that call ``validate_name``
    report it against the config field it came from.
    """

    code = "bad_topic"


def validate_name(kind: str, value: str) -> str:
    """Return ``value`` if it can be one level of a topic, else raise ``TopicNameError``.

    ``kind`` ("site", "device", ...) names what the value is, for the message.
    """
    if not isinstance(value, str) or not value:
        raise TopicNameError(f"{kind} name must be a non-empty string, got {value!r}")
    bad = sorted({c for c in value if c in "+#/\x00"})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise TopicNameError(
            f"{kind} name {value!r} contains {shown}; MQTT topic levels may not contain '+', '#', '/' or NUL"
        )
    if value.startswith("$"):
        raise TopicNameError(f"{kind} name {value!r} starts with '$', which brokers reserve")
    if value != value.strip():
        raise TopicNameError(f"{kind} name {value!r} has leading or trailing whitespace")
    if len(value) > _MAX_NAME:
        raise TopicNameError(f"{kind} name {value[:20]!r}... is longer than {_MAX_NAME} characters")
    return value


def validate_device_name(value: str) -> str:
    """Like ``validate_name`` for a device, which may also not take a reserved name."""
    validate_name("device", value)
    if value in RESERVED_NAMES:
        raise TopicNameError(
            f"device name {value!r} is reserved (reserved: {', '.join(sorted(RESERVED_NAMES))})",
            device=value,
        )
    return value


def validate_publish_topic(topic: object) -> str:
    """Return ``topic`` if a message can be published to it (no wildcards, not empty)."""
    if not isinstance(topic, str) or not topic:
        raise TopicNameError(f"topic must be a non-empty string, got {topic!r}")
    if "+" in topic or "#" in topic or "\x00" in topic:
        raise TopicNameError(
            f"topic {topic!r} contains a wildcard or NUL; one cannot publish to it"
        )
    if len(topic.encode()) > 65535:
        raise TopicNameError("topic is longer than 65535 bytes")
    return topic


class Topics:
    """Topic builders for one site.

    ```
    labdevices/{site}/{device}/state          retained JSON state
    labdevices/{site}/{device}/telemetry      batched samples
    labdevices/{site}/{device}/alarm          raised / cleared alarms
    labdevices/{site}/{device}/cmd/{name}     request envelope
    labdevices/{site}/jobs/submit             print job request
    labdevices/{site}/jobs/{id}/progress      job progress events
    labdevices/{site}/jobs/{id}/state         job state (retained)
    labdevices/{site}/daemon/status/{daemon}  each daemon's status, its last will marks it offline
    labdevices/{site}/audit/checkpoint        the latest signed audit checkpoint (retained)
    labdevices/{site}/clients/{id}/reply      a client's reply inbox
    labdevices/{site}/clients/{user}/{id}/reply   ... of a logged-in user
    ```
    """

    def __init__(self, site: str) -> None:
        self.site = validate_name("site", site)
        self.root = f"{ROOT}/{site}"

    def __repr__(self) -> str:
        return f"Topics({self.site!r})"

    def state(self, device: str) -> str:
        return f"{self.root}/{validate_device_name(device)}/state"

    def telemetry(self, device: str) -> str:
        return f"{self.root}/{validate_device_name(device)}/telemetry"

    def alarm(self, device: str) -> str:
        return f"{self.root}/{validate_device_name(device)}/alarm"

    def command(self, device: str, name: str) -> str:
        return f"{self.root}/{validate_device_name(device)}/cmd/{validate_name('command', name)}"

    def job_submit(self) -> str:
        return f"{self.root}/jobs/submit"

    def job_progress(self, job_id: str) -> str:
        return f"{self.root}/jobs/{validate_name('job', job_id)}/progress"

    def job_state(self, job_id: str) -> str:
        return f"{self.root}/jobs/{validate_name('job', job_id)}/state"

    def daemon_status(self, daemon: str = "+") -> str:
        """One daemon's status topic, or (``"+"``) the filter of every daemon's of the site."""
        if daemon != "+":
            validate_name("daemon", daemon)
        return f"{self.root}/daemon/status/{daemon}"

    def audit_checkpoint(self) -> str:
        """Each signed checkpoint of the audit chain, retained, for witnesses to copy."""
        return f"{self.root}/audit/checkpoint"

    def reply_inbox(self, client_id: str, owner: str | None = None) -> str:
        """A client's inbox; with ``owner`` (the logged-in user) ``clients/{owner}/{client_id}/reply``,
        so that the broker can let each user read only its own inboxes (``clients/{user}/#``)."""
        if owner is not None:
            return (
                f"{self.root}/clients/{validate_name('user', owner)}/"
                f"{validate_name('client', client_id)}/reply"
            )
        return f"{self.root}/clients/{validate_name('client', client_id)}/reply"

    def user_inboxes(self, user: str) -> str:
        """Every inbox of one user end with this prefix's subtree (``clients/{user}/``)."""
        return f"{self.root}/clients/{validate_name('user', user)}/"

    def clients_prefix(self) -> str:
        """Every reply topic starts with this; requests asking for a reply elsewhere are refused."""
        return f"{self.root}/clients/"

    # Subscription filters
    def all_states(self) -> str:
        return f"{self.root}/+/state"

    def all_telemetry(self) -> str:
        return f"{self.root}/+/telemetry"

    def all_alarms(self) -> str:
        return f"{self.root}/+/alarm"

    def commands(self, device: str = "+") -> str:
        """Filter for the commands of one device, or of all devices (``"+"``)."""
        if device != "+":
            validate_device_name(device)
        return f"{self.root}/{device}/cmd/+"

    def all_job_events(self) -> str:
        return f"{self.root}/jobs/+/+"

    def job_events(self, job_id: str = "+") -> list[str]:
        """Filters for a job's (or every job's) progress and state, without ``jobs/submit``
        (a request topic, which clients may not read)."""
        if job_id != "+":
            validate_name("job", job_id)
        return [f"{self.root}/jobs/{job_id}/progress", f"{self.root}/jobs/{job_id}/state"]


@dataclass(frozen=True)
class TopicInfo:
    """What a topic of the layout says: its kind and the names in it."""

    site: str
    kind: TopicKind
    device: str | None = None
    name: str | None = None
    job_id: str | None = None
    client_id: str | None = None
    user: str | None = None


def parse_topic(topic: str) -> TopicInfo:
    """Parse a topic of the layout; raise ``TopicNameError`` for any other topic."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != ROOT or not all(parts):
        raise TopicNameError(f"topic {topic!r} is not under '{ROOT}/{{site}}/'")
    site, rest = parts[1], parts[2:]
    match rest:
        case ["jobs", "submit"]:
            return TopicInfo(site, "job_submit")
        case ["jobs", job_id, "progress"]:
            return TopicInfo(site, "job_progress", job_id=job_id)
        case ["jobs", job_id, "state"]:
            return TopicInfo(site, "job_state", job_id=job_id)
        case ["daemon", "status", daemon]:
            return TopicInfo(site, "daemon_status", name=daemon)
        case ["audit", "checkpoint"]:
            return TopicInfo(site, "audit_checkpoint")
        case ["clients", client_id, "reply"]:
            return TopicInfo(site, "reply", client_id=client_id)
        case ["clients", user, client_id, "reply"]:
            return TopicInfo(site, "reply", client_id=client_id, user=user)
        case [device, "state"] if device not in RESERVED_NAMES:
            return TopicInfo(site, "state", device=device)
        case [device, "telemetry"] if device not in RESERVED_NAMES:
            return TopicInfo(site, "telemetry", device=device)
        case [device, "alarm"] if device not in RESERVED_NAMES:
            return TopicInfo(site, "alarm", device=device)
        case [device, "cmd", name] if device not in RESERVED_NAMES:
            return TopicInfo(site, "command", device=device, name=name)
    raise TopicNameError(f"topic {topic!r} is not part of the labdevices topic layout")

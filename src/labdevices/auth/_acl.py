"""Who may publish and read what on the broker: one rule set for Mosquitto's ACL file and the
embedded broker, so that only the daemon speaks for the lab.

Only the daemon's account publishes state, telemetry, alarms, job events, replies and
checkpoints (and reads requests). A user may publish requests, read what the daemon
publishes for everyone, and read only its own inboxes ``clients/<user>/#`` — never another
user's replies, nor anyone's requests (a login request carries a password).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "DEFAULT_DAEMON_ACCOUNT",
    "BrokerRules",
    "filter_within",
    "topic_matches",
]

#: the broker account of the daemon unless configured (never a user id: ids are reserved)
DEFAULT_DAEMON_ACCOUNT = "labdevices-daemon"

_USER_PUBLISH = (
    "labdevices/+/+/cmd/+",  # device commands and daemon/cmd/+
    "labdevices/+/jobs/submit",
)
_USER_READ = (
    "labdevices/+/+/state",
    "labdevices/+/+/telemetry",
    "labdevices/+/+/alarm",
    "labdevices/+/jobs/+/progress",
    "labdevices/+/jobs/+/state",
    "labdevices/+/daemon/status/+",
    "labdevices/+/audit/checkpoint",
)


def topic_matches(topic: str, topic_filter: str) -> bool:
    """Whether a topic name matches a subscription filter (``+`` one level, ``#`` the rest)."""
    t, f = topic.split("/"), topic_filter.split("/")
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(t) == len(f)


def filter_within(requested: str, allowed: str) -> bool:
    """Whether every topic ``requested`` (a filter) can match is matched by ``allowed``."""
    r, a = requested.split("/"), allowed.split("/")
    for i, level in enumerate(a):
        if level == "#":
            return True
        if i >= len(r):
            return False
        if r[i] == "#":
            return False
        if level != "+" and level != r[i]:
            return False
    return len(r) == len(a)


@dataclass(frozen=True)
class BrokerRules:
    """The access rules for one broker; ``daemon`` is the daemon's account."""

    daemon: str = DEFAULT_DAEMON_ACCOUNT

    def read_filters(self, user: str) -> tuple[str, ...]:
        if user == self.daemon:
            return ("labdevices/#",)
        return (*_USER_READ, f"labdevices/+/clients/{user}/#")

    def publish_filters(self, user: str) -> tuple[str, ...]:
        if user == self.daemon:
            return ("labdevices/#",)
        return _USER_PUBLISH

    def may_publish(self, user: str | None, topic: str) -> bool:
        if user is None:
            return False
        return any(topic_matches(topic, f) for f in self.publish_filters(user))

    def may_receive(self, user: str | None, topic: str) -> bool:
        if user is None:
            return False
        return any(topic_matches(topic, f) for f in self.read_filters(user))

    def may_subscribe(self, user: str | None, topic_filter: str) -> bool:
        if user is None:
            return False
        return any(filter_within(topic_filter, f) for f in self.read_filters(user))

    def mosquitto_acl(self, users: Iterable[str]) -> str:
        """The ACL file (``acl_file``) for Mosquitto: the daemon's account, then each user's."""
        lines = [
            "# Written by `labdevices broker-config` from the user registry: regenerate, do not edit.",
            "# Only the daemon publishes state, telemetry, alarms, job events, replies, checkpoints.",
            f"user {self.daemon}",
            "topic readwrite labdevices/#",
        ]
        for user in users:
            if user == self.daemon:
                continue
            lines += ["", f"user {user}"]
            lines += [f"topic write {f}" for f in self.publish_filters(user)]
            lines += [f"topic read {f}" for f in self.read_filters(user)]
        return "\n".join(lines) + "\n"

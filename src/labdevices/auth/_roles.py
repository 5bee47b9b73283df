"""Roles and the capabilities they grant: the one table every authority check reads.

Permissions are named capabilities granted to roles (as OctoPrint and Mosquitto's
dynamic-security plugin do), checked at one place in the daemon before any handler runs.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "CAPABILITIES",
    "COMMAND_CAPABILITIES",
    "ROLES",
    "ROLE_CAPABILITIES",
    "capabilities_of",
    "capability_for",
    "validate_roles",
]

#: every capability a request can need
CAPABILITIES = (
    "read",
    "setpoint.write",
    "job.submit",
    "job.control",
    "alarm.ack",
    "job.release",
    "record.sign",
    "users.manage",
    "estop",
    "fault.clear",
    "session",
)

# ``estop`` and ``session`` (whoami, logout) belong to anyone authenticated.
_VIEWER = frozenset({"read", "estop", "session"})
_OPERATOR = _VIEWER | {"setpoint.write", "job.submit", "job.control", "alarm.ack"}
# Clearing a fault re-arms a machine that stopped for safety (after an emergency stop, a
# firmware error): a supervisor's judgement, as for a release.
_SUPERVISOR = _OPERATOR | {"job.release", "record.sign", "fault.clear"}
_ADMIN = _SUPERVISOR | {"users.manage"}

#: each role and what it may do; each role includes the ones before it
ROLE_CAPABILITIES: dict[str, frozenset[str]] = {
    "viewer": _VIEWER,
    "operator": frozenset(_OPERATOR),
    "supervisor": frozenset(_SUPERVISOR),
    "admin": frozenset(_ADMIN),
}
ROLES = tuple(ROLE_CAPABILITIES)


def validate_roles(roles: Iterable[str]) -> tuple[str, ...]:
    """The roles, sorted and without duplicates; ``ValueError`` naming any unknown role."""
    out = sorted(set(roles))
    unknown = [r for r in out if r not in ROLE_CAPABILITIES]
    if unknown:
        raise ValueError(f"unknown role(s) {', '.join(unknown)} (known: {', '.join(ROLES)})")
    return tuple(out)


def capabilities_of(roles: Iterable[str]) -> frozenset[str]:
    """What a user with these roles may do. Any authenticated user may stop everything."""
    caps: set[str] = {"estop", "session"}
    for role in roles:
        caps |= ROLE_CAPABILITIES.get(role, frozenset())
    return frozenset(caps)


#: the capability each request needs: ``(scope, command)`` where scope is ``device`` (any
#: ``{device}/cmd/{name}``), ``daemon`` (``daemon/cmd/{name}``) or ``jobs`` (``jobs/submit``).
#: A command a handler serves but this table does not name is refused (fail closed).
COMMAND_CAPABILITIES: dict[tuple[str, str], str] = {
    ("device", "read"): "read",
    ("device", "describe"): "read",
    ("device", "write"): "setpoint.write",
    ("device", "pause"): "job.control",
    ("device", "resume"): "job.control",
    ("device", "cancel"): "job.control",
    ("device", "estop"): "estop",
    ("device", "clear_fault"): "fault.clear",
    ("jobs", "submit"): "job.submit",
    ("daemon", "devices"): "read",
    ("daemon", "status"): "read",
    ("daemon", "alarms"): "read",
    ("daemon", "jobs"): "read",
    ("daemon", "job"): "read",
    ("daemon", "record"): "read",
    ("daemon", "signatures"): "read",
    ("daemon", "audit"): "read",
    ("daemon", "ack_alarm"): "alarm.ack",
    ("daemon", "release"): "job.release",
    ("daemon", "sign"): "record.sign",
    ("daemon", "users"): "users.manage",
    ("daemon", "config"): "users.manage",
    ("daemon", "whoami"): "session",
    ("daemon", "logout"): "session",
}


def capability_for(scope: str, command: str) -> str | None:
    """The capability a command needs (None: the table does not name it)."""
    return COMMAND_CAPABILITIES.get((scope, command))

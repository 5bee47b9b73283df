"""Roles and the capabilities they grant: the one table every authority check reads.

Permissions are named capabilities granted to roles (as OctoPrint and Mosquitto's
dynamic-security plugin do), checked at one place in the daemon before any handler runs.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "CAPABILITIES",
    "ROLES",
    "ROLE_CAPABILITIES",
    "capabilities_of",
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
)

_VIEWER = frozenset({"read", "estop"})
_OPERATOR = _VIEWER | {"setpoint.write", "job.submit", "job.control", "alarm.ack"}
_SUPERVISOR = _OPERATOR | {"job.release", "record.sign"}
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
    caps: set[str] = {"estop"}
    for role in roles:
        caps |= ROLE_CAPABILITIES.get(role, frozenset())
    return frozenset(caps)

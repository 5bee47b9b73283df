"""Identity and authority, the pure parts: roles and capabilities, request MACs, broker rules.

The daemon's request guard (daemon/_auth.py) and the client's sessions (client/_session.py)
build on these; nothing here does I/O.
"""

from ._mac import SESSION_PURPOSE, mac_body, request_mac, session_secret, verify_mac
from ._roles import (
    CAPABILITIES,
    COMMAND_CAPABILITIES,
    ROLE_CAPABILITIES,
    ROLES,
    capabilities_of,
    capability_for,
    validate_roles,
)

__all__ = [
    "CAPABILITIES",
    "COMMAND_CAPABILITIES",
    "ROLES",
    "ROLE_CAPABILITIES",
    "SESSION_PURPOSE",
    "capabilities_of",
    "capability_for",
    "mac_body",
    "request_mac",
    "session_secret",
    "validate_roles",
    "verify_mac",
]

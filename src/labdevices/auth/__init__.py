"""Identity and authority, the pure parts: roles and capabilities, request MACs, broker rules.

The daemon's request guard (daemon/_auth.py) and the client's sessions (client/_session.py)
build on these; nothing here does I/O.
"""

from ._acl import DEFAULT_DAEMON_ACCOUNT, BrokerRules, filter_within, topic_matches
from ._mac import SESSION_PURPOSE, broker_token, mac_body, request_mac, session_secret, verify_mac
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
    "DEFAULT_DAEMON_ACCOUNT",
    "ROLES",
    "ROLE_CAPABILITIES",
    "SESSION_PURPOSE",
    "BrokerRules",
    "broker_token",
    "capabilities_of",
    "capability_for",
    "filter_within",
    "mac_body",
    "request_mac",
    "session_secret",
    "topic_matches",
    "validate_roles",
    "verify_mac",
]

"""Identity and authority: roles and capabilities, request MACs, broker access rules."""

from ._roles import CAPABILITIES, ROLE_CAPABILITIES, ROLES, capabilities_of, validate_roles

__all__ = ["CAPABILITIES", "ROLES", "ROLE_CAPABILITIES", "capabilities_of", "validate_roles"]

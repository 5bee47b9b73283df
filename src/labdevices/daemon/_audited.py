"""What the audit trail keeps of a request's arguments: bounded, and always valid JSON."""

from __future__ import annotations

import hashlib
import math

from pydantic import JsonValue

__all__ = ["as_audited"]

_AUDIT_TEXT_MAX = 1024


def as_audited(value: JsonValue) -> JsonValue:
    """A request's arguments as the audit trail keeps them: non-finite numbers as text (JSON has
    none), long strings (G-code) as their size and SHA-256 rather than whole."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str) and len(value) > _AUDIT_TEXT_MAX:
        data = value.encode("utf-8")
        return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if isinstance(value, dict):
        return {k: as_audited(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_audited(v) for v in value]
    return value

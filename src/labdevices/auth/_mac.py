"""Request MACs: what binds a request to its session, topic and moment, so that it can be
neither forged nor moved to another topic or inbox.

Pure functions over bytes and JSON values; the daemon and the client share them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "SESSION_PURPOSE",
    "broker_token",
    "mac_body",
    "request_mac",
    "session_secret",
    "verify_mac",
]

#: HKDF ``info`` of the key that session secrets are derived from (see ``store.derive_key``)
SESSION_PURPOSE = "labdevices session v1"

#: the envelope fields a MAC covers, beside the topic
_SIGNED = ("id", "reply_to", "actor", "args", "deadline", "t", "session")


def session_secret(session_key: bytes, session_id: str) -> bytes:
    """A session's secret: HMAC-SHA256(session key, session id). Never stored, only derived."""
    return hmac.new(session_key, session_id.encode("utf-8"), hashlib.sha256).digest()


def mac_body(topic: str, envelope: Mapping[str, Any]) -> bytes:
    """The canonical bytes a request MAC covers: the topic and the signed envelope fields."""
    body = {k: envelope.get(k) for k in _SIGNED}
    body["topic"] = topic
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def request_mac(secret: bytes, topic: str, envelope: Mapping[str, Any]) -> str:
    """HMAC-SHA256 (hex) of ``mac_body``."""
    return hmac.new(secret, mac_body(topic, envelope), hashlib.sha256).hexdigest()


def verify_mac(secret: bytes, topic: str, envelope: Mapping[str, Any], mac: str) -> bool:
    """Whether ``mac`` is the request's MAC (compared in constant time)."""
    try:
        expected = request_mac(secret, topic, envelope)
    except (TypeError, ValueError):
        return False
    return hmac.compare_digest(expected, mac)


def broker_token(session_id: str, secret: bytes) -> str:
    """The password a session's holder gives the embedded broker (it checks the session too).

    Sent only over TLS or to a loopback broker, like any password.
    """
    proof = hmac.new(secret, b"labdevices mqtt connect v1", hashlib.sha256).hexdigest()
    return f"session:{session_id}:{proof}"

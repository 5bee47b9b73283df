"""A login session on the client side: what ``labdevices login`` keeps, and how it signs requests.

The session file holds the session id and its secret (never the password), mode 0600,
under ``$XDG_CONFIG_HOME/labdevices/sessions/<site>.json`` (``~/.config`` by default).
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..auth import request_mac
from ..bus import Request
from ..errors import ConfigurationError, Unauthenticated

__all__ = [
    "Session",
    "default_session_path",
    "is_loopback",
    "refuse_clear_password",
]


@dataclass(frozen=True)
class Session:
    """A daemon session: its id, the secret that MACs each request, whose it is, until when."""

    id: str
    secret: bytes
    user: str
    site: str
    expires_at: float
    roles: tuple[str, ...] = ()
    full_name: str = ""

    def __repr__(self) -> str:  # never the secret
        return f"Session(user={self.user!r}, site={self.site!r}, expires_at={self.expires_at})"

    @property
    def expired(self) -> bool:
        return time.time() >= self.expires_at

    def sign(self, topic: str, request: Request) -> Request:
        """The request with this session, its issue time and its MAC."""
        stamped = request.model_copy(update={"session": self.id, "t": time.time()})
        mac = request_mac(self.secret, topic, stamped.signed_fields())
        return stamped.model_copy(update={"mac": mac})

    @classmethod
    def from_login_reply(cls, site: str, data: Any) -> Session:
        if not isinstance(data, dict):
            raise Unauthenticated(f"unexpected login reply {type(data).__name__}")
        return cls(
            id=str(data["session"]),
            secret=bytes.fromhex(str(data["secret"])),
            user=str(data["user"]),
            site=site,
            expires_at=float(data["expires_at"]),
            roles=tuple(data.get("roles") or ()),
            full_name=str(data.get("full_name") or ""),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "session": self.id,
            "secret": self.secret.hex(),
            "user": self.user,
            "site": self.site,
            "expires_at": self.expires_at,
            "roles": list(self.roles),
            "full_name": self.full_name,
        }

    def save(self, path: str | Path) -> Path:
        """Write the session file, readable by its owner only (0600)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = p.with_name(p.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f)
        os.chmod(tmp, 0o600)
        os.replace(tmp, p)
        return p

    @classmethod
    def load(cls, path: str | Path) -> Session:
        """Read a session file; refuses one that others can read, names the file on any problem."""
        p = Path(path)
        try:
            mode = p.stat().st_mode & 0o777
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise Unauthenticated(
                f"{p}: no session here; log in first (labdevices login)"
            ) from None
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"{p}: cannot read the session file: {exc}", file=str(p)
            ) from exc
        if os.name == "posix" and mode & 0o077:
            raise ConfigurationError(
                f"{p}: the session file is readable by others (mode {mode:o}); chmod 600 it",
                file=str(p),
            )
        try:
            return cls(
                id=str(data["session"]),
                secret=bytes.fromhex(str(data["secret"])),
                user=str(data["user"]),
                site=str(data["site"]),
                expires_at=float(data["expires_at"]),
                roles=tuple(data.get("roles") or ()),
                full_name=str(data.get("full_name") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"{p}: not a session file ({exc})", file=str(p)) from exc


def default_session_path(site: str) -> Path:
    """``$XDG_CONFIG_HOME/labdevices/sessions/<site>.json`` (``~/.config`` if unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "labdevices" / "sessions" / f"{site}.json"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refuse_clear_password(host: str, tls: bool) -> None:
    """A password never goes in clear beyond this machine: ``mqtts://`` or a loopback broker."""
    if not tls and not is_loopback(host):
        raise ConfigurationError(
            f"refusing to send a password in clear to the broker at {host}: use mqtts://{host} "
            "(TLS), or a broker on this machine"
        )

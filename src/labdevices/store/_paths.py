"""Where the store lives when nobody says: ``$LABDEVICES_DB``, else the per-user data folder;
and where the key and witness of a PostgreSQL store live (no file to put them beside)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["default_db_path", "is_postgres_url", "local_stand_in", "redact_url"]

_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(store: str | Path) -> bool:
    return isinstance(store, str) and store.startswith(_SCHEMES)


def redact_url(url: str) -> str:
    """The URL without its password (for messages and logs)."""
    url = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", url)


def local_stand_in(store: str | Path) -> Path:
    """The file whose ``.key`` and ``.witness`` siblings are a store's defaults: the store file
    itself, or for a PostgreSQL URL ``postgresql-HOST-PORT-DBNAME`` in the data folder, so the
    daemon and the CLI on one machine find the same files."""
    if not is_postgres_url(store):
        return Path(store)
    parts = urlsplit(str(store))
    host = parts.hostname or "local"
    if host.startswith("/") or host.startswith("%2F"):
        host = "local"
    name = f"postgresql-{host}-{parts.port or 5432}-{parts.path.lstrip('/') or 'default'}"
    return default_db_path().parent / re.sub(r"[^A-Za-z0-9._-]", "_", name)


def default_db_path() -> Path:
    """``$LABDEVICES_DB`` if set, else ``labdevices/labdevices.db`` in the user's data folder
    (``$XDG_DATA_HOME`` or ``~/.local/share`` on Linux, ``~/Library/Application Support``
    on macOS, ``%LOCALAPPDATA%`` on Windows)."""
    env = os.environ.get("LABDEVICES_DB")
    if env:
        return Path(env)
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "labdevices" / "labdevices.db"

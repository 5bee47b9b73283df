"""Where the store lives when nobody says: ``$LABDEVICES_DB``, else the per-user data folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["default_db_path"]


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

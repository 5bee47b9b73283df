"""Where a running daemon can be reached: one small file per site in the user's runtime folder.

``labdevices daemon`` writes ``daemon-<site>.json`` (broker URL without secrets, site, pid)
when it is ready and removes it when it stops; client commands read it when neither
``--broker`` nor ``$LABDEVICES_BROKER`` says where the daemon is. The folder is
``$XDG_RUNTIME_DIR/labdevices`` (``<tmp>/labdevices-<uid>`` without one), mode 0700.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

__all__ = [
    "DaemonAddress",
    "find_daemons",
    "public_url",
    "remove_runtime_file",
    "runtime_dir",
    "runtime_file",
    "write_runtime_file",
]


@dataclass(frozen=True)
class DaemonAddress:
    """A running daemon as its runtime file tells: broker URL (no secrets), site, pid."""

    broker: str
    site: str
    pid: int
    started_at: float
    path: Path


def public_url(url: str) -> str:
    """The broker URL without user or password: clients bring their own credentials.

    A comma-separated list of brokers (see docs/brokers.md) stays one, each URL cleaned."""
    if "," in url:
        return ",".join(public_url(u.strip()) for u in url.split(",") if u.strip())
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return parts._replace(netloc=f"{host}{port}").geturl()


def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/labdevices``, else ``<tmp>/labdevices-<uid>`` (per user either way)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        return Path(base) / "labdevices"
    uid = os.getuid() if hasattr(os, "getuid") else os.getlogin()
    return Path(tempfile.gettempdir()) / f"labdevices-{uid}"


def runtime_file(site: str, daemon: str | None = None) -> Path:
    """``daemon-{site}.json``, or with ``daemon`` ``daemon-{site}@{daemon}.json``: each daemon
    of a site run on this machine has its own (one stopping leaves the others announced)."""
    if daemon is None:
        return runtime_dir() / f"daemon-{site}.json"
    return runtime_dir() / f"daemon-{site}@{daemon}.json"


def write_runtime_file(broker_url: str, site: str, daemon: str | None = None) -> Path:
    """Announce this process as a daemon of ``site`` at ``broker_url`` (secrets removed)."""
    folder = runtime_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = runtime_file(site, daemon)
    data = {
        "broker": public_url(broker_url),
        "site": site,
        "pid": os.getpid(),
        "started_at": time.time(),
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, path)
    return path


def remove_runtime_file(site: str, daemon: str | None = None) -> None:
    """Remove the daemon's runtime file if this process wrote it (a newer daemon's stays)."""
    path = runtime_file(site, daemon)
    found = _read(path)
    if found is not None and found.pid == os.getpid():
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> DaemonAddress | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return DaemonAddress(
            broker=str(data["broker"]),
            site=str(data["site"]),
            pid=int(data["pid"]),
            started_at=float(data.get("started_at", 0.0)),
            path=path,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def find_daemons(site: str | None = None) -> list[DaemonAddress]:
    """The daemons of this user that are running (of ``site`` only, if given), newest first.

    A file left by a daemon that died without removing it (its pid is gone) is ignored.
    """
    folder = runtime_dir()
    if site is None:
        paths = sorted(folder.glob("daemon-*.json"))
    else:
        paths = [runtime_file(site), *sorted(folder.glob(f"daemon-{glob.escape(site)}@*.json"))]
    found = [a for a in (_read(p) for p in paths) if a is not None and _alive(a.pid)]
    return sorted(found, key=lambda a: a.started_at, reverse=True)

"""Leases of a site shared by several daemons: who owns each device, and who leads the site.

A lease is a row of ``site_leases``: a name (``device/{name}`` or ``leader``), the daemon
holding it, the instance (one random id per daemon start) and when it expires. A live
daemon renews its leases; a crashed one's simply run out, so it never blocks its own
restart (nor another daemon) longer than one lease time. Taking leases is all or nothing,
in one write transaction: two daemons starting at once cannot both own a device.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._dialect import Connection
from ._errors import StoreError
from ._mixin import DatabaseMixin

__all__ = ["LEADER_LEASE", "LeaseMethods", "LeaseRecord", "device_lease"]

#: the lease of the daemon that answers the site-level requests no device owns
LEADER_LEASE = "leader"


def device_lease(device: str) -> str:
    """The name of a device's lease."""
    return f"device/{device}"


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    name: str
    daemon: str
    instance: str
    acquired_at: float
    expires_at: float

    def live(self, now: float | None = None) -> bool:
        return self.expires_at > (time.time() if now is None else now)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "daemon": self.daemon,
            "instance": self.instance,
            "acquired_at": self.acquired_at,
            "expires_at": self.expires_at,
        }


_COLUMNS = "name, daemon, instance, acquired_at, expires_at"


class LeaseMethods(DatabaseMixin):
    """Site leases: methods of ``SqliteDatabase``."""

    def acquire_leases(
        self,
        names: Iterable[str],
        *,
        daemon: str,
        instance: str,
        ttl_s: float,
        replacing: Iterable[str] = (),
    ) -> list[LeaseRecord]:
        """Take or renew the leases ``names`` for ``instance`` of ``daemon``, all or none.

        Returns the leases that stand in the way (live, held by another instance not in
        ``replacing``, instances known to be gone): when it is not empty nothing was
        changed. A lease newly taken (not a renewal) is audited ``site.lease``, with the
        holder it replaced.
        """
        gone = set(replacing)
        wanted = sorted(set(names))
        if not wanted:
            return []
        if ttl_s <= 0:
            raise StoreError("a lease time must be > 0 s", file=str(self.path))
        now = time.time()
        with self._tx(durable=True) as db:
            held = {
                row[0]: LeaseRecord(*row)
                for row in db.execute(
                    f"SELECT {_COLUMNS} FROM site_leases WHERE name IN "
                    f"({', '.join('?' * len(wanted))})",
                    wanted,
                )
            }
            blocking = [
                lease
                for lease in held.values()
                if lease.instance != instance and lease.live(now) and lease.instance not in gone
            ]
            if blocking:
                return sorted(blocking, key=lambda lease: lease.name)
            for name in wanted:
                old = held.get(name)
                if old is not None and old.instance == instance:
                    db.execute(
                        "UPDATE site_leases SET expires_at = ? WHERE name = ?",
                        (now + ttl_s, name),
                    )
                    continue
                db.execute(
                    "INSERT INTO site_leases (name, daemon, instance, acquired_at, expires_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                    " daemon = excluded.daemon, instance = excluded.instance,"
                    " acquired_at = excluded.acquired_at, expires_at = excluded.expires_at",
                    (name, daemon, instance, now, now + ttl_s),
                )
                self._append_audit(
                    db,
                    t=now,
                    actor=daemon,
                    action="site.lease",
                    object=f"lease/{name}",
                    old=None
                    if old is None
                    else {"daemon": old.daemon, "expired_at": old.expires_at},
                    new={"daemon": daemon, "instance": instance},
                    reason=None
                    if old is None
                    else "the previous holder is no longer running"
                    if old.instance in gone
                    else "the previous holder's lease ran out",
                )
        return []

    def release_leases(self, *, instance: str, names: Iterable[str] | None = None) -> None:
        """Give up the leases of ``instance`` (all of them, or ``names``); not audited: a lease
        that is not renewed runs out anyway."""
        with self._tx(durable=True) as db:
            if names is None:
                db.execute("DELETE FROM site_leases WHERE instance = ?", (instance,))
            else:
                db.executemany(
                    "DELETE FROM site_leases WHERE instance = ? AND name = ?",
                    [(instance, name) for name in names],
                )

    def list_leases(self) -> list[LeaseRecord]:
        """Every lease of the site, live or run out, by name."""
        with self._errors():
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM site_leases ORDER BY name").fetchall()
        return [LeaseRecord(*row) for row in rows]

    def _others_live(self, db: Connection) -> bool:
        """Whether any live lease is left (those of other daemons: a daemon releases its own
        before it closes the store)."""
        row = db.execute(
            "SELECT 1 FROM site_leases WHERE expires_at > ? LIMIT 1", (time.time(),)
        ).fetchone()
        return row is not None

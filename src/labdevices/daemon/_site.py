"""One daemon among several on a site: its device leases, the site's leader, and which requests
it takes (docs/site.md).

Every daemon of a site subscribes to every request topic; each request is taken by exactly
one of them, decided here before the request guard runs (so a request not taken is neither
audited nor answered by this daemon):

- a device's request (``{device}/cmd/…``, ``jobs/submit`` for a printer, ``sign`` of a job on a
  printer) by the daemon holding that device's lease;
- everything else (``daemon/cmd/…``, a malformed envelope, a device no live daemon owns) by the
  daemon holding the ``leader`` lease, which answers ``unknown_device`` or ``device_absent``
  for devices nobody serves.

A daemon takes requests under a lease only while that lease is safely its own: until
``lease_s`` minus a margin after it last renewed it (by its own clock), so that a daemon
whose renewals stalled stops before another can take the lease over (clocks of the
daemons' hosts must agree to within the margin, ``lease_s / 5``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from pydantic import JsonValue

from ..bus import Request
from ..errors import LabDeviceError
from ..store import LEADER_LEASE, LeaseRecord, Store, device_lease
from ._auth import request_scope
from ._errors import DeviceAbsent, SiteConflict, UnknownDevice

__all__ = ["DEFAULT_LEASE_S", "PER_DAEMON", "SiteMembership"]

log = logging.getLogger("labdevices.daemon.site")

#: how long a lease lasts unless renewed (renewed every third of it)
DEFAULT_LEASE_S = 15.0
#: site-level commands that take ``args.daemon``: then that daemon answers, about itself
PER_DAEMON = frozenset({"status", "devices"})


_HOST = socket.gethostname()


def _gone(instance: str) -> bool:
    """Whether the run ``instance`` names was on this host and its process has ended."""
    host, _, rest = instance.partition(":")
    pid, _, _ = rest.partition(":")
    if host != _HOST or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # someone else's process: alive
    return False


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class SiteMembership:
    """This daemon's leases in the shared store; ``join`` before serving, ``run`` to renew them,
    ``leave`` at the end."""

    def __init__(
        self,
        store: Store,
        daemon: str,
        devices: Iterable[str],
        *,
        source: str,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        if lease_s <= 0:
            raise ValueError("lease_s must be > 0")
        self.store = store
        self.daemon = daemon
        self.devices = frozenset(devices)
        #: this run: host, process and a random part (see ``_gone``)
        self.instance = f"{_HOST}:{os.getpid()}:{secrets.token_hex(6)}"
        self.lease_s = lease_s
        self._source = source
        self._margin_s = lease_s / 5
        #: lease name → local time until which it is safely ours
        self._valid: dict[str, float] = {}
        #: when this daemon last became the leader (requests issued before are not its)
        self.leader_since: float | None = None

    # -- leases -------------------------------------------------------------------------------

    async def join(self) -> None:
        """Take the leases of every device of this daemon, then try to lead the site.

        A lease whose holder ran on this host and whose process is gone (killed, crashed) is
        taken over at once. One held by an earlier run of this same daemon elsewhere is
        waited for, up to one lease time (a second copy still running renews it). Any other
        live holder: ``SiteConflict`` naming each device and its daemon.
        """
        names = [device_lease(d) for d in self.devices]
        waited_until = time.monotonic() + self.lease_s
        replacing: set[str] = set()
        while True:
            started = time.time()
            blocking = await self.store.acquire_leases(
                names,
                daemon=self.daemon,
                instance=self.instance,
                ttl_s=self.lease_s,
                replacing=replacing,
            )
            if not blocking:
                break
            gone = {x.instance for x in blocking if _gone(x.instance)}
            if gone - replacing:
                log.warning("taking over leases whose daemon process on this host is gone")
                replacing |= gone
                continue
            mine = [x for x in blocking if x.daemon == self.daemon]
            if len(mine) < len(blocking) or time.monotonic() >= waited_until:
                raise self._conflict(blocking)
            wait = min(x.expires_at for x in mine) - time.time()
            log.warning(
                "daemon %r: waiting %.1f s for the leases of its last run to run out",
                self.daemon,
                wait,
            )
            await asyncio.sleep(max(0.0, min(wait, waited_until - time.monotonic())) + 0.01)
        for name in names:
            self._valid[name] = started + self.lease_s - self._margin_s
        await self._try_lead()

    def _conflict(self, blocking: list[LeaseRecord]) -> SiteConflict:
        problems = [
            f"device {lease.name.removeprefix('device/')!r} is owned by daemon "
            f"{lease.daemon!r}, live until {_when(lease.expires_at)} (its lease is renewed "
            f"while it runs; a stopped daemon's runs out within {self.lease_s:g} s)"
            for lease in blocking
        ]
        return SiteConflict(
            f"{self._source}: daemon {self.daemon!r} cannot join its site: " + "; ".join(problems),
            file=self._source,
            device=blocking[0].name.removeprefix("device/"),
        )

    async def run(self) -> None:
        """Renew the leases every third of their time (runs until cancelled)."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self.renew()
            except LabDeviceError as exc:
                # Not renewed: the leases lapse by themselves, and with them the requests
                # this daemon takes; the devices and their jobs run on.
                log.error("site leases not renewed: %s", exc)

    async def renew(self) -> None:
        """One round: renew the device leases, then keep (or try to take) the leader's."""
        await self._renew_devices()
        await self._try_lead()

    async def _renew_devices(self) -> None:
        mine = [device_lease(d) for d in self.devices]
        started = time.time()
        blocking = await self.store.acquire_leases(
            mine, daemon=self.daemon, instance=self.instance, ttl_s=self.lease_s
        )
        if blocking:
            for lease in blocking:
                log.error(
                    "%s is now held by daemon %r: this daemon no longer takes its requests",
                    lease.name,
                    lease.daemon,
                )
                self._valid.pop(lease.name, None)
            return
        for name in mine:
            self._valid[name] = started + self.lease_s - self._margin_s

    async def _try_lead(self) -> None:
        started = time.time()
        blocking = await self.store.acquire_leases(
            [LEADER_LEASE], daemon=self.daemon, instance=self.instance, ttl_s=self.lease_s
        )
        gone = [x.instance for x in blocking if _gone(x.instance)]
        if gone:  # the leader was killed on this host: no need to wait for its lease
            blocking = await self.store.acquire_leases(
                [LEADER_LEASE],
                daemon=self.daemon,
                instance=self.instance,
                ttl_s=self.lease_s,
                replacing=gone,
            )
        if blocking:
            if self.leader_since is not None:
                log.warning("daemon %r leads the site now", blocking[0].daemon)
            self.leader_since = None
            self._valid.pop(LEADER_LEASE, None)
            return
        if self.leader_since is None or not self._holds(LEADER_LEASE):
            self.leader_since = started
            log.info("daemon %r leads site requests", self.daemon)
        self._valid[LEADER_LEASE] = started + self.lease_s - self._margin_s

    async def leave(self) -> None:
        """Give the leases up (the next daemon need not wait for them to run out)."""
        self._valid.clear()
        self.leader_since = None
        await self.store.release_leases(instance=self.instance)

    def _holds(self, name: str) -> bool:
        return self._valid.get(name, 0.0) > time.time()

    @property
    def is_leader(self) -> bool:
        return self.leader_since is not None and self._holds(LEADER_LEASE)

    # -- which requests are this daemon's -----------------------------------------------------

    async def takes(self, topic: str, request: Request | None) -> bool:
        """Whether this daemon answers the request (``None``: an envelope that did not parse)."""
        if request is None:
            return self.is_leader
        try:
            return await self._takes(topic, request)
        except LabDeviceError as exc:  # the store unreadable: the leader answers (with the error)
            log.error("cannot route %s: %s", topic, exc)
            return self._leader_takes(request)

    async def _takes(self, topic: str, request: Request) -> bool:
        scope, name, _ = request_scope(topic)
        if scope == "device":
            return await self._for_device(topic.split("/")[-3], request)
        if scope == "jobs":
            printer = request.args.get("printer")
            if isinstance(printer, str) and printer:
                return await self._for_device(printer, request)
        elif scope == "daemon" and name == "sign":
            printer = await self._job_printer(request.args.get("job_id"))
            if printer is not None:
                return await self._for_device(printer, request)
        elif scope == "daemon" and name in PER_DAEMON:
            daemon = request.args.get("daemon")
            if isinstance(daemon, str) and daemon:
                if daemon == self.daemon:
                    return True
                # The leader answers for a daemon that is not running (or not of the site).
                return self._leader_takes(request) and not await self._live(daemon)
        return self._leader_takes(request)

    async def _live(self, daemon: str) -> bool:
        return daemon in await self.live_daemons()

    async def live_daemons(self) -> set[str]:
        """The daemons of the site holding a lease not run out."""
        now = time.time()
        return {x.daemon for x in await self.store.list_leases() if x.live(now)}

    async def _for_device(self, device: str, request: Request) -> bool:
        if device in self.devices:
            return self._holds(device_lease(device))
        if not self._leader_takes(request):
            return False
        # The leader answers for a device no live daemon serves (unknown_device, device_absent).
        lease = await self._lease(device)
        return lease is None or not lease.live()

    def _leader_takes(self, request: Request) -> bool:
        if not self.is_leader:
            return False
        # A request issued before this daemon became the leader may have been the last
        # leader's (a replay of it must not run a second time here).
        assert self.leader_since is not None
        return request.t is None or request.t >= self.leader_since

    async def _job_printer(self, job_id: JsonValue) -> str | None:
        if isinstance(job_id, bool) or not isinstance(job_id, int):
            return None
        try:
            return (await self.store.get_job(job_id, events=False)).printer
        except LabDeviceError:
            return None  # the leader says there is no such job

    async def _lease(self, device: str) -> LeaseRecord | None:
        for lease in await self.store.list_leases():
            if lease.name == device_lease(device):
                return lease
        return None

    async def not_here(self, device: str) -> LabDeviceError:
        """The error for a request naming a device this daemon does not have: absent (its
        daemon is not running) or unknown on the site."""
        leases = await self.store.list_leases()
        lease = next((x for x in leases if x.name == device_lease(device)), None)
        if lease is not None and lease.live():  # asked of this daemon directly (its web)
            return UnknownDevice(
                f"device {device!r} is daemon {lease.daemon!r}'s, not this daemon's "
                f"({self.daemon!r})",
                device=device,
            )
        if lease is not None:
            return DeviceAbsent(
                f"the daemon of {device!r} ({lease.daemon!r}) is not running: its lease ran out "
                f"at {_when(lease.expires_at)}",
                device=device,
            )
        known = sorted(
            {x.name.removeprefix("device/") for x in leases if x.name.startswith("device/")}
            | self.devices
        )
        return UnknownDevice(
            f"unknown device {device!r} (devices of the site: {', '.join(known) or 'none'})",
            device=device,
        )

    async def not_running(self, daemon: str) -> LabDeviceError:
        """The error for a request naming a daemon of the site that is not running."""
        known = [x for x in await self.daemons() if isinstance(x, dict)]
        if any(x.get("daemon") == daemon for x in known):
            return DeviceAbsent(f"daemon {daemon!r} of the site is not running")
        names = ", ".join(str(x.get("daemon")) for x in known) or "none"
        return UnknownDevice(f"no daemon {daemon!r} on the site (daemons: {names})")

    async def daemons(self) -> list[JsonValue]:
        """Every daemon the leases name: its devices, whether it is live (some lease not run
        out) and whether it leads the site."""
        now = time.time()
        devices: dict[str, list[str]] = {}
        live: dict[str, bool] = {}
        leader: str | None = None
        for lease in await self.store.list_leases():
            devices.setdefault(lease.daemon, [])
            live[lease.daemon] = live.get(lease.daemon, False) or lease.live(now)
            if lease.name == LEADER_LEASE:
                leader = lease.daemon if lease.live(now) else leader
            else:
                devices[lease.daemon].append(lease.name.removeprefix("device/"))
        return [
            {
                "daemon": name,
                "live": live[name],
                "leader": name == leader,
                "devices": list(sorted(devices[name])),
            }
            for name in sorted(devices)
        ]

# (asyncua types its scalars as NewTypes — UInt32, Int16 — and re-exports implicitly;
#  checking every literal against them is noise, so these codes are off here only.)
"""OPC UA driver: signals by data-change subscription, reads, checked writes, method calls.

One ``OpcUaLink`` (an asyncua session) at a time. The session loop in the
device's TaskGroup turns notifications into ``Sample``s; when asyncua's keep-alive
reports the link lost it publishes a stale sample per subscribed signal (value
``None``: nothing is invented), reconnects with capped, jittered backoff, resolves
the nodes again (a restarted server may renumber its namespaces) and re-creates
the subscription.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from asyncua import ua
from asyncua.common.subscription import DataChangeEvent, StatusChangeEvent, Subscription
from pydantic import Field

from ..errors import (
    ConfigurationError,
    DeviceConnectionError,
    LabDeviceError,
    LimitViolation,
)
from ..files import StrictModel, validate
from ..profiles import OpcUaProfile, OpcUaSignal
from ..profiles._opcua import (
    OpcUaConnection,
    OpcUaSecurity,
    SecurityMode,
    SecurityPolicy,
    coerce_value,
)
from ..transports._opcua import (
    MonitoredItem,
    OpcUaLink,
    SecurityMaterial,
    load_security,
    status_name,
)
from ._base import Device, DeviceState, Sample

__all__ = ["OpcUaDevice", "OpcUaOptions"]


class OpcUaOptions(StrictModel):
    """Per-installation settings that override the profile (the daemon config passes these).

    Security fields replace the profile's ``[security]`` ones; the others its
    ``[connection]`` ones.
    """

    policy: SecurityPolicy | None = None
    mode: SecurityMode | None = None
    certificate: str | None = None
    private_key: str | None = None
    private_key_password: str | None = None
    server_certificate: str | None = None
    username: str | None = None
    password: str | None = None
    timeout_s: float | None = Field(default=None, gt=0)
    connect_timeout_s: float | None = Field(default=None, gt=0)
    keepalive_s: float | None = Field(default=None, gt=0)
    reconnect_min_s: float | None = Field(default=None, gt=0)
    reconnect_max_s: float | None = Field(default=None, gt=0)
    jitter_seed: int | None = Field(default=None, description="seed of the backoff jitter")


_SECURITY_FIELDS = set(OpcUaSecurity.model_fields)
_CONNECTION_FIELDS = set(OpcUaConnection.model_fields)


def _merge(name: str, profile: OpcUaProfile, options: dict[str, Any]) -> tuple[
    OpcUaSecurity, OpcUaConnection, OpcUaOptions
]:  # fmt: skip
    source = f"{name}: options"
    opts = validate(OpcUaOptions, options, source)
    given = opts.model_dump(exclude_none=True)
    sec = {k: v for k, v in given.items() if k in _SECURITY_FIELDS}
    conn = {k: v for k, v in given.items() if k in _CONNECTION_FIELDS}
    security = validate(
        OpcUaSecurity, {**profile.security.model_dump(), **sec}, f"{source}: security"
    )
    connection = validate(
        OpcUaConnection, {**profile.connection.model_dump(), **conn}, f"{source}: connection"
    )
    return security, connection, opts


def _check_address(name: str, address: str) -> str:
    url = urlparse(address)
    if url.scheme != "opc.tcp" or not url.hostname:
        raise ConfigurationError(
            f"address: {address!r} is not an OPC UA address (opc.tcp://host:port/path)", device=name
        )
    try:
        url.port  # noqa: B018  (parsing the port is the check)
    except ValueError:
        raise ConfigurationError(f"address: {address!r} has an invalid port", device=name) from None
    return address


def _timestamp(dv: ua.DataValue) -> float:
    ts: datetime | None = dv.SourceTimestamp or dv.ServerTimestamp
    if ts is None:
        return time.time()
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.timestamp()


class OpcUaDevice(Device[OpcUaProfile]):
    """A device behind an OPC UA server at ``opc.tcp://host:port/path``.

    ``options`` (see ``OpcUaOptions``) override the profile's security and
    connection settings; unknown or invalid ones raise ``ConfigurationError``
    naming the option.
    """

    def __init__(self, name: str, profile: OpcUaProfile, address: str, **options: Any) -> None:
        super().__init__(name, profile)
        self.address = _check_address(name, address)
        security, self.connection, opts = _merge(name, profile, options)
        self.security: SecurityMaterial = load_security(security)
        self._rng = random.Random(opts.jitter_seed)
        self._link: OpcUaLink | None = None
        self._signal_ids: dict[str, ua.NodeId] = {}
        self._method_ids: dict[str, tuple[ua.NodeId, ua.NodeId]] = {}
        self._handles: dict[int, str] = {}
        self._session_task: asyncio.Task[None] | None = None
        self.outage_reason: str | None = None
        self.reconnects = 0
        self._connected = asyncio.Event()

    # -- lifecycle -----------------------------------------------------------
    async def _open(self) -> None:
        link, sub = await self._connect()
        self._session_task = self._start_background(self._session(link, sub), "session")

    async def _close(self) -> None:
        task, self._session_task = self._session_task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
        link, self._link = self._link, None
        self._connected.clear()
        if link is not None:
            await link.close()

    async def _connect(self) -> tuple[OpcUaLink, Subscription | None]:
        """A new session with nodes resolved and the subscription created."""
        link = OpcUaLink(
            self.address, self.security, self.connection, self.name, self.profile.namespace
        )
        await link.connect()
        try:
            refs: dict[str, tuple[str | None, list[str] | None]] = {
                f"signals.{n}": (s.node, s.browse_path) for n, s in self.profile.signals.items()
            }
            for n, m in self.profile.methods.items():
                refs[f"methods.{n}.object"] = (m.object.node, m.object.browse_path)
                refs[f"methods.{n}.method"] = (m.method.node, m.method.browse_path)
            ids = await link.resolve(refs)
            self._signal_ids = {n: ids[f"signals.{n}"] for n in self.profile.signals}
            self._method_ids = {
                n: (ids[f"methods.{n}.object"], ids[f"methods.{n}.method"])
                for n in self.profile.methods
            }
            sub = await self._subscribe(link)
        except BaseException:
            await link.close()
            raise
        self._link = link
        self._connected.set()
        return link, sub

    async def _subscribe(self, link: OpcUaLink) -> Subscription | None:
        defaults = self.profile.subscription
        items: list[MonitoredItem] = []
        self._handles = {}
        for handle, (name, sig) in enumerate(self.profile.signals.items(), start=1):
            if not sig.subscribe:
                continue
            self._handles[handle] = name
            sampling = sig.sampling_interval_ms
            deadband = sig.deadband if sig.deadband is not None else defaults.deadband
            if sig.data_type in ("Boolean", "String"):
                deadband = None
            items.append(
                MonitoredItem(
                    handle=handle,
                    node=self._signal_ids[name],
                    sampling_interval_ms=defaults.sampling_interval_ms
                    if sampling is None
                    else sampling,
                    deadband=deadband,
                    queue_size=defaults.queue_size,
                )
            )
        if not items:
            return None
        sub, failed = await link.subscribe(items, defaults.publishing_interval_ms)
        if failed:
            problems = [
                f"signals.{self._handles[h]}: cannot subscribe ({why})" for h, why in failed.items()
            ]
            raise ConfigurationError(
                "the server refused to monitor some signals", problems=problems, device=self.name
            )
        return sub

    # -- the session loop ------------------------------------------------------
    async def _session(self, link: OpcUaLink, sub: Subscription | None) -> None:
        while True:
            await self._pump(link, sub)
            reason = link.lost_reason or "link lost"
            self._connected.clear()
            self.outage_reason = reason
            self._set_state(DeviceState.CONNECTING)
            self._publish_stale(f"connection lost: {reason}")
            self._link = None
            await link.close()
            back = await self._reconnect()
            if back is None:
                return
            link, sub = back
            self.outage_reason = None
            self.reconnects += 1
            self._set_state(DeviceState.IDLE)

    async def _pump(self, link: OpcUaLink, sub: Subscription | None) -> None:
        """Publish notifications until the link is lost."""
        while not link.lost.is_set():
            if sub is None:
                await link.lost.wait()
                return
            # asyncua reports a lost link both by callback (``lost``) and by a status
            # change in the subscription queue; the timeout covers either going missing.
            # (Not ``sub.next_event``: its ``wait_for`` can swallow our cancellation on 3.11.)
            try:
                async with asyncio.timeout(self.connection.keepalive_s):
                    ev = await anext(sub)
            except TimeoutError:
                continue
            except StopAsyncIteration:
                link.lost_reason = link.lost_reason or "subscription closed"
                return
            if isinstance(ev, DataChangeEvent):
                handle = ev.data.monitored_item.ClientHandle
                name = self._handles.get(handle)
                if name is not None:
                    self._publish(self._sample(name, ev.data.monitored_item.Value))
            elif isinstance(ev, StatusChangeEvent):
                status = ev.notification.Status
                if not status.is_good():
                    link.lost_reason = link.lost_reason or status_name(status)
                    return

    async def _reconnect(self) -> tuple[OpcUaLink, Subscription | None] | None:
        """Connect again with capped, jittered exponential backoff; stale samples meanwhile."""
        c = self.connection
        attempt = 0
        while True:
            delay = min(c.reconnect_max_s, c.reconnect_min_s * 2**attempt)
            # equal jitter: never hammer, and several devices do not retry in lockstep
            await asyncio.sleep(self._rng.uniform(delay / 2, delay))
            attempt += 1
            try:
                return await self._connect()
            except ConfigurationError as exc:
                # The server came back with another address space: retrying cannot help.
                # Fault, but do not raise: a dying background loop would cancel the owner.
                self._publish_stale(f"reconnect refused: {exc.message}")
                self._set_state(DeviceState.FAULT, str(exc))
                return None
            except LabDeviceError as exc:
                self.outage_reason = f"reconnect attempt {attempt} failed: {exc.message}"
                self._publish_stale(self.outage_reason)

    def _publish_stale(self, reason: str) -> None:
        now = time.time()
        for name in self._handles.values():
            sig = self.profile.signals[name]
            self._publish(Sample(self.name, name, None, sig.unit, now, "stale", reason))

    def _sample(self, name: str, dv: ua.DataValue) -> Sample:
        sig = self.profile.signals[name]
        status = dv.StatusCode
        value = dv.Value.Value if dv.Value is not None else None
        if isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if status is None or status.is_good():
            return Sample(self.name, name, value, sig.unit, _timestamp(dv))
        if status.is_uncertain():
            return Sample(
                self.name, name, value, sig.unit, _timestamp(dv), "stale",
                f"server reports {status_name(status)}",
            )  # fmt: skip
        return Sample(
            self.name, name, None, sig.unit, _timestamp(dv), "bad",
            f"server reports {status_name(status)}",
        )  # fmt: skip

    # -- I/O -------------------------------------------------------------------
    def _live(self) -> OpcUaLink:
        if self._link is None or not self._connected.is_set():
            why = f" (reconnecting: {self.outage_reason})" if self.outage_reason else ""
            raise DeviceConnectionError(f"not connected{why}", device=self.name)
        return self._link

    async def wait_connected(self) -> None:
        """Return once a session is up (at once if it is)."""
        await self._connected.wait()

    async def read(self, signal: str) -> Sample:
        """Read one signal now (not from the subscription)."""
        self.signal(signal)
        link = self._live()
        dv = await link.read(self._signal_ids[signal], f"read {signal}")
        return self._sample(signal, dv)

    async def read_all(self) -> dict[str, Sample]:
        """Every signal in one request."""
        link = self._live()
        names = list(self.profile.signals)
        values = await link.request(
            "read signals",
            link.client.uaclient.read_attributes(
                [self._signal_ids[n] for n in names], ua.AttributeIds.Value
            ),
        )
        return {n: self._sample(n, dv) for n, dv in zip(names, values, strict=True)}

    async def write(self, signal: str, value: float) -> None:
        """Write one signal after checking the profile's limits (nothing is sent if they fail)."""
        sig = self.check_write(signal, value)
        assert isinstance(sig, OpcUaSignal)
        variant = self._variant(signal, sig.data_type, value)
        link = self._live()
        await link.write(self._signal_ids[signal], variant, f"write {signal} = {value}")

    def _variant(self, where: str, data_type: str, value: object) -> ua.Variant:
        try:
            converted = coerce_value(data_type, value)
        except ValueError as exc:
            raise LimitViolation(f"{where}: {exc}", device=self.name, signal=where) from None
        return ua.Variant(converted, getattr(ua.VariantType, data_type))

    async def call(self, method: str, *args: object) -> list[Any]:
        """Call a profile method with checked arguments; returns its output values."""
        try:
            spec = self.profile.methods[method]
        except KeyError:
            known = ", ".join(sorted(self.profile.methods)) or "none"
            raise LabDeviceError(
                f"unknown method {method!r} (known: {known})", device=self.name
            ) from None
        if len(args) != len(spec.arguments):
            wanted = ", ".join(a.name for a in spec.arguments) or "no arguments"
            raise LabDeviceError(
                f"{method} takes {len(spec.arguments)} argument(s) ({wanted}), got {len(args)}",
                device=self.name,
            )
        variants = [
            ua.Variant(a.convert(self.name, method, v), getattr(ua.VariantType, a.type))
            for a, v in zip(spec.arguments, args, strict=True)
        ]
        link = self._live()
        obj, meth = self._method_ids[method]
        return await link.call(obj, meth, variants, f"call {method}", spec.timeout_s)

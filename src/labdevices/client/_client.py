"""``LabClient``: the async Python client of a labdevices daemon, over its MQTT API.

Results are typed dataclasses; an error reply is raised as the ``labdevices.errors``
class of its code (``LimitViolation``, ``UnknownDevice``, ``JobRejected``, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pydantic import JsonValue

from ..auth import broker_token
from ..bus import BusClient, BusMessage, MalformedRequest, RemoteError, Topics
from ..daemon import _errors as _daemon_errors  # noqa: F401  (their codes map back to classes)
from ..daemon import daemon_command_topic, parse_broker_urls
from ..errors import ConfigurationError, LabDeviceError, ProtocolError
from ._session import Session, is_loopback, refuse_clear_password

__all__ = [
    "TERMINAL_JOB_STATES",
    "AlarmInfo",
    "DaemonInfo",
    "DeviceInfo",
    "DeviceState",
    "DeviceStatus",
    "JobEvent",
    "JobInfo",
    "LabClient",
    "Reading",
    "SignalInfo",
    "SignatureInfo",
    "SiteStatus",
]

log = logging.getLogger("labdevices.client")

TERMINAL_JOB_STATES = frozenset({"completed", "failed", "cancelled", "interrupted"})


@dataclass(frozen=True)
class Reading:
    """One sample of one signal; ``t`` is seconds since the epoch."""

    device: str
    signal: str
    value: float | bool | str | None
    unit: str
    t: float
    quality: str = "good"


@dataclass(frozen=True)
class SignalInfo:
    unit: str
    writable: bool
    min: float | None
    max: float | None


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    state: str
    profile: str
    driver: str
    error: str | None
    signals: dict[str, SignalInfo]
    #: the daemon of the site that owns the device
    daemon: str | None = None


@dataclass(frozen=True)
class DeviceState:
    """A device's state as the daemon published it (``{device}/state``).

    ``state`` is ``unknown`` while the daemon's status says it is offline: nobody watches
    the device then, whatever its last published state said. ``since`` (epoch seconds) is
    then the last time the daemon was known alive — its last heartbeat this client saw, or
    the time of its clean goodbye, else the start of the connection it lost.
    """

    device: str
    state: str
    t: float | None = None
    error: str | None = None
    profile: str | None = None
    driver: str | None = None
    daemon_online: bool = True
    since: float | None = None
    #: the daemon of the site that owns the device
    daemon: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> DeviceState:
        if not isinstance(data, dict) or not isinstance(data.get("device"), str):
            raise ProtocolError(f"a device state must be an object with a device, got {data!r}")
        daemon = data.get("daemon")
        return cls(
            data["device"],
            str(data.get("state")),
            data.get("t"),
            data.get("error"),
            data.get("profile"),
            data.get("driver"),
            daemon=daemon if isinstance(daemon, str) else None,
        )


@dataclass
class _DaemonLiveness:
    """What a client knows of one daemon from its retained status."""

    online: bool | None = None
    #: the last time it was known alive, while it is offline
    since: float | None = None
    #: (connected_at, t) of its last heartbeat
    alive: tuple[Any, float] | None = None

    def update(self, status: dict[str, Any]) -> bool:
        """Take a status message in; whether online/offline changed."""
        was, self.online = self.online, bool(status.get("online"))
        connected_at, t = status.get("connected_at"), status.get("t")
        if self.online:
            self.alive = (connected_at, t) if isinstance(t, int | float) else self.alive
        elif isinstance(t, int | float):
            self.since = t  # a goodbye knows its own time
        elif self.alive is not None and self.alive[0] == connected_at:
            self.since = self.alive[1]  # the last heartbeat seen of the lost connection
        else:
            self.since = connected_at if isinstance(connected_at, int | float) else None
        return self.online != was


@dataclass(frozen=True)
class JobInfo:
    """A print job as the daemon reports it; ``line`` is the last line the printer acknowledged."""

    job_id: int
    printer: str
    state: str
    lines_total: int
    line: int
    gcode_sha256: str | None = None
    batch_id: str | None = None
    patient_id: str | None = None
    bioinks: list[Any] = field(default_factory=list)
    error: str | None = None
    created_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    name: str | None = None
    submitted_by: str | None = None
    #: the submitter's printed name (None when the id names no registered user)
    submitted_by_name: str | None = None
    profile: str | None = None
    #: SHA-256 of what a signature on this job signs (spec, G-code hash, bioinks with lots)
    content_sha256: str | None = None
    #: GMP mode: the job waits, ``held``, for a supervisor's release signature
    release_required: bool = False
    signatures: list[SignatureInfo] = field(default_factory=list)
    #: the id of the daemon's store (in a submit reply): job ids restart in a new store
    store_id: str | None = None

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_JOB_STATES

    @classmethod
    def from_json(cls, data: Any) -> JobInfo:
        if not isinstance(data, dict):
            raise ProtocolError(f"a job must be an object, got {data!r}")
        names = cls.__dataclass_fields__
        fields = {k: v for k, v in data.items() if k in names and v is not None}
        fields["signatures"] = [SignatureInfo.from_json(s) for s in fields.get("signatures", [])]
        return cls(**fields)


@dataclass(frozen=True)
class SignatureInfo:
    """An electronic signature: ``manifestation`` is printed name, UTC time and meaning."""

    id: int
    object: str
    user_id: str
    full_name: str
    meaning: str
    time: str
    content_sha256: str
    comment: str | None = None
    manifestation: str = ""

    @classmethod
    def from_json(cls, data: Any) -> SignatureInfo:
        if not isinstance(data, dict):
            raise ProtocolError(f"a signature must be an object, got {data!r}")
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class JobEvent:
    """A job event: ``kind`` is ``progress`` or ``state``; ``seq`` grows by one per job
    (and jumps ahead, never back, when a restarted daemon takes the job up again);
    ``store_id`` names the store the job belongs to."""

    kind: str
    job_id: int
    seq: int
    line: int
    lines_total: int
    state: str | None = None
    error: str | None = None
    store_id: str | None = None

    @property
    def fraction(self) -> float:
        return self.line / self.lines_total if self.lines_total else 1.0


@dataclass(frozen=True)
class AlarmInfo:
    alarm_id: int
    device: str
    name: str
    severity: str
    raised_at: float
    active: bool
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    cleared_at: float | None = None
    reason: str | None = None
    event: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> AlarmInfo:
        if not isinstance(data, dict):
            raise ProtocolError(f"an alarm must be an object, got {data!r}")
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class DeviceStatus:
    """A device as ``status`` reports it: what ``describe`` says, and its last values."""

    info: DeviceInfo
    values: dict[str, Reading]


@dataclass(frozen=True)
class DaemonInfo:
    """A daemon of the site, as its leases in the store say: ``live`` while it renews them."""

    daemon: str
    live: bool
    leader: bool
    devices: list[str]


@dataclass(frozen=True)
class SiteStatus:
    """The site at a glance: its daemons, every device of its live daemons with last values,
    active alarms, jobs not yet ended."""

    site: str
    devices: list[DeviceStatus]
    alarms: list[AlarmInfo]
    jobs: list[JobInfo]
    daemons: list[DaemonInfo] = field(default_factory=list)


def _reading(data: Any) -> Reading:
    if not isinstance(data, dict):
        raise ProtocolError(f"a reading must be an object, got {data!r}")
    return Reading(
        data["device"],
        data["signal"],
        data["value"],
        data.get("unit", ""),
        data["t"],
        data.get("quality", "good"),
    )


def _event(message: BusMessage) -> JobEvent:
    data = message.json()
    kind = "state" if message.topic.endswith("/state") else "progress"
    return JobEvent(
        kind,
        int(data["job_id"]),
        int(data.get("seq", 0)),
        int(data.get("line", 0)),
        int(data.get("lines_total", 0)),
        data.get("state"),
        data.get("error"),
        data.get("store_id"),
    )


def _device_info(d: Any) -> DeviceInfo:
    if not isinstance(d, dict):
        raise ProtocolError(f"a device must be an object, got {d!r}")
    daemon = d.get("daemon")
    return DeviceInfo(
        d["device"],
        d["state"],
        d["profile"],
        d["driver"],
        d.get("error"),
        {k: SignalInfo(**v) for k, v in d.get("signals", {}).items()},
        daemon if isinstance(daemon, str) else None,
    )


def _clean(args: dict[str, JsonValue]) -> dict[str, JsonValue]:
    return {k: v for k, v in args.items() if v is not None}


class LabClient:
    """``async with LabClient("mqtt://127.0.0.1:1883", site="demo", session_file=...) as lab: ...``.

    Who acts is decided by the daemon from the session, so the client needs one of:

    - ``session`` (a ``Session``) or ``session_file`` (what ``labdevices login`` wrote);
    - ``user`` and ``password``: it logs in on entering (and, unless the URL names other
      broker credentials, uses them for the broker too). A password is refused over plain
      ``mqtt://`` to a broker that is not on this machine: use ``mqtts://``.

    Without any, requests go unauthenticated (a daemon with ``[auth] required = false``);
    ``actor`` is then the claimed name. ``client_id`` makes the MQTT session persistent,
    so a broker restart loses no reply or event. ``ca_file`` is the CA bundle for mqtts://.

    ``url`` may name several bridged brokers of the site (a list, or comma-separated):
    the client fails over between them in order (docs/brokers.md).
    """

    def __init__(
        self,
        url: str | Sequence[str] = "mqtt://127.0.0.1:1883",
        *,
        site: str,
        user: str | None = None,
        password: str | None = None,
        session: Session | None = None,
        session_file: str | Path | None = None,
        actor: str | None = None,
        client_id: str | None = None,
        ca_file: str | Path | None = None,
        timeout: float = 10.0,
        connect_timeout: float = 10.0,
        **bus_options: Any,
    ) -> None:
        try:
            brokers = parse_broker_urls(url)
        except ValueError as exc:
            raise ConfigurationError(f"broker url: {exc}") from None
        (host, port), *failover = brokers.endpoints
        tls, url_user, url_password = brokers.tls, brokers.user, brokers.password
        if session is None and session_file is not None:
            session = Session.load(session_file)
        if session is not None:
            if session.site != site:
                raise ConfigurationError(
                    f"the session is for site {session.site!r}, not {site!r}; log in to {site!r}"
                )
            user = session.user
        if password is not None and user is None:
            raise ConfigurationError("a password needs a user")
        if password is not None or url_password is not None:
            for endpoint, _ in brokers.endpoints:
                refuse_clear_password(endpoint, tls)
        if tls and "tls_context" not in bus_options:
            bus_options["tls_context"] = ssl.create_default_context(
                cafile=str(ca_file) if ca_file else None
            )
        # The broker's own credentials: those in the URL, else the user's (the broker's
        # password file is written from the same user registry: labdevices broker-config),
        # else — over TLS or loopback only — a token of the session (the embedded broker
        # accepts it; Mosquitto's password file does not: give --user there).
        broker_password = url_password or password
        if (
            broker_password is None
            and session is not None
            and (tls or all(is_loopback(h) for h, _ in brokers.endpoints))
        ):
            broker_password = broker_token(session.id, session.secret)
        bus_options.setdefault("username", url_user or (user if broker_password else None))
        bus_options.setdefault("password", broker_password)
        bus_options.setdefault("reconnect_max_s", 1.0)
        self._bus = BusClient(
            host,
            port,
            failover=failover,
            site=site,
            client_id=client_id,
            # Without a user, replies (errors only, from a daemon requiring auth) come here.
            inbox_owner=user or "anonymous",
            # The daemon's reconnect (perhaps to another broker) sends unanswered requests again.
            responder_status=Topics(site).daemon_status(),
            signer=session.sign if session is not None else None,
            **bus_options,
        )
        self.site = site
        self.user = user
        self.session = session
        self._password = password
        self.actor = actor if actor is not None or user is not None else self._bus.client_id
        self.timeout = timeout
        self._connect_timeout = connect_timeout
        self.topics = self._bus.topics

    @classmethod
    def discover(cls, site: str | None = None, **options: Any) -> LabClient:
        """A client of the daemon running on this machine, as ``labdevices daemon`` announced
        it (its runtime file), with the session of ``labdevices login`` unless ``options``
        name other credentials. ``ConfigurationError`` when none (or several sites) run."""
        from ..daemon import find_daemons

        running = find_daemons(site)
        if len(running) != 1:
            what = "no daemon" if not running else "daemons of several sites"
            raise ConfigurationError(
                f"{what} announced on this machine"
                + (f" for site {site!r}" if site else "")
                + ": start `labdevices daemon -c CONFIG`, or give the broker URL and site "
                "(LabClient(url, site=...))"
            )
        found = running[0]
        if not {"session", "session_file", "user"} & set(options):
            from ._session import default_session_path

            options["session_file"] = default_session_path(found.site)
        return cls(found.broker, site=found.site, **options)

    @property
    def bus(self) -> BusClient:
        return self._bus

    async def __aenter__(self) -> Self:
        await self._bus.__aenter__()
        try:
            await self._bus.wait_connected(self._connect_timeout)
            if self.session is None and self._password is not None:
                await self.login()
        except BaseException as exc:
            await self._bus.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Not handing the exception on: the bus's TaskGroup would wrap it in an ExceptionGroup.
        await self._bus.__aexit__(None, None, None)

    async def daemon_status(self, timeout: float = 5.0) -> dict[str, Any] | None:
        """The retained status of a daemon of this site (``{"online": bool, "daemon": name,
        ...}``): the first online one, else (after ``timeout`` s) the last offline one seen,
        or None when no daemon has announced itself on this broker."""
        offline: dict[str, Any] | None = None
        try:
            async with (
                asyncio.timeout(timeout),
                self._bus.subscribe(self.topics.daemon_status()) as sub,
            ):
                async for message in sub:
                    data = message.json()
                    if isinstance(data, dict):
                        if data.get("online"):
                            return data
                        offline = data
        except TimeoutError:
            return offline
        return offline

    # -- identity -----------------------------------------------------------------------------

    async def login(self, password: str | None = None) -> Session:
        """Exchange the user's password for a session (kept on this client; see ``Session.save``)."""
        secret = password if password is not None else self._password
        if self.user is None or secret is None:
            raise ConfigurationError("login needs a user and a password")
        topic = daemon_command_topic(self.topics.root, "login")
        previous = self._bus.signer
        # A login carries its issue time (the daemon refuses stale ones) but no session yet.
        self._bus.signer = lambda _topic, req: req.model_copy(update={"t": time.time()})
        try:
            result = await self._bus.request(
                topic, {"user": self.user, "password": secret}, timeout=self.timeout
            )
        finally:
            self._bus.signer = previous
        self._password = None  # kept no longer than needed
        self.session = Session.from_login_reply(self.site, result)
        self._bus.signer = self.session.sign
        return self.session

    async def logout(self) -> None:
        """Revoke this client's session at the daemon."""
        await self._daemon("logout")
        self.session = None
        self._bus.signer = None

    async def whoami(self) -> dict[str, Any]:
        """The user the daemon sees behind this client's session: id, full name, roles."""
        result = await self._daemon("whoami")
        assert isinstance(result, dict)
        return result

    async def request(
        self, topic: str, args: dict[str, JsonValue] | None = None, *, timeout: float | None = None
    ) -> JsonValue:
        """A raw request; an error reply is raised as its ``labdevices.errors`` class."""
        try:
            return await self._bus.request(
                topic, args or {}, timeout=timeout or self.timeout, actor=self.actor
            )
        except RemoteError as exc:
            if exc.code == "malformed_request":
                mapped = MalformedRequest(exc.message.removeprefix("[malformed_request] "))
                mapped.device = exc.device
                raise mapped from None
            raise

    async def _device(self, device: str, command: str, **args: JsonValue) -> JsonValue:
        return await self.request(self.topics.command(device, command), _clean(args))

    async def _daemon(self, command: str, **args: JsonValue) -> JsonValue:
        return await self.request(daemon_command_topic(self.topics.root, command), _clean(args))

    # -- devices and signals ------------------------------------------------------------------

    async def devices(self) -> list[DeviceInfo]:
        """Every device of the site: each live daemon's (``devices`` asked of each one)."""
        site = await self._status()
        names: list[str | None] = [
            str(d["daemon"])
            for d in site.get("daemons") or []
            if isinstance(d, dict) and d.get("live")
        ]
        answers = await self._per_daemon("devices", names or [None])
        return [_device_info(d) for answer in answers for d in answer if isinstance(d, dict)]

    @contextlib.asynccontextmanager
    async def device_states(self, device: str = "+") -> AsyncIterator[AsyncIterator[DeviceState]]:
        """States of one device (or all) as the daemon publishes them, retained ones first.

        While the status of a device's daemon (the one the state names; a site may have
        several) says it is offline (its last will, or its goodbye), the device is reported
        ``unknown`` (``daemon_online`` False, ``since`` the last time that daemon was known
        alive), and so is any state of it arriving meanwhile; when the daemon is back, the
        states it publishes are reported again. Nothing is reported of a device before its
        daemon's status is known.
        """
        status_filter = self.topics.daemon_status()
        status_prefix = status_filter.removesuffix("+")
        topic = self.topics.all_states() if device == "+" else self.topics.state(device)
        async with self._bus.subscribe([status_filter, topic], maxsize=10_000) as sub:

            async def states() -> AsyncIterator[DeviceState]:
                last: dict[str, DeviceState] = {}
                daemons: dict[str, _DaemonLiveness] = {}

                def liveness(state: DeviceState) -> _DaemonLiveness | None:
                    if state.daemon is not None:
                        return daemons.get(state.daemon)
                    # a daemon that does not name itself in its states: the site's only one
                    return next(iter(daemons.values())) if len(daemons) == 1 else None

                def shown(state: DeviceState, of: _DaemonLiveness) -> DeviceState:
                    if of.online:
                        return state
                    return dataclasses.replace(
                        state, state="unknown", daemon_online=False, since=of.since
                    )

                async for message in sub:
                    if message.topic.startswith(status_prefix):
                        try:
                            status = message.json()
                        except LabDeviceError:
                            continue
                        if not isinstance(status, dict):
                            continue
                        name = message.topic.removeprefix(status_prefix)
                        one = daemons.setdefault(name, _DaemonLiveness())
                        if one.update(status):
                            for state in list(last.values()):
                                if liveness(state) is one:
                                    yield shown(state, one)
                        continue
                    try:
                        state = DeviceState.from_json(message.json())
                    except LabDeviceError:
                        continue
                    last[state.device] = state
                    of = liveness(state)
                    if of is not None:
                        yield shown(state, of)

            yield states()

    async def read(self, device: str, signal: str) -> Reading:
        return _reading(await self._device(device, "read", signal=signal))

    async def write(
        self, device: str, signal: str, value: float, *, reason: str | None = None
    ) -> None:
        """Set a writable signal; ``LimitViolation`` (nothing written) outside the profile's limits."""
        await self._device(device, "write", signal=signal, value=value, reason=reason)

    @contextlib.asynccontextmanager
    async def telemetry(self, device: str = "+") -> AsyncIterator[AsyncIterator[Reading]]:
        """Readings of one device (or all) as they arrive, while the context is open."""
        topic = self.topics.all_telemetry() if device == "+" else self.topics.telemetry(device)
        async with self._bus.subscribe(topic, maxsize=10_000) as sub:

            async def readings() -> AsyncIterator[Reading]:
                async for message in sub:
                    batch = message.json()
                    for s in batch.get("samples", []):
                        yield Reading(
                            batch["device"],
                            s["signal"],
                            s["value"],
                            s.get("unit", ""),
                            s["t"],
                            s.get("quality", "good"),
                        )

            yield readings()

    # -- printers and jobs --------------------------------------------------------------------

    async def submit(
        self,
        *,
        printer: str | None = None,
        gcode: str | None = None,
        job: dict[str, Any] | Path | None = None,
        batch_id: str | None = None,
        patient_id: str | None = None,
        name: str | None = None,
    ) -> JobInfo:
        """Submit G-code text or a toolpath job (a spec dict, or a TOML/JSON job file)."""
        spec: JsonValue = None
        if isinstance(job, Path):
            from ..toolpath import load_job

            spec = load_job(job).model_dump(mode="json")
        elif job is not None:
            spec = job
        args: dict[str, JsonValue] = {
            "printer": printer,
            "gcode": gcode,
            "job": spec,
            "batch_id": batch_id,
            "patient_id": patient_id,
            "name": name,
        }
        clean = _clean(args)
        # Planning can take a while on a cold daemon: allow for it.
        result = await self.request(self.topics.job_submit(), clean, timeout=max(self.timeout, 120))
        return JobInfo.from_json(result)

    async def run(self, **submit_args: Any) -> AsyncGenerator[JobInfo | JobEvent, None]:
        """Submit a job and yield its ``JobInfo``, then every event until it ends.

        Leaving the loop early? Close it: ``async with contextlib.aclosing(lab.run(...))``.
        """
        async with self._bus.subscribe(self.topics.job_events()) as sub:
            info = await self.submit(**submit_args)
            yield info
            # The submit reply names the store: a retained state of another store's job
            # with the same id is not this job's.
            events = self._events(sub, info.job_id, store_id=info.store_id)
            async with contextlib.aclosing(events) as stream:
                async for event in stream:
                    yield event

    async def follow(self, job_id: int) -> AsyncGenerator[JobEvent, None]:
        """Events of a job from now until it ends (its retained state first).

        The job is the one of the daemon's current store, which the daemon's retained status
        names: events wait until that status is known, and those of another store's job with
        the same id are ignored.
        """
        status = self.topics.daemon_status()
        async with (
            self._bus.subscribe([status, *self.topics.job_events(str(job_id))]) as sub,
            contextlib.aclosing(self._events(sub, job_id, status_topic=status)) as events,
        ):
            async for event in events:
                yield event

    async def _events(
        self,
        sub: Any,
        job_id: int,
        *,
        store_id: str | None = None,
        status_topic: str | None = None,
    ) -> AsyncGenerator[JobEvent, None]:
        """A job's events until it ends. The store is ``store_id``, or with ``status_topic``
        the one the daemon's status names (events are held back until it is known)."""
        # Delivery is at least once, and a reconnect re-sends the retained state: ``seq``
        # tells a repeat from news.
        last_seq = 0
        known = status_topic is None
        held: list[JobEvent] = []
        status_prefix = None if status_topic is None else status_topic.removesuffix("+")
        async for message in sub:
            if status_prefix is not None and message.topic.startswith(status_prefix):
                with contextlib.suppress(LabDeviceError):
                    status = message.json()
                    if isinstance(status, dict):
                        store_id = status.get("store_id")
                        known = True
                batch, held = (held, []) if known else ([], held)
            else:
                try:
                    event = _event(message)
                except (KeyError, TypeError, ValueError, LabDeviceError):
                    continue
                if not known:
                    held.append(event)
                    continue
                batch = [event]
            for event in batch:
                if event.job_id != job_id or event.seq <= last_seq:
                    continue
                if store_id is not None and event.store_id != store_id:
                    continue  # a retained state left by another store's job of the same id
                last_seq = event.seq
                yield event
                if event.kind == "state" and event.state in TERMINAL_JOB_STATES:
                    return

    async def job(self, job_id: int) -> JobInfo:
        return JobInfo.from_json(await self._daemon("job", job_id=job_id))

    async def jobs(
        self, *, state: str | None = None, printer: str | None = None, limit: int = 100
    ) -> list[JobInfo]:
        result = await self._daemon("jobs", state=state, printer=printer, limit=limit)
        assert isinstance(result, list)
        return [JobInfo.from_json(j) for j in result]

    async def sign(
        self,
        job_id: int,
        *,
        meaning: str,
        password: str,
        comment: str | None = None,
        content_sha256: str | None = None,
    ) -> tuple[SignatureInfo, JobInfo]:
        """Sign a job electronically as the logged-in user, re-entering the password.

        ``content_sha256`` is the job content the signer was shown (``JobInfo.content_sha256``);
        without it the job is fetched first. The daemon refuses (nothing signed) a wrong
        password (``Unauthenticated``), content that changed since (``ContentMismatch``),
        and a release by the submitter or by a non-supervisor (``Forbidden``). A release of
        a held job lets it start.
        """
        if content_sha256 is None:
            content_sha256 = (await self.job(job_id)).content_sha256
            if content_sha256 is None:
                raise ProtocolError(f"job {job_id} has no content hash to sign")
        result: Any = await self._daemon(
            "sign",
            job_id=job_id,
            meaning=meaning,
            user=self.user or self.actor,
            password=password,
            comment=comment,
            content_sha256=content_sha256,
        )
        if not isinstance(result, dict):
            raise ProtocolError(f"a sign reply must be an object, got {result!r}")
        return SignatureInfo.from_json(result["signature"]), JobInfo.from_json(result["job"])

    async def pause(
        self, printer: str, *, job_id: int | None = None, reason: str | None = None
    ) -> JobInfo:
        return JobInfo.from_json(await self._device(printer, "pause", job_id=job_id, reason=reason))

    async def resume(
        self, printer: str, *, job_id: int | None = None, reason: str | None = None
    ) -> JobInfo:
        return JobInfo.from_json(
            await self._device(printer, "resume", job_id=job_id, reason=reason)
        )

    async def cancel(
        self, printer: str, *, job_id: int | None = None, reason: str | None = None
    ) -> JobInfo:
        return JobInfo.from_json(
            await self._device(printer, "cancel", job_id=job_id, reason=reason)
        )

    async def estop(self, printer: str, *, reason: str | None = None) -> None:
        await self._device(printer, "estop", reason=reason)

    async def status(self) -> SiteStatus:
        """The whole site: its daemons, every device of each live daemon with its state and
        last values, the active alarms, the jobs not yet ended.

        The site's leader answers with the daemons, alarms and jobs (one store) and its own
        devices; each other live daemon is asked for its devices (``status`` with ``daemon``).
        """
        result = await self._status()
        answered = result.get("daemon")
        daemons = [
            DaemonInfo(str(d["daemon"]), bool(d["live"]), bool(d["leader"]), list(d["devices"]))
            for d in result.get("daemons") or []
            if isinstance(d, dict)
        ]
        devices = list(result["devices"])
        others = [d.daemon for d in daemons if d.live and d.daemon != answered]
        for one in await self._per_daemon("status", others):
            devices.extend(one["devices"])
        return SiteStatus(
            str(result["site"]),
            [
                DeviceStatus(
                    _device_info(d),
                    {k: _reading(v) for k, v in (d.get("values") or {}).items()},
                )
                for d in devices
            ],
            [AlarmInfo.from_json(a) for a in result["alarms"]],
            [JobInfo.from_json(j) for j in result["jobs"]],
            daemons,
        )

    async def _per_daemon(self, command: str, daemons: Sequence[str | None]) -> list[Any]:
        """``command`` asked of each daemon (None: the leader) at once; the answers of those
        that answered (one stopped meanwhile is left out, and logged)."""
        answers = await asyncio.gather(
            *(self._daemon(command, daemon=name) for name in daemons), return_exceptions=True
        )
        out = []
        for name, answer in zip(daemons, answers, strict=True):
            if isinstance(answer, LabDeviceError):
                log.warning("daemon %r of site %r did not answer: %s", name, self.site, answer)
                continue
            if isinstance(answer, BaseException):
                raise answer
            out.append(answer)
        return out

    async def _status(self, daemon: str | None = None) -> dict[str, Any]:
        result: Any = await self._daemon("status", daemon=daemon)
        if not isinstance(result, dict):
            raise ProtocolError(f"a status must be an object, got {result!r}")
        return result

    async def clear_fault(self, device: str, *, reason: str) -> DeviceInfo:
        """Bring a device out of ``fault`` (a supervisor's; audited with ``reason``): the daemon
        restarts it (a printer's firmware with ``M999``) and replies once it is idle again."""
        result: Any = await self._device(device, "clear_fault", reason=reason)
        return _device_info(result)

    async def describe(self, device: str) -> DeviceInfo:
        """One device: state, profile, driver, last error, signals with units and limits."""
        return _device_info(await self._device(device, "describe"))

    # -- alarms -------------------------------------------------------------------------------

    async def alarms(self, *, active_only: bool = False) -> list[AlarmInfo]:
        result = await self._daemon("alarms", active_only=active_only)
        assert isinstance(result, list)
        return [AlarmInfo.from_json(a) for a in result]

    async def ack_alarm(self, alarm_id: int, *, reason: str | None = None) -> AlarmInfo:
        """Acknowledge an alarm as this client's ``actor`` (audited)."""
        return AlarmInfo.from_json(
            await self._daemon("ack_alarm", alarm_id=alarm_id, reason=reason)
        )

    @contextlib.asynccontextmanager
    async def alarm_events(self) -> AsyncIterator[AsyncIterator[AlarmInfo]]:
        """Alarms raised, cleared and acknowledged, as they happen."""
        async with self._bus.subscribe(self.topics.all_alarms()) as sub:

            async def events() -> AsyncIterator[AlarmInfo]:
                async for message in sub:
                    yield AlarmInfo.from_json(message.json())

            yield events()

"""The ``Daemon``: one async context manager that owns the store, the bus, the devices, the jobs and
the interlocks, with every background task in one TaskGroup.

Shutdown (exit, or ``stop()`` from a signal handler): running jobs are paused
safely and recorded as interrupted, devices closed, telemetry flushed to the
store, device states and the daemon's status published offline, the store closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from pydantic import JsonValue

from ..auth import SESSION_PURPOSE, BrokerRules
from ..bus import (
    MAX_JOB_REQUEST_BYTES,
    BusClient,
    TelemetryPublisher,
    Topics,
    start_embedded_broker,
)
from ..devices import Sample
from ..errors import ConfigurationError, DeviceConnectionError, LabDeviceError
from ..store import (
    AlarmRecord,
    Checkpoint,
    CheckpointSigner,
    Deadband,
    RetentionSummary,
    Store,
    default_key_path,
    derive_key,
    load_or_create_signing_key,
    open_store,
)
from ._auth import AuthCommands, BrokerLogin, RequestGuard
from ._commands import CommandRouter
from ._config import (
    BrokerList,
    LoadedConfig,
    parse_broker_urls,
    redact_url,
    split_broker_urls,
)
from ._errors import SiteConflict
from ._interlocks import InterlockEngine, alarm_json
from ._jobs import JobManager
from ._site import DEFAULT_LEASE_S, SiteMembership
from ._supervisor import DeviceSlot, Supervisor
from ._telemetry import TelemetryPipeline

if TYPE_CHECKING:
    from ..web import LiveHub, WebServer

__all__ = ["Daemon"]

log = logging.getLogger("labdevices.daemon")


class Daemon:
    """``async with Daemon(load_config(path)) as daemon: await daemon.wait_stopped()``.

    Entering opens the store (recording the config load), recovers jobs a previous
    run left live (interrupted, never resumed), connects to the broker (or starts
    an embedded one), starts every device concurrently and begins serving. It
    waits up to ``wait_for_broker_s`` for the broker's first connection, not for
    the devices; both are retried in the background.
    """

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        telemetry_linger_s: float = 0.002,
        wait_for_broker_s: float = 10.0,
        heartbeat_s: float = 10.0,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.site = self.config.site
        #: this daemon's name among the daemons of its site
        self.daemon_id = loaded.daemon_id
        self._lease_s = lease_s
        self.broker_url: str | None = None
        self.slots = {
            name: DeviceSlot(name, dev, loaded.profiles[name])
            for name, dev in self.config.devices.items()
        }
        self.recovered: list[int] = []
        self._telemetry_linger_s = telemetry_linger_s
        self._wait_for_broker_s = wait_for_broker_s
        self._heartbeat_s = heartbeat_s
        self.store_id: str | None = None
        self._stack: AsyncExitStack | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._spawned: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._state: str = "new"
        self._deadbands: dict[str, Deadband] = {}
        self._unpublished: list[tuple[int, Checkpoint]] = []
        self.store: Store
        self.bus: BusClient
        self.pipeline: TelemetryPipeline
        self.jobs: JobManager
        self.interlocks: InterlockEngine
        self.router: CommandRouter
        self.site_member: SiteMembership
        #: the dashboard, when ``[web]`` is configured
        self.web: WebServer | None = None
        #: the number and signed note of the newest checkpoint of the audit chain
        self.last_checkpoint: tuple[int, str] | None = None
        #: what the last telemetry retention run did; ``retention_ran`` is set after each
        self.last_retention: RetentionSummary | None = None
        self.retention_ran = asyncio.Event()

    def __repr__(self) -> str:
        return (
            f"Daemon(site={self.site!r}, daemon={self.daemon_id!r}, {len(self.slots)} devices, "
            f"{self._state})"
        )

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise RuntimeError(f"{self!r} cannot be entered twice")
        self._state = "starting"
        for name, slot in self.slots.items():
            if slot.config.address is None:
                raise ConfigurationError(
                    f"{self.loaded.source}: devices.{name}.address: no address (start its simulated lab)",
                    file=self.loaded.source,
                    device=name,
                )
        stack = self._stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            await self._start(stack)
        except BaseException:
            self._state = "closed"
            await self._cancel_tasks()
            await stack.__aexit__(None, None, None)
            raise
        self._state = "open"
        return self

    async def _start(self, stack: AsyncExitStack) -> None:
        cfg = self.config
        started_at = time.time()
        self.store = await stack.enter_async_context(self._open_store())
        await self.store.record_config_load(self.loaded.source, self.loaded.sha256)
        self.store_id = await self.store.store_id()
        # Before anything else acts: the devices must be this daemon's on the site.
        self.site_member = SiteMembership(
            self.store,
            self.daemon_id,
            self.slots,
            source=self.loaded.source,
            lease_s=self._lease_s,
        )
        stack.push_async_callback(self.site_member.leave)  # also when starting fails
        try:
            await self.site_member.join()
        except SiteConflict as exc:
            await self.store.audit(
                self.daemon_id, "site.refused", f"daemon/{self.daemon_id}", reason=exc.message
            )
            raise
        # The session secrets come from the daemon's key (outside the database): the
        # database file alone cannot act as anyone.
        session_key = derive_key(
            load_or_create_signing_key(cfg.store.key_file or default_key_path(cfg.store.location)),
            SESSION_PURPOSE,
        )
        brokers = await self._broker(stack, session_key)
        tls_context = self._tls_context() if brokers.tls else None
        (host, port), *failover = brokers.endpoints
        user, password = brokers.user, brokers.password
        bus = BusClient(
            host,
            port,
            failover=failover,
            site=cfg.site,
            client_id=cfg.bus.client_id or f"labdevices-daemon-{cfg.site}-{self.daemon_id}",
            username=cfg.bus.username or user,
            password=self._broker_password() or password,
            tls_context=tls_context,
            protocol=cfg.bus.protocol,
            # Its last will marks us offline, and with us every device state (clients show
            # them ``unknown``); the heartbeat says when we were last alive.
            status_topic=Topics(cfg.site).daemon_status(self.daemon_id),
            status_extra={"store_id": self.store_id, "daemon": self.daemon_id},
            heartbeat_s=self._heartbeat_s,
            reconnect_max_s=2.0,
        )
        self.bus = bus
        for number, cp in self._unpublished:  # written before the bus existed (the ``open`` one)
            self._publish_checkpoint(number, cp)
        self._unpublished.clear()
        publisher = TelemetryPublisher(bus, linger_s=self._telemetry_linger_s)
        self.pipeline = TelemetryPipeline(
            publisher,
            self.store,
            self._accept,
            flush_interval_s=cfg.store.flush_interval_s,
        )
        self.jobs = JobManager(
            self.slots,
            self.store,
            bus,
            self.spawn,
            store_id=self.store_id,
            site=self.site_member,
        )
        self.router = CommandRouter(
            self.slots, self.jobs, self.store, bus, self.pipeline.latest, site=self.site_member
        )
        auth_commands = AuthCommands(self.store, bus, session_key, self._publish_alarm)
        self.router.daemon_commands.update(auth_commands.commands())
        self.guard: RequestGuard | None = None
        if cfg.auth.required:
            self.guard = RequestGuard(
                self.store,
                bus,
                session_key,
                known=self.router.knows,
                window_s=cfg.auth.replay_window_s,
                started_at=started_at,
            )
        else:
            log.warning(
                "AUTHENTICATION IS OFF ([auth] required = false): any client on the broker can "
                "act as anyone; use only for benchmarks or a closed test bench"
            )
            await self.store.audit(
                "daemon", "auth.disabled", "daemon", new={"required": False}, reason="config"
            )
        self.interlocks = InterlockEngine(
            cfg.interlocks,
            self.slots,
            self.jobs,
            self.store,
            bus,
            self.spawn,
            self.router.write_setpoint,
        )
        self.pipeline.add_listener(self.interlocks.on_sample)
        # Before serving: a job submitted now must not meet the recovery of the last run's.
        # (Their states are queued on the bus and go out once it connects.)
        recovered = await self.jobs.recover()
        self.recovered = [job.id for job in recovered]
        for job in recovered:
            log.warning("job %d was %s", job.id, job.error)

        await stack.enter_async_context(bus)
        # Subscribed before the bus's first connection can start (no await in between), so
        # the first session subscribes them all.
        # Every daemon of the site hears every request; the site membership decides which
        # one takes each (docs/site.md), before the guard.
        route = self.site_member.takes
        await bus.serve(
            bus.topics.commands(), self.router.handle_device, guard=self.guard, route=route
        )
        await bus.serve(  # a submission carries its G-code: a larger allowance
            bus.topics.job_submit(),
            self.jobs.submit,
            guard=self.guard,
            route=route,
            max_request_bytes=MAX_JOB_REQUEST_BYTES,
            max_args_bytes=MAX_JOB_REQUEST_BYTES,
        )
        await stack.enter_async_context(publisher)
        stack.push_async_callback(self._final_flush)
        self._tasks = await stack.enter_async_context(asyncio.TaskGroup())

        supervisor = Supervisor(
            self.slots,
            on_sample=self.pipeline.add,
            on_state=self._on_state,
            retry_min_s=cfg.device_retry_min_s,
            retry_max_s=cfg.device_retry_max_s,
        )
        for slot in self.slots.values():
            self._on_state(slot)
            self.spawn(supervisor.run(slot), f"device {slot.name}")
        self.spawn(self.pipeline.run_store_writer(), "telemetry store writer")
        self.spawn(self._checkpoint_loop(), "audit checkpoints")
        self.spawn(self.site_member.run(), "site leases")
        if cfg.retention is not None:
            self.spawn(self._retention_loop(), "telemetry retention")
        self.spawn(self.jobs.clear_foreign_states(), "clear other stores' job states")
        self.jobs.start()
        if cfg.web is not None:
            self._start_web(session_key)
        # Requests sent before the first connection would be lost (no session yet to keep
        # them): give the broker a moment, but run without it rather than not at all.
        try:
            await bus.wait_connected(self._wait_for_broker_s)
            log.info("daemon for site %r serving on %s", cfg.site, redact_url(self.broker_url))
        except DeviceConnectionError as exc:
            log.warning("%s; serving once it is reachable, devices run meanwhile", exc)

    def _start_web(self, session_key: bytes) -> None:
        """The dashboard, in this process: its actions run through the router, its live values
        come from the telemetry pipeline and the bus (device states, alarms)."""
        from ..web import LiveHub, WebBackend, WebServer, WebSessions, create_app

        cfg = self.config.web
        assert cfg is not None
        hub = LiveHub()
        sessions = WebSessions(self.store, session_key, idle_s=cfg.idle_minutes * 60.0)
        path = self.config.store.location
        backend = WebBackend(
            self.store,
            self.bus.topics,
            self.router,
            hub,
            sessions,
            self.jobs.submit,
            db_path=path,
            checkpoint=lambda: self.last_checkpoint,
        )
        host, port = cfg.address()
        web = WebServer(create_app(backend), host, port, hub)
        web.bind()
        self.web = web
        self.pipeline.add_listener(hub.on_sample)
        self.spawn(web.serve(), "web server")
        self.spawn(self._feed_web(hub), "web live feed")
        log.info("dashboard on %s", web.url)

    async def _feed_web(self, hub: LiveHub) -> None:
        topics = self.bus.topics
        filters = [topics.all_states(), topics.all_alarms(), topics.all_job_events()]
        async with self.bus.subscribe(filters) as sub:
            async for message in sub:
                try:
                    body = message.json()
                except ValueError:
                    continue
                if not isinstance(body, dict):
                    continue
                if message.topic.endswith("/alarm"):
                    kind = "alarm"
                elif "/jobs/" in message.topic:
                    kind = "job"
                else:
                    kind = "state"
                hub.publish({"type": kind, **body})

    @property
    def web_url(self) -> str | None:
        return self.web.url if self.web is not None else None

    # -- proof: signed checkpoints of the audit chain ------------------------------------------

    def _open_store(self) -> Store:
        """The store with the daemon's signing key (created at first start, outside the database)."""
        cfg = self.config.store
        key = load_or_create_signing_key(cfg.key_file or default_key_path(cfg.location))
        return open_store(
            cfg.location,
            auth_policy=self.config.auth.policy(),
            signer=CheckpointSigner(key, f"labdevices/{self.site}"),
            witness=cfg.witness_file,
            checkpoint_every_records=cfg.checkpoint_every_records,
            checkpoint_every_s=cfg.checkpoint_every_s,
            on_checkpoint=self._publish_checkpoint,
        )

    def _publish_checkpoint(self, number: int, cp: Checkpoint) -> None:
        """Each checkpoint, retained on ``audit/checkpoint`` for witnesses (``audit witness``)."""
        self.last_checkpoint = (number, cp.note)
        if not hasattr(self, "bus"):
            self._unpublished.append((number, cp))
            return
        with contextlib.suppress(Exception):  # closed at the very end: the file witness has it
            self.bus.post(
                self.bus.topics.audit_checkpoint(), {"n": number, "note": cp.note}, retain=True
            )

    async def _checkpoint_loop(self) -> None:
        """Anchor quiet periods too: records are never left unsigned longer than the cadence."""
        while True:
            await asyncio.sleep(self.config.store.checkpoint_every_s)
            try:
                await self.store.checkpoint()
            except LabDeviceError as exc:
                log.error("audit checkpoint failed: %s", exc)

    async def _retention_loop(self) -> None:
        """Raw telemetry past its policy: archived, rolled up, removed (``run_retention``) in
        small steps on a thread of its own, so ingest never waits long; first one interval
        after the start (not while the daemon is busy starting)."""
        cfg = self.config.retention
        assert cfg is not None
        policy = cfg.policy()
        more = False
        while True:
            if not more:  # a backlog (retention newly turned on) goes on at once
                await asyncio.sleep(cfg.interval_minutes * 60)
            more = False
            try:
                done = await self.store.run_retention(policy, archive_dir=cfg.archive_dir)
            except LabDeviceError as exc:
                log.error("telemetry retention: %s", exc)
                continue
            self.last_retention = done
            more = done.more
            self.retention_ran.set()
            if done.samples:
                log.info(
                    "telemetry retention: %d samples rolled up into %d minute rows, %d blocks "
                    "removed, %d trimmed; archive %s",
                    done.samples,
                    done.rollups,
                    done.blocks_removed,
                    done.blocks_trimmed,
                    done.archive,
                )

    async def _broker(self, stack: AsyncExitStack, session_key: bytes) -> BrokerList:
        url = self.config.bus.url
        if url is None:
            if self.config.auth.required:
                # The embedded broker applies the rules of the generated Mosquitto ACL; the
                # daemon's own account gets a password that lives only in this process.
                login = BrokerLogin(self.store, session_key)
                broker = await stack.enter_async_context(
                    start_embedded_broker(authenticate=login, access=BrokerRules(login.daemon))
                )
                self.broker_url = broker.url
                return BrokerList(
                    ((broker.host, broker.port),), False, login.daemon, login.daemon_password
                )
            broker = await stack.enter_async_context(start_embedded_broker())
            url = broker.url
        self.broker_url = ",".join(split_broker_urls(url))
        return parse_broker_urls(url)

    def _broker_password(self) -> str | None:
        bus = self.config.bus
        if bus.password_file is None:
            return bus.password
        path = bus.password_file
        try:
            mode = path.stat().st_mode & 0o777
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigurationError(
                f"{self.loaded.source}: bus.password_file: cannot read {path}: {exc}",
                file=self.loaded.source,
            ) from exc
        if mode & 0o077:
            raise ConfigurationError(
                f"{self.loaded.source}: bus.password_file {path} is readable by others "
                f"(mode {mode:o}); chmod 600 it",
                file=self.loaded.source,
            )
        return text

    def _tls_context(self) -> ssl.SSLContext:
        bus = self.config.bus
        try:
            context = ssl.create_default_context(cafile=str(bus.ca_file) if bus.ca_file else None)
            if bus.cert_file:
                context.load_cert_chain(
                    str(bus.cert_file), str(bus.key_file) if bus.key_file else None
                )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"{self.loaded.source}: bus: cannot load TLS files: {exc}", file=self.loaded.source
            ) from exc
        return context

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state != "open" or self._stack is None:
            return
        self._state = "closing"
        self._stopping.set()
        try:
            if self.web is not None:
                await self.web.stop()
            with contextlib.suppress(Exception):
                await self.jobs.shutdown()
            await self._cancel_tasks()
        finally:
            stack, self._stack = self._stack, None
            self._state = "closed"
            # The caller's exception is not handed on: TaskGroups would wrap it in a group.
            await stack.__aexit__(None, None, None)

    async def _cancel_tasks(self) -> None:
        for task in list(self._spawned):
            task.cancel()
        if self._spawned:
            await asyncio.wait(set(self._spawned))

    async def _final_flush(self) -> None:
        """After devices closed: the last telemetry to the store, every device offline on the bus."""
        with contextlib.suppress(Exception):
            await self.pipeline.flush_store()
        with contextlib.suppress(Exception):  # the devices are closed: nothing of ours to serve
            await self.site_member.leave()
        with contextlib.suppress(Exception):  # signed and published while the bus is still up
            # ("closed" only if no other daemon of the site still writes to the store)
            await self.store.checkpoint(state="closed", force=True)
        for slot in self.slots.values():
            if slot.state != "offline":
                slot.set("offline")
            self._publish_state(slot)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Start a background task owned by the daemon (cancelled at shutdown)."""
        if self._tasks is None:
            coro.close()
            raise RuntimeError("the daemon is not running")
        task = self._tasks.create_task(coro, name=name)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)
        return task

    def stop(self) -> None:
        """Ask ``wait_stopped`` to return (safe from a signal handler)."""
        self._stopping.set()

    async def wait_stopped(self) -> None:
        await self._stopping.wait()

    # -- glue ---------------------------------------------------------------------------------

    def _accept(self, sample: Sample) -> bool:
        deadband = self._deadbands.get(sample.device)
        if deadband is None:
            slot = self.slots.get(sample.device)
            deadband = self._deadbands[sample.device] = Deadband(
                slot.config.deadband if slot else 0.0,
                max_interval_s=self.config.store.max_interval_s,
            )
        return deadband.accept(sample)

    def _on_state(self, slot: DeviceSlot) -> None:
        self._publish_state(slot)
        if self._state == "open":
            self.interlocks.on_state(slot)

    def _publish_alarm(self, alarm: AlarmRecord) -> None:
        with contextlib.suppress(Exception):
            self.bus.post(self.bus.topics.alarm(alarm.device), alarm_json(alarm, "raised"))

    def _publish_state(self, slot: DeviceSlot) -> None:
        payload: dict[str, JsonValue] = {
            "device": slot.name,
            "daemon": self.daemon_id,
            "state": slot.state,
            "profile": slot.profile.name,
            "driver": slot.profile.driver,
            "error": slot.error,
            "t": time.time(),
        }
        with contextlib.suppress(Exception):
            self.bus.post(self.bus.topics.state(slot.name), payload, retain=True)

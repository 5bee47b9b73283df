"""A resilient MQTT connection: reconnects on its own, never loses a queued QoS-1 message, serves and makes requests.

Outgoing messages go through one queue that is unbounded but accounted
(``BusStats.queued`` and ``queued_high_water``): replies, job events and states
are never dropped and never block the caller; a message leaves the queue only
once the broker acknowledged it, and is sent again on the next connection if it
was not. Delivery is therefore at-least-once; responders drop duplicate requests
by id, requesters drop duplicate replies. Bounded buffers with counted drops
belong to lossy producers (see ``TelemetryPublisher``), which hand over only
what the broker can take.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import random
import socket
import ssl
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, Self

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import JsonValue

from ..errors import (
    DeviceConnectionError,
    DeviceTimeoutError,
    Forbidden,
    LabDeviceError,
    ProtocolError,
)
from ._envelopes import (
    MAX_ARGS_BYTES,
    MAX_REQUEST_BYTES,
    DeadlineExceeded,
    ErrorReply,
    InternalError,
    MalformedRequest,
    OkReply,
    Request,
    UnknownCommand,
    error_from_body,
    parse_reply,
    parse_request,
)
from ._topics import TopicNameError, Topics, parse_topic, validate_name, validate_publish_topic

__all__ = [
    "BusClient",
    "BusMessage",
    "BusStats",
    "Handler",
    "RequestGuard",
    "RequestRefused",
    "Signer",
    "Subscription",
    "route_commands",
]

log = logging.getLogger("labdevices.bus")

#: a responder: gets the validated request and the topic it came on, returns the JSON result
Handler = Callable[[Request, str], Awaitable[JsonValue]]
#: whether this responder takes a request (``None``: an envelope that did not parse); several
#: responders of one site subscribe to the same topics and exactly one takes each request
Route = Callable[[str, "Request | None"], Awaitable[bool]]
#: a requester's signer: the envelope about to go to a topic → the envelope with its credentials
Signer = Callable[[str, Request], Request]


class RequestRefused(Exception):
    """Raised by a ``RequestGuard``: the request is not run.

    ``error`` is replied to ``reply_to`` (None: no reply). ``duplicate``: it is a copy of a
    request already admitted, handled as a duplicate delivery (its reply, if any, sent again).
    """

    def __init__(
        self,
        error: LabDeviceError | None = None,
        *,
        reply_to: str | None = None,
        duplicate: bool = False,
    ) -> None:
        self.error = error
        self.reply_to = reply_to
        self.duplicate = duplicate
        super().__init__(error.message if error else "duplicate request")


class RequestGuard(Protocol):
    """Decides, before any handler runs, whether a request is run and as whom."""

    async def admit(self, request: Request, message: BusMessage) -> Request:
        """The request as its handler should see it (``actor`` set), or ``RequestRefused``."""
        ...


@dataclass
class BusStats:
    """Counters of one ``BusClient``; nothing the bus drops or refuses goes uncounted."""

    connects: int = 0
    connection_losses: int = 0
    published: int = 0
    queued: int = 0
    queued_high_water: int = 0
    requests_served: int = 0
    duplicate_requests: int = 0
    #: requests left to another responder of the site (``serve(route=...)``)
    not_taken: int = 0
    deadline_refused: int = 0
    refused: int = 0
    malformed_replied: int = 0
    malformed_dropped: int = 0
    bad_replies: int = 0
    late_replies: int = 0
    unrouted: int = 0
    subscriber_dropped: int = 0
    #: retained messages published again at a (re)connect (see ``BusClient``)
    retained_republished: int = 0
    #: connections made to another broker of the list than the one before (see ``failover``)
    failovers: int = 0
    #: unanswered requests sent again at a reconnect (see ``BusClient.request``)
    requests_resent: int = 0
    heartbeats: int = 0


@dataclass(frozen=True)
class BusMessage:
    """One received message."""

    topic: str
    payload: bytes
    retain: bool = False

    def json(self) -> Any:
        """The payload decoded as JSON; raises ``ProtocolError`` naming the topic if it is not."""
        try:
            return json.loads(self.payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ProtocolError(f"message on {self.topic} is not JSON: {exc}") from exc


class Subscription:
    """Messages matching one filter, as an async iterator; see ``BusClient.subscribe``.

    With ``maxsize`` > 0 the oldest message is dropped (and counted in ``dropped``)
    when a slow reader lets the queue fill up.
    """

    def __init__(self, topic_filter: str, maxsize: int = 0) -> None:
        self.topic_filter = topic_filter
        self.dropped = 0
        self._queue: asyncio.Queue[BusMessage] = asyncio.Queue(maxsize)

    def _put(self, message: BusMessage) -> bool:
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self._queue.get_nowait()
            self._queue.put_nowait(message)
            self.dropped += 1
            return False
        return True

    async def get(self) -> BusMessage:
        return await self._queue.get()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> BusMessage:
        return await self._queue.get()


class _Outgoing:
    __slots__ = ("done", "payload", "qos", "retain", "topic")

    def __init__(
        self, topic: str, payload: bytes, qos: int, retain: bool, done: asyncio.Future[None]
    ):
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.done = done


def encode(payload: bytes | JsonValue) -> bytes:
    """Bytes are sent as they are; anything else is encoded as compact JSON."""
    if isinstance(payload, bytes):
        return payload
    return json.dumps(payload, separators=(",", ":")).encode()


class BusClient:
    """One MQTT connection that stays up: an async context manager.

    With a ``client_id`` the session is persistent (clean session off, QoS-1
    subscriptions), so the broker keeps messages for it while it is away and
    across a broker restart (with broker persistence on); without one, a random
    id and a clean session are used.

    ``status_topic`` gets a retained ``{"online": true, "connected_at": T, "t": now,
    "instance": I}`` (``instance``: random, one per client object) on every connect and
    then every ``heartbeat_s`` (``t``: when the client was last known alive), and, as
    last will, ``{"online": false, "connected_at": T, "t": null}``: a will
    is fixed when the connection is made, so it cannot know when the client went away —
    the last heartbeat before it says that. A clean close publishes ``{"online": false}``
    with its own ``t``. ``status_extra`` fields are added to each of these.

    Every retained message this client published is published again at each reconnect
    (the latest per topic, unless a newer one is still queued): a broker that came back
    without its retained messages gets them back. An empty retained message clears its
    topic and is forgotten.

    ``failover`` lists further brokers (host, port) of the same site, bridged to the
    first: each connection attempt takes the next broker of the list, and after a lost
    connection the client starts again from the first (the preferred one) — so it moves
    to a standby when its broker dies and stays there while that one works. One TLS
    context and one account serve them all. A broker that is not the one before has no
    session of this client: the subscriptions are made again at every connect, the
    retained messages published again (above), and the requests still waiting for
    their reply sent again when the broker changed, same id and signature (responders
    answer a repeat from their cache without running it twice). A requester given the
    ``responder_status`` topic (the daemon's status) sends them again too when the
    responder reconnects (same ``instance``, new ``connected_at``): what was on its way to
    the responder may have died with the responder's broker. See docs/brokers.md.

    Entering does not wait for the broker (an absent broker must not stop a
    daemon from polling its devices); use ``wait_connected`` to fail fast.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        site: str,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        protocol: Literal["3.1.1", "5"] = "3.1.1",
        status_topic: str | None = None,
        keepalive_s: int = 30,
        reconnect_min_s: float = 0.1,
        reconnect_max_s: float = 10.0,
        close_timeout_s: float = 5.0,
        session_expiry_s: int = 86400,
        send_window: int = 20,
        remember_requests: int = 4096,
        inbox_owner: str | None = None,
        signer: Signer | None = None,
        status_extra: Mapping[str, JsonValue] | None = None,
        heartbeat_s: float | None = None,
        retained_limit: int = 4096,
        failover: Sequence[tuple[str, int]] = (),
        responder_status: str | None = None,
    ) -> None:
        self.topics = Topics(site)
        self.persistent = client_id is not None
        self.client_id = validate_name("client", client_id or f"ld-{uuid.uuid4().hex[:16]}")
        self.reply_topic = self.topics.reply_inbox(self.client_id, inbox_owner)
        #: adds credentials to each request this client sends (see ``labdevices.auth``)
        self.signer = signer
        self.status_topic = validate_publish_topic(status_topic) if status_topic else None
        self.status_extra: dict[str, JsonValue] = dict(status_extra or {})
        if heartbeat_s is not None and not heartbeat_s > 0:
            raise ValueError(f"heartbeat_s must be > 0, got {heartbeat_s}")
        self._heartbeat_s = heartbeat_s
        self._connected_at: float | None = None
        self._instance = uuid.uuid4().hex
        #: (instance, connected_at) of each responder's last online status, by status topic
        self._responders: dict[str, tuple[object, object]] = {}
        #: the latest retained message per topic, published again at each reconnect; the
        #: ``retained_limit`` most recently published topics (device states and the daemon's
        #: status stay fresh, the states of long-finished jobs go first)
        self._retained: dict[str, tuple[bytes, int]] = {}
        if retained_limit < 1:
            raise ValueError(f"retained_limit must be >= 1, got {retained_limit}")
        self._retained_limit = retained_limit
        self.stats = BusStats()
        #: who sent malformed requests that could not be answered (each logged once)
        self._malformed_from: set[str] = set()
        self._brokers = [(host, port), *failover]
        #: the broker of the current (or next) connection attempt
        self.broker = _url(host, port)
        #: every broker this client may use, in the order it tries them
        self.brokers = [_url(h, p) for h, p in self._brokers]
        self._username = username
        self._password = password
        self._tls_context = tls_context
        self._protocol = protocol
        self._keepalive_s = keepalive_s
        self._reconnect_min_s = reconnect_min_s
        self._reconnect_max_s = reconnect_max_s
        self._close_timeout_s = close_timeout_s
        self._session_expiry_s = session_expiry_s
        self._send_window = send_window
        self._remember_requests = remember_requests

        self._filters: dict[str, int] = {}
        self._targets: list[tuple[str, Callable[[BusMessage], None]]] = []
        self._outgoing: deque[_Outgoing] = deque()
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._connected = asyncio.Event()
        self._stop = asyncio.Event()
        self._disconnected = asyncio.Event()
        self._disconnected.set()
        self._client: aiomqtt.Client | None = None
        self._last_error: str | None = None
        self._pending: dict[str, asyncio.Future[OkReply | ErrorReply]] = {}
        #: the envelope of each request awaiting its reply: sent again after a reconnect
        self._unanswered: dict[str, tuple[str, bytes]] = {}
        self._seen: OrderedDict[tuple[str, str], bytes | None] = OrderedDict()
        self._handlers: set[asyncio.Task[None]] = set()
        self._tasks: asyncio.TaskGroup | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._state: Literal["new", "open", "closing", "closed"] = "new"
        self._add_target(self.reply_topic, self._on_reply)
        #: the responder's status topic, watched by this client itself (see ``_subscribe``)
        self._watched = responder_status
        if responder_status is not None:
            self._add_target(responder_status, self._on_responder_status)

    def __repr__(self) -> str:
        return f"BusClient({self.client_id!r} at {self.broker}, site {self.topics.site!r})"

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # ---- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise RuntimeError(f"{self!r} cannot be entered twice")
        self._state = "open"
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._run_task = self._tasks.create_task(self._run(), name=f"bus {self.client_id}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state != "open" or self._tasks is None:
            return
        self._state = "closing"
        run_task = self._run_task
        try:
            # Running handlers get to finish so that their replies go out.
            if self._handlers:
                await asyncio.wait(set(self._handlers), timeout=self._close_timeout_s)
            # A live session flushes the queue and says goodbye before it disconnects
            # (see _session); without one there is nothing to wait for.
            self._stop.set()
            if run_task is not None:
                if not self.connected:
                    run_task.cancel()
                await asyncio.wait({run_task}, timeout=3 * self._close_timeout_s)
        finally:
            self._state = "closed"
            self._stop.set()
            for task in self._handlers:
                task.cancel()
            if run_task is not None:
                run_task.cancel()
            closed = DeviceConnectionError(f"{self!r} closed before the broker acknowledged")
            if self._outgoing:
                log.warning(
                    "%s: closed with %d messages not delivered", self.client_id, len(self._outgoing)
                )
            futures: list[asyncio.Future[Any]] = [m.done for m in self._outgoing]
            futures += self._pending.values()
            for fut in futures:
                if not fut.done():
                    fut.set_exception(closed)
                    fut.exception()  # retrieved: only a caller still awaiting it should see it
            # The caller's own exception propagates as it is, not wrapped in a group.
            await self._tasks.__aexit__(None, None, None)

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait for a connection to the broker; ``DeviceConnectionError`` after ``timeout`` s."""
        try:
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        except TimeoutError:
            why = f": {self._last_error}" if self._last_error else ""
            raise DeviceConnectionError(
                f"no connection to MQTT broker {self.broker} within {timeout} s{why}"
            ) from None

    async def wait_disconnected(self) -> None:
        """Wait until the client has no connection to the broker (returns at once if it has none)."""
        await self._disconnected.wait()

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until the broker acknowledged every queued message (``TimeoutError`` after ``timeout``)."""
        async with asyncio.timeout(timeout):
            await self._drained.wait()

    # ---- publishing ------------------------------------------------------------------------

    def post(
        self, topic: str, payload: bytes | JsonValue, *, qos: int = 1, retain: bool = False
    ) -> asyncio.Future[None]:
        """Queue a message and return at once; the future resolves when the broker has it.

        Never blocks and never drops: the message waits in the accounted queue while
        the broker is away and is sent (again) after each reconnect until acknowledged.
        """
        validate_publish_topic(topic)
        if self._state == "closed":
            raise DeviceConnectionError(f"{self!r} is closed; cannot publish to {topic}")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        data = encode(payload)
        if retain:
            self._retained.pop(topic, None)
            if data:
                self._retained[topic] = (data, qos)  # newest last
                if len(self._retained) > self._retained_limit:
                    del self._retained[next(iter(self._retained))]
        self._outgoing.append(_Outgoing(topic, data, qos, retain, done))
        self.stats.queued = len(self._outgoing)
        self.stats.queued_high_water = max(self.stats.queued_high_water, self.stats.queued)
        self._drained.clear()
        self._wakeup.set()
        return done

    async def publish(
        self, topic: str, payload: bytes | JsonValue, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Queue a message and wait until the broker has acknowledged it (QoS 1) or taken it (QoS 0)."""
        await self.post(topic, payload, qos=qos, retain=retain)

    # ---- subscribing -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def subscribe(
        self, topic_filter: str | Sequence[str], *, maxsize: int = 0
    ) -> AsyncIterator[Subscription]:
        """Receive the messages matching ``topic_filter`` (QoS 1) while the context is open.

        Several filters may feed one subscription (a broker ACL may allow each of them but
        not one filter that covers them all).
        """
        filters = [topic_filter] if isinstance(topic_filter, str) else list(topic_filter)
        sub = Subscription(filters[0], maxsize)

        def deliver(message: BusMessage) -> None:
            if not sub._put(message):
                self.stats.subscriber_dropped += 1

        subscribed: list[str] = []
        try:
            for f in filters:
                await self._subscribe(f, deliver)
                subscribed.append(f)
            yield sub
        finally:
            for f in subscribed:
                await self._unsubscribe(f, deliver)

    async def serve(
        self,
        topic_filter: str,
        handler: Handler,
        *,
        guard: RequestGuard | None = None,
        route: Route | None = None,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        max_args_bytes: int = MAX_ARGS_BYTES,
    ) -> None:
        """Answer the requests arriving on ``topic_filter`` with ``handler`` until the client closes.

        The envelope is validated first; a malformed one gets a ``malformed_request``
        error when a reply topic can be recovered, else it is logged and counted. A
        request whose deadline has passed is refused with ``deadline_exceeded``, not run.
        A request id seen before is not run again: its reply is sent again.
        ``LabDeviceError``s raised by the handler become error replies with their code.
        A ``guard`` admits each request first (authentication, authority, replay): what it
        refuses never reaches the handler. A ``route`` decides first whether this responder
        takes the request at all: one not taken is left alone (no guard, no reply).

        A persistent client should serve before entering: what its session kept
        while it was away arrives right at connect, and only reaches the handlers
        already registered (anything else is counted in ``stats.unrouted``).
        """

        def deliver(message: BusMessage) -> None:
            if self._state != "open" or self._tasks is None:
                return
            task = self._tasks.create_task(
                self._handle_request(
                    message, handler, guard, route, limits=(max_request_bytes, max_args_bytes)
                )
            )
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

        await self._subscribe(topic_filter, deliver)

    async def _subscribe(self, topic_filter: str, target: Callable[[BusMessage], None]) -> None:
        first = self._add_target(topic_filter, target)
        # A filter this client watches itself is subscribed again for the first subscriber,
        # so that the broker sends its retained message again, for that subscriber to see.
        first = first or (topic_filter == self._watched and self._filters[topic_filter] == 2)
        client = self._client
        if first and client is not None:
            # Not subscribed now means subscribed at the next connect, which is as good.
            granted: Any = None
            with contextlib.suppress(aiomqtt.MqttError):
                granted = await client.subscribe(topic_filter, qos=1)
            if _refused(granted):
                self._targets.remove((topic_filter, target))
                self._filters[topic_filter] -= 1
                if not self._filters[topic_filter]:
                    del self._filters[topic_filter]
                raise Forbidden(
                    f"the broker {self.broker} refused the subscription to {topic_filter} "
                    "(its access rules do not let this account read it)"
                )

    async def _unsubscribe(self, topic_filter: str, target: Callable[[BusMessage], None]) -> None:
        self._targets.remove((topic_filter, target))
        self._filters[topic_filter] -= 1
        if self._filters[topic_filter] > 0:
            return
        del self._filters[topic_filter]
        client = self._client
        if client is not None and self.connected:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.unsubscribe(topic_filter, timeout=self._close_timeout_s)

    def _add_target(self, topic_filter: str, target: Callable[[BusMessage], None]) -> bool:
        aiomqtt.Wildcard(topic_filter)  # raises ValueError on a malformed filter
        self._targets.append((topic_filter, target))
        self._filters[topic_filter] = self._filters.get(topic_filter, 0) + 1
        return self._filters[topic_filter] == 1

    # ---- requests --------------------------------------------------------------------------

    async def request(
        self,
        topic: str,
        args: dict[str, JsonValue] | None = None,
        *,
        timeout: float = 10.0,
        deadline: float | None = None,
        actor: str | None = None,
    ) -> JsonValue:
        """Send a request and return the result of its reply.

        ``deadline`` (wall-clock epoch seconds, default now + ``timeout``) tells the
        responder when to refuse rather than run it. An error reply is raised as the
        ``labdevices.errors`` class of its code; no reply within ``timeout`` s raises
        ``DeviceTimeoutError``.
        """
        device = _device_of(topic)
        request_id = uuid.uuid4().hex
        fields: dict[str, Any] = {
            "id": request_id,
            "reply_to": self.reply_topic,
            "args": args or {},
            "deadline": time.time() + timeout if deadline is None else deadline,
        }
        if actor is not None or self.signer is None:
            fields["actor"] = actor or self.client_id
        envelope = Request(**fields)
        if self.signer is not None:
            envelope = self.signer(topic, envelope)
        reply_future: asyncio.Future[OkReply | ErrorReply] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending[request_id] = reply_future
        data = envelope.model_dump_json(exclude_unset=True).encode()
        self._unanswered[request_id] = (topic, data)
        try:
            self.post(topic, data, qos=1)
            async with asyncio.timeout(timeout):
                reply = await reply_future
        except TimeoutError:
            state = "" if self.connected else f" (not connected to {self.broker})"
            raise DeviceTimeoutError(
                f"no reply to {topic} within {timeout} s{state}", device=device
            ) from None
        finally:
            self._pending.pop(request_id, None)
            self._unanswered.pop(request_id, None)
        if isinstance(reply, ErrorReply):
            raise error_from_body(reply.error)
        return reply.result

    def _on_reply(self, message: BusMessage) -> None:
        try:
            reply = parse_reply(message.payload)
        except ProtocolError as exc:
            self.stats.bad_replies += 1
            log.warning("%s: dropped a reply on %s: %s", self.client_id, message.topic, exc)
            return
        future = self._pending.pop(reply.id, None) if reply.id is not None else None
        if future is None or future.done():
            # A duplicate after a reconnect, or an answer that came after its timeout.
            self.stats.late_replies += 1
            return
        future.set_result(reply)

    async def _handle_request(
        self,
        message: BusMessage,
        handler: Handler,
        guard: RequestGuard | None = None,
        route: Route | None = None,
        *,
        limits: tuple[int, int] = (MAX_REQUEST_BYTES, MAX_ARGS_BYTES),
    ) -> None:
        if not message.payload:
            # An empty message is how a retained one is cleared (the daemon clears retained
            # requests): nothing to answer.
            log.debug("%s: empty message on %s ignored", self.client_id, message.topic)
            return
        try:
            request = parse_request(
                message.payload, max_request_bytes=limits[0], max_args_bytes=limits[1]
            )
        except MalformedRequest as exc:
            if route is None or await route(message.topic, None):
                self._refuse_malformed(message, exc)
            return
        if route is not None and not await route(message.topic, request):
            self.stats.not_taken += 1
            return
        if not request.reply_to.startswith(self.topics.clients_prefix()):
            self._refuse_malformed(
                message,
                MalformedRequest(
                    f"reply_to {request.reply_to!r} is not under {self.topics.clients_prefix()}"
                ),
            )
            return
        key = (request.reply_to, request.id)
        if guard is not None:
            try:
                request = await guard.admit(request, message)
            except RequestRefused as refused:
                if refused.duplicate:
                    self.stats.duplicate_requests += 1
                    cached = self._seen.get(key)
                    if cached is not None:
                        self.post(request.reply_to, cached)
                    return
                self.stats.refused += 1
                if refused.error is not None and refused.reply_to is not None:
                    self.post(
                        refused.reply_to,
                        ErrorReply.from_error(request.id, refused.error)
                        .model_dump_json(exclude_none=True)
                        .encode(),
                    )
                return
        if key in self._seen:
            self.stats.duplicate_requests += 1
            cached = self._seen[key]
            if cached is not None:  # still running otherwise: its reply will go out
                self.post(request.reply_to, cached)
            return
        if request.deadline is not None and time.time() > request.deadline:
            self.stats.deadline_refused += 1
            late = time.time() - request.deadline
            reply: OkReply | ErrorReply = ErrorReply.from_error(
                request.id,
                DeadlineExceeded(
                    f"request {request.id} on {message.topic} arrived {late:.3f} s after its deadline; not executed",
                    device=_device_of(message.topic),
                ),
            )
        else:
            self._remember(key, None)
            reply = await self._run_handler(request, message.topic, handler)
        payload = reply.model_dump_json(exclude_none=True).encode()
        if isinstance(reply, OkReply) or reply.error.code != "deadline_exceeded":
            self._remember(key, payload)
        self.stats.requests_served += 1
        self.post(request.reply_to, payload)

    async def _run_handler(
        self, request: Request, topic: str, handler: Handler
    ) -> OkReply | ErrorReply:
        try:
            result = await handler(request, topic)
            return OkReply(id=request.id, result=result)
        except LabDeviceError as exc:
            return ErrorReply.from_error(request.id, exc)
        except Exception as exc:
            log.exception("%s: handler for %s failed", self.client_id, topic)
            return ErrorReply.from_error(
                request.id,
                InternalError(f"{type(exc).__name__}: {exc}", device=_device_of(topic)),
            )

    def _remember(self, key: tuple[str, str], payload: bytes | None) -> None:
        self._seen[key] = payload
        self._seen.move_to_end(key)
        while len(self._seen) > self._remember_requests:
            self._seen.popitem(last=False)

    def _refuse_malformed(self, message: BusMessage, exc: MalformedRequest) -> None:
        reply_to = exc.reply_to
        if reply_to is not None and reply_to.startswith(self.topics.clients_prefix()):
            self.stats.malformed_replied += 1
            error = type(exc)(f"{exc.message} (on {message.topic})")
            self.post(
                reply_to, ErrorReply.from_error(exc.request_id, error).model_dump(exclude_none=True)
            )
        else:
            self.stats.malformed_dropped += 1
            # once per sender (its reply topic, or the topic it sent to): a flood is one line
            sender = reply_to or message.topic
            first = sender not in self._malformed_from
            if first and len(self._malformed_from) < 10_000:
                self._malformed_from.add(sender)
            log.log(
                logging.WARNING if first else logging.DEBUG,
                "%s: dropped a malformed request on %s (counted; logged once per sender): %s",
                self.client_id,
                message.topic,
                exc.message,
            )

    # ---- the connection loop ---------------------------------------------------------------

    def _status(self, *, online: bool, t: float | None) -> bytes:
        return encode(
            {
                **self.status_extra,
                "online": online,
                "client_id": self.client_id,
                "connected_at": self._connected_at,
                "t": t,
                "instance": self._instance,
            }
        )

    def _on_responder_status(self, message: BusMessage) -> None:
        try:
            status = message.json()
        except ProtocolError:
            return
        if not isinstance(status, dict) or status.get("online") is not True:
            return
        seen = (status.get("instance"), status.get("connected_at"))
        before = self._responders.get(message.topic)
        if before is None and len(self._responders) >= self._remember_requests:
            return  # a flood of made-up status topics is not remembered
        self._responders[message.topic] = seen
        # The same responder on a new connection. (Not a restarted one: it would not know
        # the copies of what it ran before, so they are not sent to it.)
        reconnected = before is not None and seen[0] == before[0] and seen[1] != before[1]
        if reconnected and seen[0] is not None:
            self._resend_unanswered()

    def _requeue_retained(self) -> None:
        """Queue the latest retained message of each topic again, unless one is queued already."""
        queued = {m.topic for m in self._outgoing if m.retain}
        loop = asyncio.get_running_loop()
        for topic, (payload, qos) in self._retained.items():
            if topic in queued:
                continue
            done: asyncio.Future[None] = loop.create_future()
            self._outgoing.append(_Outgoing(topic, payload, qos, True, done))
            self.stats.retained_republished += 1
        self._wake_sender()

    def _resend_unanswered(self) -> None:
        """Queue each request still awaiting its reply again (its first copy or its reply may
        have died with the broker before the bridge passed it on), unless it is queued."""
        queued = {m.payload for m in self._outgoing}
        loop = asyncio.get_running_loop()
        for topic, data in self._unanswered.values():
            if data not in queued:
                self._outgoing.append(_Outgoing(topic, data, 1, False, loop.create_future()))
                self.stats.requests_resent += 1
        self._wake_sender()

    def _wake_sender(self) -> None:
        if self._outgoing:
            self.stats.queued = len(self._outgoing)
            self.stats.queued_high_water = max(self.stats.queued_high_water, self.stats.queued)
            self._drained.clear()
            self._wakeup.set()

    def _new_client(self, host: str, port: int) -> aiomqtt.Client:
        will = None
        # The time this connection is made: the will names it, the online status too.
        self._connected_at = time.time()
        if self.status_topic:
            will = aiomqtt.Will(
                self.status_topic, self._status(online=False, t=None), qos=1, retain=True
            )
        options: dict[str, Any] = {}
        if self._protocol == "5":
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self._session_expiry_s if self.persistent else 0
            options = {
                "protocol": aiomqtt.ProtocolVersion.V5,
                "clean_start": not self.persistent,
                "properties": properties,
            }
        else:
            options = {
                "protocol": aiomqtt.ProtocolVersion.V311,
                "clean_session": not self.persistent,
            }
        client = aiomqtt.Client(
            host,
            port,
            identifier=self.client_id,
            username=self._username,
            password=self._password,
            tls_context=self._tls_context,
            will=will,
            keepalive=self._keepalive_s,
            timeout=self._close_timeout_s,
            logger=log,
            # Small request/reply messages must not wait for Nagle and delayed ACKs.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            **options,
        )
        # A full send window is normal here, not a sign of trouble worth a warning.
        client.pending_calls_threshold = self._send_window + 10
        return client

    async def _run(self) -> None:
        # aiomqtt's reconnect pattern: a fresh Client per attempt, owned by this loop.
        failures = 0  # attempts in a row that did not connect
        attempt = 0  # index in self._brokers of the next attempt
        previous: str | None = None  # the broker of the last connection
        while not self._stop.is_set():
            host, port = self._brokers[attempt]
            self.broker = _url(host, port)
            connected = False
            try:
                client = self._new_client(host, port)
                async with client:
                    connected = True
                    failures = 0
                    moved = previous is not None and previous != self.broker
                    if moved:
                        self.stats.failovers += 1
                        log.warning(
                            "%s: failed over from %s to %s", self.client_id, previous, self.broker
                        )
                    previous = self.broker
                    await self._session(client, resend=moved)
            except* aiomqtt.MqttError as group:
                self._last_error = "; ".join(_reason(e) for e in group.exceptions)
            finally:
                if self._connected.is_set() and self._state == "open":
                    self.stats.connection_losses += 1
                    log.warning(
                        "%s: lost the broker %s: %s", self.client_id, self.broker, self._last_error
                    )
                self._connected.clear()
                self._disconnected.set()
                self._client = None
            if self._stop.is_set():
                # Closing (aiomqtt's exit can even turn our cancellation into an MqttError).
                return
            # After a lost connection, the preferred broker first; after a failed attempt,
            # the next one; a pause (capped, jittered backoff) only once all were tried.
            attempt = 0 if connected else (attempt + 1) % len(self._brokers)
            if not connected and attempt != 0:
                continue
            delay = min(self._reconnect_max_s, self._reconnect_min_s * 2**failures)
            failures += 1
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def _session(self, client: aiomqtt.Client, *, resend: bool) -> None:
        # Published before subscribing, so that a filter added while the session is
        # being set up is subscribed by _subscribe itself (twice at worst: harmless).
        self._client = client
        filters = list(self._filters)
        if filters:
            await client.subscribe([(f, 1) for f in filters])
        if self.status_topic:
            await client.publish(
                self.status_topic, self._status(online=True, t=time.time()), qos=1, retain=True
            )
        if self._retained:
            self._requeue_retained()
        if resend:
            self._resend_unanswered()
        self._disconnected.clear()
        self._connected.set()
        self.stats.connects += 1
        log.info("%s: connected to %s", self.client_id, self.broker)
        # Plain tasks, not a TaskGroup: on 3.11 a TaskGroup whose child fails leaves this
        # task's cancelling() count raised, which would break later timeouts in it.
        loops = {
            asyncio.create_task(self._receive(client), name=f"bus {self.client_id} receive"),
            asyncio.create_task(self._send(client), name=f"bus {self.client_id} send"),
        }
        if self.status_topic and self._heartbeat_s is not None:
            loops.add(
                asyncio.create_task(
                    self._heartbeat(client, self.status_topic, self._heartbeat_s),
                    name=f"bus {self.client_id} heartbeat",
                )
            )
        # Closing sets _stop as well as cancelling us: on 3.11, asyncio.wait_for (inside
        # aiomqtt) swallows a cancel that lands as its awaitable completes.
        stop = asyncio.create_task(self._stop.wait(), name=f"bus {self.client_id} stop")
        try:
            done, _ = await asyncio.wait({*loops, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not done & loops:
                await self._say_goodbye(client)
        finally:
            for task in (*loops, stop):
                task.cancel()
            await asyncio.gather(*loops, stop, return_exceptions=True)
        for task in done & loops:
            task.result()  # the MqttError that ended the connection

    async def _say_goodbye(self, client: aiomqtt.Client) -> None:
        # The send loop still runs: let it deliver what is queued.
        with contextlib.suppress(TimeoutError):
            await self.flush(self._close_timeout_s)
        if self.status_topic:
            # A clean DISCONNECT does not fire the will, so say it ourselves.
            await client.publish(
                self.status_topic,
                self._status(online=False, t=time.time()),
                qos=1,
                retain=True,
                timeout=self._close_timeout_s,
            )

    async def _heartbeat(self, client: aiomqtt.Client, topic: str, every_s: float) -> None:
        # Straight to the client, not through the queue: a heartbeat stuck behind a backlog
        # (or sent again after a reconnect) would say the client was alive when it was not.
        while True:
            await asyncio.sleep(every_s)
            status = self._status(online=True, t=time.time())
            # No timeout of its own: a busy link is no lost connection (aiomqtt says when it is).
            await client.publish(topic, status, qos=1, retain=True, timeout=math.inf)
            self.stats.heartbeats += 1

    async def _receive(self, client: aiomqtt.Client) -> None:
        messages = client.messages
        try:
            async for message in messages:
                self._dispatch(message)
        except aiomqtt.MqttError:
            # Messages paho already acknowledged are ours: handle them before reconnecting.
            while len(messages):
                self._dispatch(await anext(messages))
            raise

    def _dispatch(self, message: aiomqtt.Message) -> None:
        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            payload = str(payload).encode() if payload is not None else b""
        received = BusMessage(message.topic.value, bytes(payload), bool(message.retain))
        routed = False
        for topic_filter, target in list(self._targets):
            if message.topic.matches(topic_filter):
                routed = True
                target(received)
        if not routed:
            self.stats.unrouted += 1
            log.debug("%s: no subscriber for %s", self.client_id, received.topic)

    async def _send(self, client: aiomqtt.Client) -> None:
        while True:
            while not self._outgoing:
                self._wakeup.clear()
                await self._wakeup.wait()
            # A window of messages in flight at once; each leaves the queue only when acknowledged.
            batch = list(itertools.islice(self._outgoing, self._send_window))
            results = await asyncio.gather(
                *(
                    client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain, timeout=math.inf)
                    for m in batch
                ),
                return_exceptions=True,
            )
            failure: BaseException | None = None
            for message, result in zip(batch, results, strict=True):
                if result is None:
                    self._outgoing.remove(message)
                    self.stats.published += 1
                    if not message.done.done():
                        message.done.set_result(None)
                else:
                    failure = result
            self.stats.queued = len(self._outgoing)
            if not self._outgoing:
                self._drained.set()
            if failure is not None:
                raise failure


def route_commands(handlers: Mapping[str, Handler]) -> Handler:
    """One handler for ``{device}/cmd/+`` that dispatches on the command name.

    A name not in ``handlers`` gets an ``unknown_command`` error listing the known ones.
    """

    async def route(request: Request, topic: str) -> JsonValue:
        info = parse_topic(topic)
        handler = handlers.get(info.name or "")
        if handler is None:
            known = ", ".join(sorted(handlers)) or "none"
            raise UnknownCommand(
                f"unknown command {info.name!r} (known: {known})", device=info.device
            )
        return await handler(request, topic)

    return route


def _refused(granted: Any) -> bool:
    """Whether a SUBACK refused the subscription (3.1.1: 0x80; 5: a reason code >= 0x80)."""
    if not granted:
        return False
    for code in granted:
        value = getattr(code, "value", code)
        if isinstance(value, int) and value >= 0x80:
            return True
    return False


def _url(host: str, port: int) -> str:
    return f"mqtt://{host}:{port}"


def _reason(exc: BaseException) -> str:
    # aiomqtt often says only "Disconnected during message iteration"; the cause says why.
    cause = exc.__cause__
    return f"{exc} ({cause})" if cause is not None and str(cause) else str(exc)


def _device_of(topic: str) -> str | None:
    try:
        return parse_topic(topic).device
    except TopicNameError:
        return None

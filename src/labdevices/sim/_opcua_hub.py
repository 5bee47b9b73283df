# (asyncua types its scalars as NewTypes — UInt32, Int16 — and re-exports implicitly;
#  checking every literal against them is noise, so these codes are off here only.)
"""A simulated OPC UA sensor hub: an asyncua server whose address space is its profile.

pH, dissolved oxygen, temperature and biomass of one culture vessel follow simple,
seeded culture dynamics with sensor noise; ``time_scale`` runs simulated time
faster than the wall clock. Security (None, Basic256Sha256 Sign and
SignAndEncrypt with a certificate generated at start), a trust list of client
certificates, user logins, writes checked against the profile's limits
(``BadOutOfRange``) and seeded faults — slow replies, dropped connections,
restarts on the same port, stalled values — make it a test partner for real clients.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import random
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from asyncua import Node, Server, ua
from asyncua.common.callback import CallbackType, ServerItemCallback
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..errors import ConfigurationError
from ..profiles import OpcUaProfile, load_profile
from ..profiles._opcua import OpcUaMethod, OpcUaSignal, coerce_value
from ._opcua_certs import generate_certificate

__all__ = ["HubFaults", "OpcUaSensorHub", "SecurityModeName", "SensorHubThread"]

_log = logging.getLogger(__name__)
T = TypeVar("T")

SecurityModeName = Literal["None", "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"]
_POLICY_TYPES: dict[str, ua.SecurityPolicyType] = {
    "None": ua.SecurityPolicyType.NoSecurity,
    "Basic256Sha256_Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "Basic256Sha256_SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
}

SERVER_URI = "urn:labdevices:sim:sensor-hub"


@dataclass
class HubFaults:
    """Seeded faults. Change the fields while the hub runs; each takes effect at once.

    ``slow_reply_s`` delays that share of reads and writes (``slow_reply_probability``);
    ``disconnects_per_min`` drops every client connection at random instants;
    ``stalled`` signals stop changing (a frozen probe) — with ``flag_stalled`` the
    hub marks them ``UncertainLastUsableValue``, as a hub that notices would.
    """

    slow_reply_s: float = 0.0
    slow_reply_probability: float = 1.0
    disconnects_per_min: float = 0.0
    stalled: set[str] = field(default_factory=set)
    flag_stalled: bool = False


class _Users:
    """asyncua user manager: named users with passwords, anonymous optionally."""

    def __init__(self, users: dict[str, str], allow_anonymous: bool) -> None:
        self.users = users
        self.allow_anonymous = allow_anonymous

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if username is None:
            return User(role=UserRole.User) if self.allow_anonymous else None
        expected = self.users.get(username)
        if expected is None or not hmac.compare_digest(expected, password or ""):
            return None
        return User(role=UserRole.User, name=username)


class _Culture:
    """One vessel's culture: logistic growth, oxygen uptake against aeration, acidification
    against base dosing, a thermostat. Units: hours, g/L, % air saturation, pH, degC."""

    KLA = 20.0  # oxygen transfer, 1/h
    OUR = 200.0  # oxygen uptake, % air saturation per hour per g/L

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.biomass = 0.4 + 0.1 * rng.random()
        self.do = 100.0 - self.OUR * self.biomass / self.KLA  # start at steady state
        self.ph = 7.15
        self.temperature = 36.2
        self.probe_bias = rng.uniform(-0.08, 0.08)  # what calibration corrects

    def step(self, dt_h: float) -> None:
        mu_max, x_max = 0.045, 12.0
        limitation = self.do / (self.do + 5.0)  # growth slows when oxygen runs short
        growth = mu_max * limitation * self.biomass * (1 - self.biomass / x_max)
        self.biomass += growth * dt_h
        self.do += (self.KLA * (100.0 - self.do) - self.OUR * self.biomass * limitation) * dt_h
        self.do = min(max(self.do, 0.0), 100.0)
        # lactate and CO2 acidify; the base pump pushes back below pH 7.0
        dosing = 0.8 * max(0.0, 7.0 - self.ph)
        self.ph += (-0.35 * growth + dosing) * dt_h
        self.temperature += (37.0 - self.temperature) / 0.25 * min(dt_h, 0.25)

    def measured(self, name: str, ph_offset: float) -> float:
        g = self.rng.gauss
        if name == "ph":
            return self.ph + self.probe_bias + ph_offset + g(0, 0.003)
        if name == "dissolved_oxygen":
            return max(0.0, self.do + g(0, 0.15))
        if name == "temperature":
            return self.temperature + g(0, 0.01)
        if name == "biomass":
            return max(0.0, self.biomass + g(0, 0.002))
        raise KeyError(name)


class _TrustList:
    """asyncua's certificate validator for client certificates, with a trust list.

    A certificate must be in its validity period, name the client's application URI
    and carry the key usages OPC UA asks for (asyncua's checks); then it must be one
    of the trusted certificates, unless ``auto_accept`` (a test convenience that must
    be asked for) takes every certificate that passes those checks.
    """

    def __init__(self, trusted: Iterable[bytes], auto_accept: bool) -> None:
        self.trusted = {bytes(der) for der in trusted}
        self.auto_accept = auto_accept
        self.rejected: list[str] = []
        self._checks = CertificateValidator(
            CertificateValidatorOptions.EXT_VALIDATION | CertificateValidatorOptions.PEER_CLIENT
        )

    async def __call__(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        try:
            await self._checks.validate(cert, app)
            if not self.auto_accept and cert.public_bytes(serialization.Encoding.DER) not in (
                self.trusted
            ):
                raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)
        except ServiceError as exc:
            self.rejected.append(f"{app.ApplicationUri}: {ua.StatusCode(exc.code).name}")
            raise


def _certificate_der(cert: bytes | Path) -> bytes:
    """A certificate given as DER bytes, or a DER or PEM file."""
    data = cert.read_bytes() if isinstance(cert, Path) else cert
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    return x509.load_der_x509_certificate(data).public_bytes(serialization.Encoding.DER)


class _LimitedWrites:
    """asyncua's attribute service, with each client write checked against the profile's limits.

    A value outside ``min``/``max`` gets ``BadOutOfRange`` for its own item and is not
    written; the other items of the request are written as usual.
    """

    def __init__(self, inner: Any, limits: dict[ua.NodeId, tuple[float | None, float | None]]):
        self._inner = inner
        self._limits = limits

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _check(self, item: ua.WriteValue) -> ua.StatusCode | None:
        bounds = self._limits.get(item.NodeId)
        if bounds is None or item.AttributeId != ua.AttributeIds.Value:
            return None
        variant = item.Value.Value if item.Value is not None else None
        value = variant.Value if variant is not None else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None  # a wrong type is asyncua's to refuse (BadTypeMismatch)
        lo, hi = bounds
        if value != value or (lo is not None and value < lo) or (hi is not None and value > hi):
            return ua.StatusCode(ua.StatusCodes.BadOutOfRange)
        return None

    async def write(self, params: ua.WriteParameters, user: User) -> list[ua.StatusCode]:
        results: list[ua.StatusCode | None] = [self._check(i) for i in params.NodesToWrite]
        allowed = [i for i, r in zip(params.NodesToWrite, results, strict=True) if r is None]
        written = iter(
            await self._inner.write(ua.WriteParameters(NodesToWrite=allowed), user=user)
            if allowed
            else []
        )
        return [r if r is not None else next(written) for r in results]


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class OpcUaSensorHub:
    """The simulated hub. ``async with OpcUaSensorHub() as hub:`` serves ``hub.endpoint``.

    ``security`` lists the endpoints offered; any Basic256Sha256 one makes the hub
    generate its certificate (``server_certificate_der``). A secured hub accepts a
    client certificate only if it is in ``trusted_certificates`` (DER bytes, or DER
    or PEM files) and names the client's application URI; ``auto_accept_certificates``
    takes any well-formed one instead, and must be asked for. ``users`` maps user
    names to passwords; with users, anonymous login is refused unless
    ``allow_anonymous``. Client writes outside a signal's ``min``/``max`` are
    refused with ``BadOutOfRange``.
    """

    def __init__(
        self,
        profile: OpcUaProfile | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/labdevices/sensor-hub",
        seed: int = 0,
        time_scale: float = 1.0,
        update_interval_s: float = 0.1,
        security: Iterable[SecurityModeName] = ("None",),
        users: dict[str, str] | None = None,
        allow_anonymous: bool | None = None,
        faults: HubFaults | None = None,
        trusted_certificates: Iterable[bytes | Path] = (),
        auto_accept_certificates: bool = False,
    ) -> None:
        loaded = load_profile("opcua-sensor-hub") if profile is None else profile
        if not isinstance(loaded, OpcUaProfile):
            raise ConfigurationError(f"profile {loaded.name!r} is not an OPC UA profile")
        self.profile = loaded
        self.host = host
        self.port = port or _free_port(host)
        self.path = path if path.startswith("/") else "/" + path
        self.time_scale = time_scale
        self.update_interval_s = update_interval_s
        self.security: tuple[SecurityModeName, ...] = tuple(security)
        unknown = [s for s in self.security if s not in _POLICY_TYPES]
        if unknown or not self.security:
            raise ConfigurationError(
                f"security: {unknown or 'empty'}; choose from {', '.join(_POLICY_TYPES)}"
            )
        self.users = dict(users or {})
        self.allow_anonymous = (not self.users) if allow_anonymous is None else allow_anonymous
        self.faults = faults or HubFaults()
        try:
            trusted = [_certificate_der(c) for c in trusted_certificates]
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"trusted_certificates: {exc}") from exc
        self.trust = _TrustList(trusted, auto_accept_certificates)
        self.rng = random.Random(seed)
        self.culture = _Culture(random.Random(seed + 1))
        self.server_certificate_der: bytes | None = None
        self._server_key_pem: bytes | None = None
        if any(s != "None" for s in self.security):
            self.server_certificate_der, self._server_key_pem = generate_certificate(
                SERVER_URI, "labdevices sensor hub", server=True, hostnames=(host, "localhost")
            )
        self._server: Server | None = None
        self._nodes: dict[str, Node] = {}
        self._values: dict[str, bool | int | float | str] = {}
        self._updater: asyncio.Task[None] | None = None
        self.running = asyncio.Event()
        self.restarts = 0
        self.calibrations = 0
        self._last_step = time.monotonic()

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}{self.path}"

    # -- lifecycle -------------------------------------------------------------
    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Build the address space from the profile and listen (again, after ``stop``)."""
        if self._server is not None:
            return
        server = Server(user_manager=_Users(self.users, self.allow_anonymous))
        await server.init()
        # The server clock task only updates ServerStatus.CurrentTime and makes stop() wait 1 s.
        server.disable_clock()
        server.set_endpoint(self.endpoint)
        server.set_server_name(f"labdevices simulated {self.profile.model or self.profile.name}")
        await server.set_application_uri(SERVER_URI)
        server.set_security_policy([_POLICY_TYPES[s] for s in self.security])
        tokens: list[type] = []
        if self.allow_anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        if self.users:
            tokens.append(ua.UserNameIdentityToken)
        server.set_identity_tokens(tokens)
        if self.server_certificate_der is not None:
            assert self._server_key_pem is not None
            await server.load_certificate(self.server_certificate_der, format="der")
            await server.load_private_key(self._server_key_pem, format="pem")
            server.set_certificate_validator(self.trust)
        try:
            await self._build(server)
            # asyncua has no public hook that can refuse one item of a write (private API)
            server.iserver.attribute_service = _LimitedWrites(
                server.iserver.attribute_service,
                {
                    self._nodes[name].nodeid: (sig.min, sig.max)
                    for name, sig in self.profile.signals.items()
                    if sig.writable and (sig.min is not None or sig.max is not None)
                },
            )
            server.subscribe_server_callback(CallbackType.PreRead, self._maybe_slow)
            server.subscribe_server_callback(CallbackType.PreWrite, self._maybe_slow)
            await server.start()
        except BaseException:
            await server.stop()
            raise
        self._server = server
        self._last_step = time.monotonic()
        self._updater = asyncio.create_task(self._update_loop(), name="opcua-hub:update")
        self.running.set()

    async def stop(self) -> None:
        """Stop listening; every client connection drops. Simulated time stands still."""
        server, self._server = self._server, None
        self.running.clear()
        updater, self._updater = self._updater, None
        if updater is not None:
            updater.cancel()
            await asyncio.wait({updater})
        if server is not None:
            await server.stop()
            # asyncua's Server.stop leaves client sessions and their timers alive; a
            # real restart forgets them, so the simulator closes them (private API).
            for session in list(server.iserver._external_sessions.values()):
                await session.close_session(delete_subs=True)
        self._nodes = {}

    async def restart(self) -> None:
        """Stop and start again on the same port: sessions and subscriptions are forgotten."""
        await self.stop()
        await self.start()
        self.restarts += 1

    def disconnect_clients(self) -> int:
        """Drop every client connection (as a network fault would); returns how many."""
        if self._server is None:
            return 0
        transports = list(self._server.iserver.asyncio_transports)
        for t in transports:
            t.close()
        return len(transports)

    # -- address space ------------------------------------------------------------
    async def _build(self, server: Server) -> None:
        uris = {self.profile.namespace} if self.profile.namespace else set()
        for sig in self.profile.signals.values():
            if sig.node and sig.node.startswith("nsu="):
                uris.add(sig.node[4:].split(";", 1)[0])
        for uri in sorted(uris):
            await server.register_namespace(uri)
        ns = await server.get_namespace_array()
        default_ns = ns.index(self.profile.namespace) if self.profile.namespace else len(ns) - 1
        objects: dict[tuple[str, ...], Node] = {(): server.nodes.objects}

        async def parent_of(path: tuple[str, ...], idx: int) -> Node:
            if path not in objects:
                parent = await parent_of(path[:-1], idx)
                objects[path] = await parent.add_object(
                    ua.NodeId(".".join(path), idx), ua.QualifiedName(path[-1], idx)
                )
            return objects[path]

        def locate(
            node: str | None, browse_path: list[str] | None, fallback: str
        ) -> tuple[ua.NodeId, tuple[str, ...], str]:
            if node is not None:
                parsed = ua.NodeId.from_string(node)
                uri = getattr(parsed, "NamespaceUri", None)
                idx = ns.index(uri) if uri else parsed.NamespaceIndex
                nid = ua.NodeId(parsed.Identifier, idx, parsed.NodeIdType)
                if isinstance(parsed.Identifier, str) and "." in parsed.Identifier:
                    *parents, leaf = parsed.Identifier.split(".")
                    return nid, tuple(parents), leaf
                leaf = parsed.Identifier if isinstance(parsed.Identifier, str) else fallback
                return nid, (), leaf
            assert browse_path is not None
            names = [p.partition(":")[2] if ":" in p else p for p in browse_path]
            return ua.NodeId(".".join(names), default_ns), tuple(names[:-1]), names[-1]

        self._nodes = {}
        for name, sig in self.profile.signals.items():
            nid, parents, leaf = locate(sig.node, sig.browse_path, name)
            parent = await parent_of(parents, nid.NamespaceIndex or default_ns)
            value = self._values.setdefault(name, self._initial(name, sig))
            var = await parent.add_variable(
                nid,
                ua.QualifiedName(leaf, nid.NamespaceIndex),
                ua.Variant(value, getattr(ua.VariantType, sig.data_type)),
            )
            await var.write_attribute(
                ua.AttributeIds.Description, ua.DataValue(ua.LocalizedText(sig.description or name))
            )
            if sig.unit:
                eu = ua.EUInformation()
                eu.DisplayName = ua.LocalizedText(sig.unit)
                eu.Description = ua.LocalizedText(sig.unit)
                eu.NamespaceUri = "http://www.opcfoundation.org/UA/units/un/cefact"
                await var.add_property(
                    ua.NodeId(
                        f"{nid.to_string()}.EngineeringUnits".split(";", 1)[-1][2:],
                        nid.NamespaceIndex,
                    ),
                    ua.QualifiedName("EngineeringUnits", 0),
                    eu,
                )
            if sig.writable:
                await var.set_writable()
            self._nodes[name] = var
        for mname, method in self.profile.methods.items():
            obj_id, parents, leaf = locate(method.object.node, method.object.browse_path, mname)
            obj = await parent_of((*parents, leaf), obj_id.NamespaceIndex or default_ns)
            if obj.nodeid != obj_id:
                raise ConfigurationError(
                    f"methods.{mname}.object: the simulator places objects at ns;s=Path.To.Object, "
                    f"got {method.object.node}"
                )
            mid, _, mleaf = locate(method.method.node, method.method.browse_path, mname)
            await obj.add_method(
                mid,
                ua.QualifiedName(mleaf, mid.NamespaceIndex),
                self._method_callback(mname, method),
                [self._argument(a.name, a.type, a.unit) for a in method.arguments],
                [self._argument(a.name, a.type, a.unit) for a in method.outputs],
            )

    @staticmethod
    def _argument(name: str, data_type: str, unit: str) -> ua.Argument:
        arg = ua.Argument()
        arg.Name = name
        arg.DataType = ua.NodeId(getattr(ua.VariantType, data_type).value)
        arg.ValueRank = -1
        arg.Description = ua.LocalizedText(unit)
        return arg

    def _initial(self, name: str, sig: OpcUaSignal) -> bool | int | float | str:
        defaults = {"ph_alarm_low": 6.6, "ph_alarm_high": 7.6, "ph_offset": 0.0}
        if name in defaults:
            return coerce_value(sig.data_type, defaults[name])
        if name in ("ph", "dissolved_oxygen", "temperature", "biomass"):
            return self.culture.measured(name, 0.0)
        if sig.data_type == "Boolean":
            return False
        if sig.data_type == "String":
            return ""
        lo, hi = sig.min, sig.max
        mid = (lo + hi) / 2 if lo is not None and hi is not None else lo or hi or 0.0
        if sig.data_type not in ("Double", "Float"):
            mid = round(mid)
        return coerce_value(sig.data_type, mid)

    def _method_callback(
        self, name: str, method: OpcUaMethod
    ) -> Callable[..., Awaitable[list[ua.Variant] | ua.StatusCode]]:
        async def call(parent: ua.NodeId, *args: ua.Variant) -> list[ua.Variant] | ua.StatusCode:
            await self._maybe_slow(None, None)
            values = [a.Value for a in args]
            if len(values) != len(method.arguments):
                return ua.StatusCode(ua.StatusCodes.BadArgumentsMissing)
            for spec, v in zip(method.arguments, values, strict=True):
                try:
                    coerce_value(spec.type, v)
                except ValueError:
                    return ua.StatusCode(ua.StatusCodes.BadTypeMismatch)
                if (spec.min is not None and v < spec.min) or (
                    spec.max is not None and v > spec.max
                ):
                    return ua.StatusCode(ua.StatusCodes.BadOutOfRange)
            outputs = self._run_method(name, values)
            await self._publish_values()  # the method's effects are visible when it returns
            return [
                ua.Variant(coerce_value(o.type, v), getattr(ua.VariantType, o.type))
                for o, v in zip(method.outputs, outputs, strict=True)
            ]

        return call

    def _run_method(self, name: str, args: list[Any]) -> list[Any]:
        if name == "calibrate_ph":
            # The probe reads buffer + bias; the offset that cancels the bias is stored.
            buffer_ph = float(args[0])
            reading = buffer_ph + self.culture.probe_bias + self.culture.rng.gauss(0, 0.002)
            offset = round(buffer_ph - reading, 4)
            self._values["ph_offset"] = offset
            self.calibrations += 1
            return [offset]
        return [coerce_value(o.type, 0) for o in self.profile.methods[name].outputs]

    # -- faults ------------------------------------------------------------------------
    async def _maybe_slow(self, event: ServerItemCallback | None, _dispatcher: Any) -> None:
        f = self.faults
        if event is not None and not event.is_external:
            return
        if f.slow_reply_s > 0 and self.rng.random() < f.slow_reply_probability:
            await asyncio.sleep(f.slow_reply_s)

    # -- dynamics ----------------------------------------------------------------------
    async def _update_loop(self) -> None:
        while True:
            await asyncio.sleep(self.update_interval_s)
            now = time.monotonic()
            dt_s, self._last_step = now - self._last_step, now
            self.step(dt_s * self.time_scale / 3600.0)
            await self._publish_values()
            rate = self.faults.disconnects_per_min
            if rate > 0 and self.rng.random() < 1 - math.exp(-rate * dt_s / 60.0):
                self.disconnect_clients()

    def step(self, dt_h: float) -> None:
        """Advance the culture by ``dt_h`` simulated hours and refresh the readings."""
        if dt_h > 0:
            self.culture.step(dt_h)
        v = self._values
        for name in ("ph", "dissolved_oxygen", "temperature", "biomass"):
            if name in self.profile.signals and name not in self.faults.stalled:
                offset = float(v.get("ph_offset", 0.0))
                v[name] = round(self.culture.measured(name, offset), 4)
        if {"ph", "ph_alarm", "ph_alarm_low", "ph_alarm_high"} <= set(v):
            v["ph_alarm"] = not (
                float(v["ph_alarm_low"]) <= float(v["ph"]) <= float(v["ph_alarm_high"])
            )

    async def _publish_values(self) -> None:
        server = self._server
        if server is None:
            return
        now = datetime.now(UTC)
        for name, node in self._nodes.items():
            sig = self.profile.signals[name]
            if sig.writable:
                # Clients own writable values: take theirs, do not overwrite them.
                self._values[name] = server.read_attribute_value(node.nodeid).Value.Value
                continue
            status = ua.StatusCode(ua.StatusCodes.Good)
            if name in self.faults.stalled and self.faults.flag_stalled:
                status = ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue)
            dv = ua.DataValue(
                ua.Variant(self._values[name], getattr(ua.VariantType, sig.data_type)),
                StatusCode=status,
                SourceTimestamp=now,
                ServerTimestamp=now,
            )
            await server.write_attribute_value(node.nodeid, dv)

    def value(self, name: str) -> bool | int | float | str:
        """The value the hub currently serves for a signal."""
        node = self._nodes.get(name)
        if self._server is not None and node is not None and self.profile.signals[name].writable:
            value: bool | int | float | str = self._server.read_attribute_value(
                node.nodeid
            ).Value.Value
            return value
        return self._values[name]


class SensorHubThread:
    """Runs an ``OpcUaSensorHub`` on its own event loop in its own thread.

    Like a separate device on the network: clients in any event loop (or sync
    code) talk to it, and its tasks never mix with theirs. ``call`` runs a
    coroutine on the hub's loop and waits for it.
    """

    def __init__(self, hub_factory: Callable[[], OpcUaSensorHub]) -> None:
        self._factory = hub_factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._hub: OpcUaSensorHub | None = None
        self._stop: asyncio.Event | None = None
        self._ready: Future[None] = Future()

    @property
    def hub(self) -> OpcUaSensorHub:
        assert self._hub is not None, "hub thread not started"
        return self._hub

    @property
    def endpoint(self) -> str:
        return self.hub.endpoint

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="opcua-sensor-hub", daemon=True)
        self._thread.start()
        self._ready.result(timeout=60)
        return self

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            self._hub = self._factory()
            await self._hub.start()
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)
        try:
            await self._stop.wait()
        finally:
            await self._hub.stop()

    def call(self, fn: Callable[[OpcUaSensorHub], Awaitable[T]], timeout_s: float = 30.0) -> T:
        """Run ``fn(hub)`` on the hub's loop and return its result (blocking)."""
        assert self._loop is not None
        fut = asyncio.run_coroutine_threadsafe(self._call(fn), self._loop)
        return fut.result(timeout=timeout_s)

    async def acall(self, fn: Callable[[OpcUaSensorHub], Awaitable[T]]) -> T:
        """``call`` for async callers: awaits without blocking their loop."""
        assert self._loop is not None
        fut = asyncio.run_coroutine_threadsafe(self._call(fn), self._loop)
        return await asyncio.wrap_future(fut)

    async def _call(self, fn: Callable[[OpcUaSensorHub], Awaitable[T]]) -> T:
        return await fn(self.hub)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=30)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

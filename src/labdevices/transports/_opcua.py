# (asyncua types its scalars as NewTypes — UInt32, Int16 — and re-exports implicitly;
#  checking every literal against them is noise, so these codes are off here only.)
"""OPC UA client link over asyncua: security setup, node resolution, timed requests.

asyncua raises its own exceptions (status-code errors, ``UaError``, timeouts, OS
errors); ``map_ua_errors`` turns them into the ``labdevices.errors`` tree naming
the device at this boundary, so nothing above it sees asyncua's types.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from asyncua import Client, Node, ua
from asyncua.common.subscription import Subscription
from asyncua.crypto import security_policies, uacrypto
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..errors import (
    ConfigurationError,
    DeviceConnectionError,
    DeviceFault,
    DeviceTimeoutError,
    LabDeviceError,
    ProtocolError,
)
from ..profiles._opcua import OpcUaConnection, OpcUaSecurity

__all__ = [
    "MonitoredItem",
    "OpcUaLink",
    "SecurityMaterial",
    "load_security",
    "map_ua_errors",
    "status_name",
]

_log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_APPLICATION_URI = "urn:labdevices:client"

# Status codes that mean "the link or session is gone", not "this request was wrong".
_LINK_LOST = {
    "BadConnectionClosed",
    "BadServerNotConnected",
    "BadShutdown",
    "BadSessionClosed",
    "BadSessionIdInvalid",
    "BadSecureChannelClosed",
    "BadSecureChannelIdInvalid",
    "BadCommunicationError",
    "BadNoCommunication",
    "BadServerHalted",
}
_LOGIN_REFUSED = {
    "BadUserAccessDenied",
    "BadIdentityTokenRejected",
    "BadIdentityTokenInvalid",
}
_SECURITY_REFUSED = {
    "BadSecurityChecksFailed",
    "BadSecurityPolicyRejected",
    "BadSecurityModeRejected",
    "BadCertificateInvalid",
    "BadCertificateUntrusted",
    "BadCertificateTimeInvalid",
    "BadCertificateUriInvalid",
    "BadCertificateUseNotAllowed",
    "BadCertificateRevoked",
    "BadCertificateIssuerRevoked",
    "BadNoValidCertificates",
}


def status_name(code: ua.StatusCode | int) -> str:
    """``BadNodeIdUnknown`` for a status code (or its integer value)."""
    value = code.value if isinstance(code, ua.StatusCode) else code
    return str(ua.StatusCode(value).name)


@contextmanager
def map_ua_errors(device: str, what: str, *, connecting: bool = False) -> Iterator[None]:
    """Convert asyncua and OS failures into the labdevices error tree, naming ``device``.

    While ``connecting``, every failure means the link could not be opened
    (``DeviceConnectionError``), with the reason in words.
    """
    try:
        yield
    except LabDeviceError:
        raise
    except TimeoutError as exc:
        raise DeviceTimeoutError(f"{what}: no answer in time", device=device) from exc
    except ConnectionRefusedError as exc:
        raise DeviceConnectionError(f"{what}: connection refused", device=device) from exc
    except ua.UaStatusCodeError as exc:
        name = type(exc).__name__
        if name == "UaStatusCodeError":
            name = status_name(exc.code)
        raise _status_error(device, what, name, str(exc), connecting) from exc
    except (OSError, EOFError, ConnectionError) as exc:
        raise DeviceConnectionError(f"{what}: {exc or type(exc).__name__}", device=device) from exc
    except ua.UaError as exc:
        cls = DeviceConnectionError if connecting else ProtocolError
        raise cls(f"{what}: {exc}", device=device) from exc
    except Exception as exc:
        if not connecting:
            raise
        # asyncua surfaces handshake failures (bad signatures, unreadable keys) as
        # assorted exception types; while connecting they all mean "no link".
        raise DeviceConnectionError(f"{what}: {type(exc).__name__}: {exc}", device=device) from exc


def _status_error(device: str, what: str, name: str, text: str, connecting: bool) -> LabDeviceError:
    if name in _LOGIN_REFUSED:
        return DeviceConnectionError(
            f"{what}: the server refused the login ({name}); check security.username and security.password",
            device=device,
        )
    if name in _SECURITY_REFUSED:
        return DeviceConnectionError(
            f"{what}: the server rejected the security settings ({name}); check security.policy, "
            "security.mode and the certificates",
            device=device,
        )
    if name == "BadTimeout":
        return DeviceTimeoutError(f"{what}: the server timed out ({name})", device=device)
    if connecting or name in _LINK_LOST:
        return DeviceConnectionError(f"{what}: {name}", device=device)
    return DeviceFault(f"{what}: the server answered {name}: {text}", device=device)


@dataclass(frozen=True)
class SecurityMaterial:
    """Security settings with the certificate and key files already read and checked."""

    policy: str
    mode: str
    certificate_der: bytes | None
    private_key_pem: bytes | None
    server_certificate_der: bytes | None
    application_uri: str
    username: str | None
    password: str | None

    @property
    def label(self) -> str:
        return "None" if self.policy == "None" else f"{self.policy} {self.mode}"


def _read(path: str, field: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"{field}: cannot read {path}: {exc.strerror or exc}", file=path
        ) from exc


def _certificate(path: str, field: str) -> x509.Certificate:
    data = _read(path, field)
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise ConfigurationError(
            f"{field}: {path} is not a PEM or DER certificate", file=path
        ) from exc


def load_security(security: OpcUaSecurity, where: str = "security") -> SecurityMaterial:
    """Read and check the files ``security`` names; errors name the field (``where.certificate``)."""
    cert_der = key_pem = server_der = None
    app_uri = DEFAULT_APPLICATION_URI
    if security.certificate is not None:
        cert = _certificate(security.certificate, f"{where}.certificate")
        cert_der = cert.public_bytes(serialization.Encoding.DER)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            uris = []
        if uris:
            # OPC UA servers check that the client's application URI is the certificate's.
            app_uri = uris[0]
    if security.private_key is not None:
        field = f"{where}.private_key"
        data = _read(security.private_key, field)
        password = security.private_key_password
        try:
            if data.lstrip().startswith(b"-----BEGIN"):
                key = serialization.load_pem_private_key(
                    data, password.encode() if password else None
                )
            else:
                key = serialization.load_der_private_key(
                    data, password.encode() if password else None
                )
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"{field}: {security.private_key} is not a usable private key: {exc}",
                file=security.private_key,
            ) from exc
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    if security.server_certificate is not None:
        server_der = _certificate(
            security.server_certificate, f"{where}.server_certificate"
        ).public_bytes(serialization.Encoding.DER)
    return SecurityMaterial(
        policy=security.policy,
        mode=security.mode,
        certificate_der=cert_der,
        private_key_pem=key_pem,
        server_certificate_der=server_der,
        application_uri=app_uri,
        username=security.username,
        password=security.password,
    )


@dataclass(frozen=True)
class MonitoredItem:
    """One node in a data-change subscription; ``handle`` comes back with each notification."""

    handle: int
    node: ua.NodeId
    sampling_interval_ms: float
    deadband: float | None
    queue_size: int


_MODES = {
    "Sign": ua.MessageSecurityMode.Sign,
    "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt,
}


class OpcUaLink:
    """One asyncua client session to one server, with a timeout on every request.

    ``lost`` is set when asyncua's keep-alive notices the link is gone; a link is
    used once — reconnecting means a new ``OpcUaLink``.
    """

    def __init__(
        self,
        url: str,
        security: SecurityMaterial,
        connection: OpcUaConnection,
        device: str,
        namespace: str | None = None,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self.security = security
        self.connection = connection
        self.device = device
        self.lost = asyncio.Event()
        self.lost_reason: str | None = None
        self._client: Client | None = None
        self._namespaces: list[str] = []

    # -- connection --------------------------------------------------------
    async def connect(self) -> None:
        """Open socket, secure channel and session; raise a labdevices error naming why not."""
        c = self.connection
        client = Client(self.url, timeout=c.timeout_s, watchdog_intervall=c.keepalive_s)
        client.session_timeout = int(c.session_timeout_s * 1000)
        client.application_uri = self.security.application_uri
        client.name = client.description = f"labdevices {self.device}"
        client.connection_lost_callback = self._on_lost
        if self.security.username is not None:
            client.set_user(self.security.username)
        if self.security.password is not None:
            client.set_password(self.security.password)
        what = f"connect to {self.url} ({self.security.label})"
        try:
            async with asyncio.timeout(c.connect_timeout_s):
                with map_ua_errors(self.device, what, connecting=True):
                    if self.security.policy != "None":
                        await self._set_security(client)
                    await client.connect()
                    self._client = client
                    self._namespaces = await client.get_namespace_array()
        except TimeoutError as exc:
            await self._drop(client)
            raise DeviceTimeoutError(
                f"{what}: no answer within {c.connect_timeout_s} s", device=self.device
            ) from exc
        except BaseException:
            await self._drop(client)
            raise

    async def _set_security(self, client: Client) -> None:
        sec = self.security
        assert sec.certificate_der is not None
        assert sec.private_key_pem is not None
        policy = security_policies.SecurityPolicyBasic256Sha256
        mode = _MODES[sec.mode]
        server_der = sec.server_certificate_der
        if server_der is None:
            endpoints = await client.connect_and_get_server_endpoints()
            match = [
                e for e in endpoints if e.SecurityMode == mode and e.SecurityPolicyUri == policy.URI
            ]
            if not match:
                offered = sorted(
                    {
                        f"{e.SecurityPolicyUri.rsplit('#', 1)[-1]} {e.SecurityMode.name}"
                        for e in endpoints
                    }
                )
                raise DeviceConnectionError(
                    f"connect to {self.url}: the server offers no {sec.label} endpoint "
                    f"(it offers: {', '.join(offered)}); check security.policy and security.mode",
                    device=self.device,
                )
            server_der = match[0].ServerCertificate
        await client.set_security(
            policy,
            certificate=uacrypto.CertProperties(sec.certificate_der, "der"),
            private_key=uacrypto.CertProperties(sec.private_key_pem, "pem"),
            server_certificate=uacrypto.CertProperties(server_der, "der"),
            mode=mode,
        )

    async def _on_lost(self, exc: Exception) -> None:
        self.lost_reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self.lost.set()

    @staticmethod
    async def _drop(client: Client) -> None:
        """Tear down a client whatever its state; its own errors are no longer interesting."""
        try:
            async with asyncio.timeout(2.0):
                await client.disconnect()
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.debug("disconnect of a failed or lost client raised", exc_info=True)
            client.disconnect_socket()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await self._drop(client)

    @property
    def client(self) -> Client:
        if self._client is None:
            raise DeviceConnectionError("not connected", device=self.device)
        return self._client

    # -- requests ----------------------------------------------------------
    async def request(self, what: str, call: Awaitable[T], timeout_s: float | None = None) -> T:
        """Await one asyncua request under the link's timeout, converting its errors."""
        with map_ua_errors(self.device, what):
            try:
                async with asyncio.timeout(timeout_s or self.connection.timeout_s):
                    return await call
            except TimeoutError as exc:
                raise DeviceTimeoutError(
                    f"{what}: no answer within {timeout_s or self.connection.timeout_s} s",
                    device=self.device,
                ) from exc

    def node_id(
        self, node: str | None, browse_path: Sequence[str] | None, field: str
    ) -> ua.NodeId | list[ua.QualifiedName]:
        """A node id (namespace URIs resolved) or, for a browse path, its qualified names."""
        if node is not None:
            try:
                parsed = ua.NodeId.from_string(node)
            except (ua.UaStringParsingError, ValueError) as exc:
                raise ConfigurationError(
                    f"{field}.node: {node!r} is not an OPC UA node id (e.g. ns=2;s=pH)",
                    device=self.device,
                ) from exc
            uri = getattr(parsed, "NamespaceUri", None)
            if uri:
                return ua.NodeId(
                    parsed.Identifier, self._namespace_index(uri, field), parsed.NodeIdType
                )
            return ua.NodeId(parsed.Identifier, parsed.NamespaceIndex, parsed.NodeIdType)
        assert browse_path is not None
        return [self._qualified(part, field) for part in browse_path]

    def _namespace_index(self, uri: str, field: str) -> int:
        try:
            return self._namespaces.index(uri)
        except ValueError:
            raise ConfigurationError(
                f"{field}: the server has no namespace {uri!r} (it has: {', '.join(self._namespaces)})",
                device=self.device,
            ) from None

    def _qualified(self, part: str, field: str) -> ua.QualifiedName:
        prefix, sep, name = part.partition(":")
        if sep and prefix.isdigit():
            return ua.QualifiedName(name, int(prefix))
        if self.namespace is None:
            raise ConfigurationError(
                f"{field}.browse_path: no namespace for {part!r}", device=self.device
            )
        return ua.QualifiedName(part, self._namespace_index(self.namespace, f"{field}.browse_path"))

    async def resolve(
        self, refs: Mapping[str, tuple[str | None, Sequence[str] | None]]
    ) -> dict[str, ua.NodeId]:
        """Node ids for every reference (keyed by profile field), checked to exist on the server.

        Every missing node is reported at once, naming its profile field.
        """
        ids: dict[str, ua.NodeId] = {}
        paths: dict[str, list[ua.QualifiedName]] = {}
        for field, (node, browse_path) in refs.items():
            got = self.node_id(node, browse_path, field)
            if isinstance(got, list):
                paths[field] = got
            else:
                ids[field] = got
        problems: list[str] = []
        if paths:
            bpaths = []
            for names in paths.values():
                rel = ua.RelativePath()
                rel.Elements = [
                    ua.RelativePathElement(
                        ReferenceTypeId=ua.NodeId(ua.ObjectIds.HierarchicalReferences),
                        IsInverse=False,
                        IncludeSubtypes=True,
                        TargetName=qn,
                    )
                    for qn in names
                ]
                bp = ua.BrowsePath()
                bp.StartingNode = ua.NodeId(ua.ObjectIds.ObjectsFolder)
                bp.RelativePath = rel
                bpaths.append(bp)
            results = await self.request(
                "resolve browse paths",
                self.client.uaclient.translate_browsepaths_to_nodeids(bpaths),
            )
            for (field, names), res in zip(paths.items(), results, strict=True):
                if res.StatusCode.is_good() and res.Targets:
                    ids[field] = res.Targets[0].TargetId
                else:
                    shown = "/".join(n.Name for n in names)
                    problems.append(
                        f"{field}.browse_path: {shown} not found on the server ({status_name(res.StatusCode)})"
                    )
        if ids:
            fields = list(ids)
            values = await self.request(
                "check nodes",
                self.client.uaclient.read_attributes(
                    [ids[f] for f in fields], ua.AttributeIds.NodeClass
                ),
            )
            for field, dv in zip(fields, values, strict=True):
                if not dv.StatusCode.is_good():
                    problems.append(
                        f"{field}: node {ids[field].to_string()} not found on the server ({status_name(dv.StatusCode)})"
                    )
        if problems:
            raise ConfigurationError(
                f"the profile does not match the server at {self.url}",
                problems=problems,
                device=self.device,
            )
        return ids

    def node(self, node_id: ua.NodeId) -> Node:
        return self.client.get_node(node_id)

    async def read(self, node_id: ua.NodeId, what: str) -> ua.DataValue:
        values = await self.request(
            what, self.client.uaclient.read_attributes([node_id], ua.AttributeIds.Value)
        )
        dv: ua.DataValue = values[0]
        return dv

    async def write(self, node_id: ua.NodeId, variant: ua.Variant, what: str) -> None:
        params = ua.WriteParameters()
        wv = ua.WriteValue()
        wv.NodeId = node_id
        wv.AttributeId = ua.AttributeIds.Value
        wv.Value = ua.DataValue(variant)
        params.NodesToWrite = [wv]
        results = await self.request(what, self.client.uaclient.write(params))
        status: ua.StatusCode = results[0]
        if not status.is_good():
            raise _status_error(self.device, what, status_name(status), status.doc, False)

    async def call(
        self,
        object_id: ua.NodeId,
        method_id: ua.NodeId,
        args: list[ua.Variant],
        what: str,
        timeout_s: float | None = None,
    ) -> list[Any]:
        request = ua.CallMethodRequest()
        request.ObjectId = object_id
        request.MethodId = method_id
        request.InputArguments = args
        results = await self.request(what, self.client.uaclient.call([request]), timeout_s)
        res: ua.CallMethodResult = results[0]
        if not res.StatusCode.is_good():
            raise _status_error(
                self.device, what, status_name(res.StatusCode), res.StatusCode.doc, False
            )
        return [v.Value for v in res.OutputArguments or []]

    async def subscribe(
        self, items: Sequence[MonitoredItem], publishing_interval_ms: float
    ) -> tuple[Subscription, dict[int, str]]:
        """A data-change subscription in iterator mode; returns it and the failures by handle."""
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = publishing_interval_ms
        params.RequestedLifetimeCount = 10000
        params.RequestedMaxKeepAliveCount = self.client.get_keepalive_count(publishing_interval_ms)
        params.MaxNotificationsPerPublish = 10000
        params.PublishingEnabled = True
        params.Priority = 0
        sub = await self.request(
            "create subscription", self.client.create_subscription(params, handler=None)
        )
        requests = []
        for item in items:
            rv = ua.ReadValueId()
            rv.NodeId = item.node
            rv.AttributeId = ua.AttributeIds.Value
            mp = ua.MonitoringParameters()
            mp.ClientHandle = item.handle
            mp.SamplingInterval = item.sampling_interval_ms
            mp.QueueSize = item.queue_size
            mp.DiscardOldest = True
            if item.deadband:
                flt = ua.DataChangeFilter()
                flt.Trigger = ua.DataChangeTrigger.StatusValue
                flt.DeadbandType = ua.DeadbandType.Absolute
                flt.DeadbandValue = item.deadband
                mp.Filter = flt
            mir = ua.MonitoredItemCreateRequest()
            mir.ItemToMonitor = rv
            mir.MonitoringMode = ua.MonitoringMode.Reporting
            mir.RequestedParameters = mp
            requests.append(mir)
        results = await self.request("create monitored items", sub.create_monitored_items(requests))
        failed = {
            item.handle: status_name(res)
            for item, res in zip(items, results, strict=True)
            if isinstance(res, ua.StatusCode)
        }
        return sub, failed

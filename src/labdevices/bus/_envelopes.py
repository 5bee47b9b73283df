"""Request and reply envelopes of the bus API, and the errors they carry.

The reply topic and the correlation id travel inside the payload, so the API
works the same on MQTT 3.1.1 (no response-topic property) and MQTT 5.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from ..errors import LabDeviceError, ProtocolError, TooLarge
from ._topics import validate_publish_topic

__all__ = [
    "MAX_ARGS_BYTES",
    "MAX_JOB_REQUEST_BYTES",
    "MAX_REQUEST_BYTES",
    "MAX_TEXT_BYTES",
    "DeadlineExceeded",
    "ErrorBody",
    "ErrorReply",
    "InternalError",
    "MalformedRequest",
    "OkReply",
    "RemoteError",
    "Reply",
    "Request",
    "RequestTooLarge",
    "UnknownCommand",
    "error_from_body",
    "parse_reply",
    "parse_request",
]


class DeadlineExceeded(LabDeviceError):
    """A request arrived after its deadline; it was refused, not executed late."""

    code = "deadline_exceeded"


class MalformedRequest(ProtocolError):
    """A request payload is not a valid envelope.

    ``reply_to`` and ``request_id`` hold what could be recovered from it, so the
    responder can still send a structured error when a reply topic is known.
    """

    code = "malformed_request"

    def __init__(
        self, message: str, *, reply_to: str | None = None, request_id: str | None = None
    ) -> None:
        self.reply_to = reply_to
        self.request_id = request_id
        super().__init__(message)


class UnknownCommand(LabDeviceError):
    """A request names a command the responder does not have."""

    code = "unknown_command"


class InternalError(LabDeviceError):
    """The responder failed in an unexpected way (a bug, not bad input)."""

    code = "internal"


class RemoteError(LabDeviceError):
    """An error reply whose code no local error class has; ``code`` is the remote one."""

    def __init__(self, code: str, message: str, *, device: str | None = None) -> None:
        self.code = code
        super().__init__(f"[{code}] {message}", device=device)


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_Id = Annotated[str, Field(min_length=1, max_length=128)]


class Request(_Envelope):
    """A request: ``deadline`` is wall-clock seconds since the epoch, after which it must not run.

    ``session``, ``t`` (when issued, epoch seconds) and ``mac`` authenticate it (see
    ``labdevices.auth.request_mac``); a daemon that requires authentication decides who acts
    from the session and sets ``actor`` to that user. A claimed ``actor`` must be that user.
    """

    id: _Id
    reply_to: Annotated[str, Field(min_length=1, max_length=1024)]
    #: who acts: set by the daemon from the session; a claim in the payload must match it
    actor: Annotated[str, Field(min_length=1, max_length=256)] = "anonymous"
    args: dict[str, JsonValue] = Field(default_factory=dict)
    deadline: float | None = None
    session: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    t: float | None = None
    mac: Annotated[str, Field(min_length=64, max_length=64)] | None = None

    def signed_fields(self) -> dict[str, JsonValue]:
        """The fields as sent (those the sender set), without the MAC: what the MAC covers."""
        return self.model_dump(mode="json", exclude_unset=True, exclude={"mac"})

    @field_validator("reply_to")
    @classmethod
    def _publishable(cls, value: str) -> str:
        return validate_publish_topic(value)


class ErrorBody(_Envelope):
    code: Annotated[str, Field(min_length=1)]
    message: str
    device: str | None = None


class OkReply(_Envelope):
    id: str | None = None
    ok: Literal[True] = True
    result: JsonValue = None


class ErrorReply(_Envelope):
    id: str | None = None
    ok: Literal[False] = False
    error: ErrorBody

    @classmethod
    def from_error(cls, request_id: str | None, exc: LabDeviceError) -> ErrorReply:
        return cls(
            id=request_id, error=ErrorBody(code=exc.code, message=exc.message, device=exc.device)
        )


Reply = Annotated[OkReply | ErrorReply, Field(discriminator="ok")]
_reply_adapter: TypeAdapter[OkReply | ErrorReply] = TypeAdapter(Reply)


def _problems(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


class RequestTooLarge(MalformedRequest):
    """A request, its ``args`` or a ``reason``/``comment`` in them is over the size limit; it was
    refused unread, so nothing of it reaches a handler or the audit trail."""

    code = TooLarge.code


#: what one request may carry (bytes of the payload, of its ``args`` as JSON, of a
#: ``reason`` or ``comment``); a job submission may carry more (its G-code)
MAX_REQUEST_BYTES = 256 * 1024
MAX_ARGS_BYTES = 64 * 1024
MAX_TEXT_BYTES = 1024
MAX_JOB_REQUEST_BYTES = 16 * 1024 * 1024
_TEXT_ARGS = ("reason", "comment")


def parse_request(
    payload: bytes,
    *,
    max_request_bytes: int = MAX_REQUEST_BYTES,
    max_args_bytes: int = MAX_ARGS_BYTES,
) -> Request:
    """Parse a request payload, or raise ``MalformedRequest`` with what could be recovered
    (``RequestTooLarge``, code ``too_large``, for one over the limits)."""
    if len(payload) > max_request_bytes:
        # Not parsed: its reply topic and id are looked for in its first bytes only.
        head = payload[:4096].decode("utf-8", "replace")
        reply_to = _head_field(head, "reply_to")
        try:
            validate_publish_topic(reply_to)
        except LabDeviceError:
            reply_to = None
        raise RequestTooLarge(
            f"request is {len(payload)} bytes; the limit is {max_request_bytes}",
            reply_to=reply_to,
            request_id=_head_field(head, "id"),
        )
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedRequest(f"request is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedRequest(f"request must be a JSON object, got {type(data).__name__}")
    reply_to = data.get("reply_to")
    request_id = data.get("id")
    try:
        validate_publish_topic(reply_to)
    except LabDeviceError:
        reply_to = None
    if not isinstance(request_id, str):
        request_id = None

    def too_large(what: str, size: int, limit: int) -> RequestTooLarge:
        return RequestTooLarge(
            f"{what} is {size} bytes; the limit is {limit}",
            reply_to=reply_to,
            request_id=request_id,
        )

    args = data.get("args")
    if isinstance(args, dict):
        size = len(json.dumps(args, ensure_ascii=False).encode("utf-8"))
        if size > max_args_bytes:
            raise too_large("args", size, max_args_bytes)
        for name in _TEXT_ARGS:
            text = args.get(name)
            if isinstance(text, str) and len(text.encode("utf-8")) > MAX_TEXT_BYTES:
                raise too_large(f"args.{name}", len(text.encode("utf-8")), MAX_TEXT_BYTES)
    try:
        return Request.model_validate(data)
    except ValidationError as exc:
        raise MalformedRequest(
            f"invalid request: {_problems(exc)}", reply_to=reply_to, request_id=request_id
        ) from exc


def _head_field(head: str, name: str) -> str | None:
    match = re.search(rf'"{name}"\s*:\s*"((?:[^"\\]|\\.)*)"', head)
    if match is None:
        return None
    try:
        value = json.loads(f'"{match.group(1)}"')
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, str) else None


def parse_reply(payload: bytes) -> OkReply | ErrorReply:
    """Parse a reply payload; raise ``ProtocolError`` naming what is wrong."""
    try:
        return _reply_adapter.validate_json(payload)
    except ValidationError as exc:
        raise ProtocolError(f"invalid reply: {_problems(exc)}") from exc


def _codes() -> dict[str, type[LabDeviceError]]:
    # Walked at call time so that error classes defined later (store, daemon) map too.
    found: dict[str, type[LabDeviceError]] = {}
    todo: list[type[LabDeviceError]] = [LabDeviceError]
    while todo:
        cls = todo.pop(0)
        code = cls.__dict__.get("code")
        if isinstance(code, str):
            found.setdefault(code, cls)
        todo.extend(cls.__subclasses__())
    return found


def error_from_body(body: ErrorBody) -> LabDeviceError:
    """The local error for an error reply: the class with that ``code``, else ``RemoteError``."""
    cls = _codes().get(body.code)
    if cls is not None and cls is not RemoteError:
        try:
            return cls(body.message, device=body.device)
        except TypeError:
            pass  # a class whose constructor takes other arguments
    return RemoteError(body.code, body.message, device=body.device)

"""Request and reply envelopes of the bus API, and the errors they carry.

The reply topic and the correlation id travel inside the payload, so the API
works the same on MQTT 3.1.1 (no response-topic property) and MQTT 5.
"""

from __future__ import annotations

import json
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

from ..errors import LabDeviceError, ProtocolError
from ._topics import validate_publish_topic

__all__ = [
    "DeadlineExceeded",
    "ErrorBody",
    "ErrorReply",
    "InternalError",
    "MalformedRequest",
    "OkReply",
    "RemoteError",
    "Reply",
    "Request",
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


def parse_request(payload: bytes) -> Request:
    """Parse a request payload, or raise ``MalformedRequest`` with what could be recovered."""
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
    try:
        return Request.model_validate(data)
    except ValidationError as exc:
        raise MalformedRequest(
            f"invalid request: {_problems(exc)}", reply_to=reply_to, request_id=request_id
        ) from exc


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

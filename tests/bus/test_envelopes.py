"""Request and reply envelopes: validation, what is recovered from bad ones, error codes both ways."""

from __future__ import annotations

import json

import pytest

from labdevices.bus import (
    DeadlineExceeded,
    ErrorReply,
    MalformedRequest,
    OkReply,
    RemoteError,
    UnknownCommand,
    error_from_body,
    parse_reply,
    parse_request,
)
from labdevices.bus._envelopes import ErrorBody
from labdevices.errors import ConfigurationError, DeviceTimeoutError, LabDeviceError, LimitViolation

REPLY_TO = "labdevices/lab1/clients/c1/reply"


def _raw(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_a_valid_request_parses() -> None:
    request = parse_request(
        _raw(id="r1", reply_to=REPLY_TO, actor="alice", args={"value": 37.0}, deadline=1e10)
    )
    assert (request.id, request.reply_to, request.actor) == ("r1", REPLY_TO, "alice")
    assert request.args == {"value": 37.0}
    assert request.deadline == 1e10


@pytest.mark.parametrize(
    ("payload", "complaint"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"hello"', "JSON object"),
    ],
)
def test_garbage_recovers_nothing(payload: bytes, complaint: str) -> None:
    with pytest.raises(MalformedRequest, match=complaint) as info:
        parse_request(payload)
    assert info.value.reply_to is None
    assert info.value.request_id is None


def test_an_invalid_envelope_keeps_its_reply_topic_and_id_and_names_the_fields() -> None:
    with pytest.raises(MalformedRequest) as info:
        parse_request(_raw(id="r2", reply_to=REPLY_TO, args=[1], colour="red"))
    error = info.value
    assert (error.reply_to, error.request_id, error.code) == (REPLY_TO, "r2", "malformed_request")
    for field in ("args", "colour"):
        assert field in error.message  # actor is optional: the daemon sets it from the session


def test_a_wildcard_reply_topic_is_not_recovered() -> None:
    with pytest.raises(MalformedRequest, match="reply_to") as info:
        parse_request(_raw(id="r3", reply_to="labdevices/#", actor="a"))
    assert info.value.reply_to is None


def test_replies_have_the_documented_shape() -> None:
    ok = OkReply(id="r1", result={"t": 21.5})
    assert json.loads(ok.model_dump_json()) == {"id": "r1", "ok": True, "result": {"t": 21.5}}
    error = ErrorReply.from_error("r1", LimitViolation("too hot", device="p1"))
    assert json.loads(error.model_dump_json(exclude_none=True)) == {
        "id": "r1",
        "ok": False,
        "error": {"code": "limit", "message": "too hot", "device": "p1"},
    }
    assert parse_reply(ok.model_dump_json().encode()) == ok
    assert parse_reply(error.model_dump_json().encode()) == error


def test_a_bad_reply_is_a_protocol_error() -> None:
    with pytest.raises(LabDeviceError, match="invalid reply"):
        parse_reply(b'{"ok": "maybe"}')


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("limit", LimitViolation),
        ("timeout", DeviceTimeoutError),
        ("configuration", ConfigurationError),
        ("deadline_exceeded", DeadlineExceeded),
        ("unknown_command", UnknownCommand),
    ],
)
def test_error_codes_map_back_to_their_classes(code: str, cls: type[LabDeviceError]) -> None:
    error = error_from_body(ErrorBody(code=code, message="it broke", device="p1"))
    assert type(error) is cls
    assert error.code == code
    assert error.device == "p1"
    assert "it broke" in str(error)


def test_an_unknown_code_keeps_the_remote_code() -> None:
    error = error_from_body(ErrorBody(code="quantum_flux", message="odd"))
    assert isinstance(error, RemoteError)
    assert error.code == "quantum_flux"
    assert "odd" in str(error)

"""The daemon's MQTT API as a contract: an AsyncAPI 3.0 document generated from the code's models.

The envelopes (``Request``, ``OkReply``, ``ErrorReply``) are the bus's own pydantic models;
each command's ``args`` and each published message have a model here, and the commands are
checked against the router's table and the capability table by tests/bus/test_api_contract.py,
which also validates the traffic of a test run against these models. ``labdevices api schema``
prints the document; docs/api/asyncapi.yaml is it, committed, and docs/api.md its rendering.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from ..auth import capability_for
from ..bus import ErrorReply, OkReply, Request
from ..bus._envelopes import MAX_ARGS_BYTES, MAX_JOB_REQUEST_BYTES, MAX_REQUEST_BYTES
from ..errors import LabDeviceError

__all__ = [
    "COMMANDS",
    "MESSAGES",
    "Command",
    "asyncapi_document",
    "error_codes",
    "render_markdown",
]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


Reason = str | None


class NoArgs(_Args):
    """No arguments."""


class SiteArgs(_Args):
    daemon: str | None = Field(
        default=None,
        description="the daemon of the site to answer, about itself (default: the site's leader)",
    )


class ReadArgs(_Args):
    signal: str = Field(description="a signal of the device's profile")


class WriteArgs(_Args):
    signal: str = Field(description="a writable signal of the device's profile")
    value: float = Field(description="the new value, in the signal's unit, within its limits")
    reason: Reason = Field(default=None, description="why (audited)")


class JobControlArgs(_Args):
    job_id: int | None = Field(default=None, description="the job (default: the printer's)")
    reason: Reason = Field(default=None, description="why (audited)")


class EstopArgs(_Args):
    reason: Reason = Field(default=None, description="why (audited)")


class ClearFaultArgs(_Args):
    reason: str = Field(description="why (required, audited)")


class AlarmsArgs(_Args):
    active_only: bool = Field(default=False, description="only active or unacknowledged alarms")


class AckAlarmArgs(_Args):
    alarm_id: int
    reason: Reason = Field(default=None, description="why (audited)")


class JobsArgs(_Args):
    state: str | None = None
    printer: str | None = None
    limit: int | None = Field(default=None, description="at most this many (default 100)")


class JobArgs(_Args):
    job_id: int


class SignArgs(_Args):
    job_id: int
    meaning: str = Field(description="reviewed, approved for printing, released or rejected")
    user: str = Field(description="the signer's user id, re-entered (must be the session's)")
    password: str = Field(description="the signer's password, re-entered (21 CFR 11.200)")
    content_sha256: str = Field(description="the job content the signer was shown")
    comment: str | None = None


class LoginArgs(_Args):
    user: str
    password: str


class SubmitArgs(_Args):
    printer: str | None = Field(default=None, description="default: the only printer")
    gcode: str | None = Field(default=None, description="G-code text (or `job`)")
    job: dict[str, JsonValue] | None = Field(
        default=None, description="a toolpath job spec, planned by the daemon (or `gcode`)"
    )
    batch_id: str | None = None
    patient_id: str | None = None
    name: str | None = None
    bioinks: list[JsonValue] | None = None


# ---- what the daemon publishes ---------------------------------------------------------------


class _Published(BaseModel):
    model_config = ConfigDict(extra="allow")


class DeviceState(_Published):
    """Retained; the daemon's last will marks its devices offline."""

    device: str
    daemon: str = Field(description="the daemon of the site that owns the device")
    state: Literal["offline", "connecting", "idle", "busy", "paused", "fault"]
    profile: str
    driver: str
    error: str | None = None
    t: float


class SampleItem(_Published):
    signal: str
    value: float | bool | str | None
    unit: str
    t: float = Field(description="seconds since the epoch")
    quality: Literal["good", "stale", "bad"] = "good"
    reason: str | None = None


class TelemetryBatch(_Published):
    device: str
    t: float
    samples: list[SampleItem]
    dropped: int = Field(description="samples of this device dropped so far (overload)")


class AlarmEvent(_Published):
    alarm_id: int
    device: str
    name: str
    severity: str
    raised_at: float
    cleared_at: float | None = None
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    reason: str | None = None
    active: bool
    event: str | None = Field(default=None, description="raised, cleared or acknowledged")
    t: float | None = None


class JobProgress(_Published):
    job_id: int
    seq: int = Field(description="grows by one per job event: tells a repeat from news")
    line: int = Field(description="the last line the printer acknowledged")
    lines_total: int
    fraction: float
    elapsed_s: float | None = None
    eta_s: float | None = None
    t: float


class JobState(_Published):
    """Retained: the job as ``daemon/cmd/job`` returns it, without its events."""

    job_id: int
    seq: int
    printer: str
    state: Literal[
        "held", "queued", "running", "paused", "completed", "failed", "cancelled", "interrupted"
    ]
    line: int
    lines_total: int
    error: str | None = None
    t: float


class DaemonStatus(_Published):
    """Retained, one per daemon of the site; its last will sets ``online`` false."""

    online: bool
    client_id: str
    daemon: str = Field(description="the daemon's name on the site (config `daemon`)")
    store_id: str | None = Field(default=None, description="the store the daemon writes to")
    t: float


class Checkpoint(_Published):
    """Retained: the latest signed checkpoint of the audit chain (for witnesses)."""

    n: int
    note: str = Field(description="a C2SP signed note: origin, size, root hash, Ed25519 signature")


@dataclass(frozen=True)
class Command:
    """One request the daemon serves: where it goes, what it takes, what it needs."""

    scope: Literal["device", "daemon", "jobs"]
    name: str
    summary: str
    args: type[_Args]
    example: dict[str, Any]
    printers_only: bool = False

    @property
    def address(self) -> str:
        if self.scope == "device":
            return "labdevices/{site}/{device}/cmd/" + self.name
        if self.scope == "daemon":
            return "labdevices/{site}/daemon/cmd/" + self.name
        return "labdevices/{site}/jobs/submit"

    @property
    def capability(self) -> str | None:
        return capability_for(self.scope, self.name)

    @property
    def key(self) -> str:
        return f"{self.scope}.{self.name}"


COMMANDS: tuple[Command, ...] = (
    Command("device", "read", "Read one signal now.", ReadArgs, {"signal": "chamber_temperature"}),
    Command(
        "device",
        "write",
        "Write a setpoint (checked against the profile's limits; audited, old and new value).",
        WriteArgs,
        {"signal": "temperature_setpoint", "value": 37.0, "reason": "protocol B"},
    ),
    Command("device", "describe", "The device: state, profile, signals.", NoArgs, {}),
    Command("device", "pause", "Pause the printer's job.", JobControlArgs, {"job_id": 12}, True),
    Command("device", "resume", "Resume the printer's job.", JobControlArgs, {"job_id": 12}, True),
    Command(
        "device",
        "cancel",
        "Cancel the printer's job (quickstop, valves closed, pressure zero).",
        JobControlArgs,
        {"job_id": 12, "reason": "wrong bioink"},
        True,
    ),
    Command("device", "estop", "Emergency stop (M112).", EstopArgs, {"reason": "drill"}, True),
    Command(
        "device",
        "clear_fault",
        "Bring a device out of fault: restarted (a printer's firmware with M999, then a new "
        "handshake); the reply comes when it is idle.",
        ClearFaultArgs,
        {"reason": "nozzle cleared, checked"},
    ),
    Command(
        "daemon",
        "devices",
        "A daemon's devices with state, profile, signals (`daemon`: which one).",
        SiteArgs,
        {"daemon": "room-a"},
    ),
    Command(
        "daemon",
        "status",
        "The site at a glance: its daemons (live or not, which leads, their devices), the "
        "answering daemon's devices with last values (`daemon`: which one), the site's "
        "active alarms and jobs not ended.",
        SiteArgs,
        {},
    ),
    Command("daemon", "alarms", "The site's alarms.", AlarmsArgs, {"active_only": True}),
    Command(
        "daemon", "ack_alarm", "Acknowledge an alarm (audited).", AckAlarmArgs, {"alarm_id": 3}
    ),
    Command("daemon", "jobs", "Jobs, newest first.", JobsArgs, {"state": "running"}),
    Command("daemon", "job", "One job with its events and signatures.", JobArgs, {"job_id": 12}),
    Command(
        "daemon",
        "sign",
        "Sign a job electronically (a re-authentication with a meaning).",
        SignArgs,
        {
            "job_id": 12,
            "meaning": "approved for printing",
            "user": "sam",
            "password": "…",
            "content_sha256": "9f2c…",
        },
    ),
    Command(
        "daemon",
        "login",
        "Exchange a password for a session (id, secret, expiry, roles).",
        LoginArgs,
        {"user": "alice", "password": "…"},
    ),
    Command("daemon", "logout", "Revoke this session.", NoArgs, {}),
    Command("daemon", "whoami", "The user behind this session.", NoArgs, {}),
    Command(
        "jobs",
        "submit",
        "Submit a print job: G-code text or a toolpath job (planned by the daemon).",
        SubmitArgs,
        {"printer": "printer", "gcode": "G28\nG1 X10 Y10 F600", "batch_id": "B-1"},
    ),
)

#: what the daemon publishes: channel id → (address, model, retained)
MESSAGES: dict[str, tuple[str, type[BaseModel], bool]] = {
    "deviceState": ("labdevices/{site}/{device}/state", DeviceState, True),
    "telemetry": ("labdevices/{site}/{device}/telemetry", TelemetryBatch, False),
    "alarm": ("labdevices/{site}/{device}/alarm", AlarmEvent, False),
    "jobProgress": ("labdevices/{site}/jobs/{job_id}/progress", JobProgress, False),
    "jobState": ("labdevices/{site}/jobs/{job_id}/state", JobState, True),
    "daemonStatus": ("labdevices/{site}/daemon/status/{daemon}", DaemonStatus, True),
    "auditCheckpoint": ("labdevices/{site}/audit/checkpoint", Checkpoint, True),
}


def error_codes() -> dict[str, str]:
    """Every error code a reply can carry → what it means (the error classes' docstrings)."""
    # the modules whose errors travel in replies, imported so that their classes exist
    from .. import bus, errors, store  # noqa: F401
    from ..toolpath import _mesh  # noqa: F401  (a job's mesh)
    from . import _errors  # noqa: F401

    found: dict[str, str] = {}
    todo: list[type[LabDeviceError]] = [LabDeviceError]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        code = cls.__dict__.get("code")
        if isinstance(code, str) and code not in found:
            doc = (cls.__doc__ or "").strip().split("\n\n")[0]
            found[code] = " ".join(doc.split())
    return dict(sorted(found.items()))


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(ref_template="#/components/schemas/{model}")


def _lift(schema: dict[str, Any], into: dict[str, Any]) -> dict[str, Any]:
    for name, sub in schema.pop("$defs", {}).items():
        into[name] = sub
    return schema


def asyncapi_document(version: str) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the daemon's API (deterministic: a test compares it)."""
    schemas: dict[str, Any] = {}
    schemas["Request"] = _lift(_schema(Request), schemas)
    schemas["OkReply"] = _lift(_schema(OkReply), schemas)
    schemas["ErrorReply"] = _lift(_schema(ErrorReply), schemas)
    codes = error_codes()
    schemas["ErrorReply"]["properties"]["error"] = {
        "allOf": [{"$ref": "#/components/schemas/ErrorBody"}],
        "description": "code: one of " + ", ".join(codes),
    }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    params_of = {
        "site": {"description": "the site (a config's `site`)"},
        "device": {"description": "a device name (unique on the site)"},
        "daemon": {"description": "a daemon's name on the site (its config's `daemon`)"},
        "job_id": {"description": "a job id"},
        "client": {"description": "the requesting client's id (its inbox)"},
        "user": {"description": "the user the client acts for"},
    }

    def parameters(address: str) -> dict[str, Any]:
        return {p: params_of[p] for p in params_of if "{" + p + "}" in address}

    for cmd in COMMANDS:
        args_name = cmd.args.__name__
        schemas[args_name] = _lift(_schema(cmd.args), schemas)
        request_name = f"{cmd.scope}_{cmd.name}_request"
        messages[request_name] = {
            "name": request_name,
            "title": f"{cmd.scope} {cmd.name}",
            "summary": cmd.summary,
            "contentType": "application/json",
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/Request"},
                    {
                        "type": "object",
                        "properties": {"args": {"$ref": f"#/components/schemas/{args_name}"}},
                    },
                ]
            },
            "examples": [
                {
                    "name": "request",
                    "payload": {
                        "id": "5f0c2a7e",
                        "reply_to": "labdevices/demo/clients/alice/lab-3f2a/reply",
                        "args": cmd.example,
                        "session": "s-2b9f…",
                        "t": 1764160000.0,
                        "mac": "0" * 64,
                    },
                }
            ],
            "x-capability": cmd.capability,
            **({"x-printers-only": True} if cmd.printers_only else {}),
        }
        channel = f"{cmd.scope}_{cmd.name}"
        channels[channel] = {
            "address": cmd.address,
            "messages": {request_name: {"$ref": f"#/components/messages/{request_name}"}},
            "parameters": parameters(cmd.address),
        }
        operations[channel] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": cmd.summary,
            "description": (f"Needs the capability `{cmd.capability}`. " if cmd.capability else "")
            + "Replied on the request's `reply_to` (under `labdevices/{site}/clients/`).",
            "reply": {
                "channel": {"$ref": "#/channels/reply"},
                "messages": [
                    {"$ref": "#/channels/reply/messages/ok"},
                    {"$ref": "#/channels/reply/messages/error"},
                ],
            },
        }
    channels["reply"] = {
        "address": "labdevices/{site}/clients/{user}/{client}/reply",
        "description": "Each client's inbox; only its user may read it.",
        "parameters": parameters("labdevices/{site}/clients/{user}/{client}/reply"),
        "messages": {
            "ok": {"$ref": "#/components/messages/ok_reply"},
            "error": {"$ref": "#/components/messages/error_reply"},
        },
    }
    messages["ok_reply"] = {
        "name": "ok_reply",
        "contentType": "application/json",
        "payload": {"$ref": "#/components/schemas/OkReply"},
        "examples": [{"name": "ok", "payload": {"id": "5f0c2a7e", "ok": True, "result": {}}}],
    }
    messages["error_reply"] = {
        "name": "error_reply",
        "contentType": "application/json",
        "payload": {"$ref": "#/components/schemas/ErrorReply"},
        "examples": [
            {
                "name": "forbidden",
                "payload": {
                    "id": "5f0c2a7e",
                    "ok": False,
                    "error": {
                        "code": "forbidden",
                        "message": "user 'olga' (roles: operator) may not fault.clear",
                        "device": "printer",
                    },
                },
            }
        ],
    }
    for channel, (address, model, retained) in MESSAGES.items():
        schemas[model.__name__] = _lift(_schema(model), schemas)
        messages[channel] = {
            "name": channel,
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
            **({"x-retained": True} if retained else {}),
        }
        channels[channel] = {
            "address": address,
            "messages": {channel: {"$ref": f"#/components/messages/{channel}"}},
            "parameters": parameters(address),
        }
        operations[channel] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": (model.__doc__ or channel).strip().split("\n")[0],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "labdevices daemon",
            "version": version,
            "description": (
                "The MQTT API of a labdevices daemon. Every request is a JSON envelope carrying "
                "its reply topic (`reply_to`, which must lie under "
                "`labdevices/{site}/clients/`) and correlation id (`id`), so the API works on "
                "MQTT 3.1.1 and 5 alike. A request is authenticated by `session` (from "
                "`daemon/cmd/login`), `t` (when issued, epoch seconds; stale or replayed "
                "requests are refused) and `mac` (HMAC-SHA256 of topic and the other fields "
                "with the session's secret). Every reply is `{ok: true, result}` or "
                "`{ok: false, error: {code, message, device}}`. A malformed request with a "
                "usable reply topic gets a `malformed_request` (or `too_large`) error reply; "
                "one without is dropped, counted and logged. Limits: a request "
                f"{MAX_REQUEST_BYTES} bytes, its args {MAX_ARGS_BYTES} bytes, a job "
                f"submission {MAX_JOB_REQUEST_BYTES} bytes. A site may have several "
                "daemons (one broker, one store; docs/site.md): each request is executed and "
                "answered by exactly one of them — a device's (`{device}/cmd/…`, `jobs/submit` "
                "with its `printer`, `sign` of a job on it) by the daemon owning the device, "
                "every other by the site's leader."
            ),
            "x-error-codes": codes,
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


def render_markdown(doc: dict[str, Any]) -> str:
    """docs/api.md: the document for people (generated; do not edit by hand)."""
    out = [
        "# The labdevices MQTT API",
        "",
        "<!-- generated by `labdevices api schema --markdown`; do not edit -->",
        "",
        doc["info"]["description"],
        "",
        "The machine-readable contract: [api/asyncapi.yaml](api/asyncapi.yaml) (AsyncAPI 3.0).",
        "",
        "## Requests",
        "",
        "| topic | capability | args | what it does |",
        "| --- | --- | --- | --- |",
    ]
    for cmd in COMMANDS:
        fields = cmd.args.model_fields
        args = ", ".join(
            f"`{name}`" + ("" if f.is_required() else "?") for name, f in fields.items()
        )
        needs = f"`{cmd.capability}`" if cmd.capability else "none (it opens a session)"
        out.append(f"| `{cmd.address}` | {needs} | {args or '—'} | {cmd.summary} |")
    out += ["", "Examples (the request envelope):", ""]
    for cmd in COMMANDS:
        msg = doc["components"]["messages"][f"{cmd.scope}_{cmd.name}_request"]
        out += [
            f"### {cmd.scope} `{cmd.name}`",
            "",
            "```json",
            json.dumps(msg["examples"][0]["payload"], indent=2, ensure_ascii=False),
            "```",
            "",
        ]
    out += [
        "## Published by the daemon",
        "",
        "| topic | retained | payload |",
        "| --- | --- | --- |",
    ]
    for _channel, (address, model, retained) in MESSAGES.items():
        names = ", ".join(f"`{n}`" for n in model.model_fields)
        out.append(f"| `{address}` | {'yes' if retained else 'no'} | {names} |")
    out += ["", "## Error codes", "", "| code | meaning |", "| --- | --- |"]
    for code, meaning in doc["info"]["x-error-codes"].items():
        out.append(f"| `{code}` | {meaning} |")
    out.append("")
    return "\n".join(out)

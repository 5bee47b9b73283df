"""The dashboard's ASGI app: routes, the login flow and every action, in one readable place.

Each action is the MQTT API's own command: authorised by the same function as the request
guard (``daemon._auth.authorise``, the roles table), refusals audited the same way, then run by
the daemon's ``CommandRouter`` with the logged-in user as actor, so web and MQTT cannot diverge.
"""

from __future__ import annotations

import asyncio
import bisect
import hmac
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import JsonValue
from starlette.applications import Starlette
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request as HttpRequest
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..bus import Request, Topics
from ..daemon._auth import NotPermitted, audit_refusal, authorise
from ..daemon._commands import CommandRouter, daemon_command_topic
from ..daemon._errors import UnknownDevice
from ..errors import BadRequest, ConfigurationError, Forbidden, LabDeviceError
from ..profiles import GcodeProfile, load_profile
from ..protocols import strip_gcode
from ..store import AuditRecord, Store, TelemetryPoint
from ._live import LiveHub
from ._plans import MAX_JOB_BYTES, Plans, plan_upload
from ._sessions import COOKIE, LOGIN_COOKIE, WebSessions, WebUser

__all__ = ["WebBackend", "create_app"]

_STATIC = Path(__file__).with_name("static")

#: HTTP status of a refused action, by the error's code (others: 409, the lab's state refused it)
_STATUS = {
    "unauthenticated": 401,
    "forbidden": 403,
    "bad_request": 400,
    "malformed_request": 400,
    "unknown_device": 404,
    "unknown_alarm": 404,
    "unknown_job": 404,
    "unknown_signal": 404,
    "unknown_command": 404,
}

#: printer commands a form may post (each authorised by the roles table like any request)
_DEVICE_ACTIONS = ("pause", "resume", "cancel", "estop")


@dataclass
class WebBackend:
    """What the web app needs from the daemon."""

    store: Store
    topics: Topics
    router: CommandRouter
    hub: LiveHub
    sessions: WebSessions
    #: ``jobs/submit`` (the job manager's handler, as the bus serves it)
    submit: Callable[[Request, str], Awaitable[JsonValue]]
    #: the SQLite store's file, for the batch record PDF (None: not offered)
    db_path: str | Path | None = None
    #: the newest signed checkpoint of the audit chain: (number, note)
    checkpoint: Callable[[], tuple[int, str] | None] = lambda: None

    def _topic(self, scope: str, name: str, device: str | None) -> tuple[str, str]:
        """The MQTT topic of a command and the object its audit record names."""
        if scope == "device":
            assert device is not None
            return self.topics.command(device, name), f"device/{device}"
        if scope == "jobs":
            return self.topics.job_submit(), "jobs"
        return daemon_command_topic(self.topics.root, name), "daemon"

    async def authorised(
        self,
        user: WebUser,
        name: str,
        scope: str = "daemon",
        *,
        device: str | None = None,
        request_id: str | None = None,
    ) -> None:
        """``user`` may run the command ``(scope, name)``, or ``NotPermitted`` (audited as the
        bus audits a refusal). Also for what the web does itself: a read from the store (the
        audit trail, the batch record), a job planned for its preview."""
        try:
            authorise(user.id, user.roles, scope, name, self.router.knows)
        except NotPermitted as exc:
            topic, obj = self._topic(scope, name, device)
            await audit_refusal(
                self.store,
                user.id,
                obj,
                topic=topic,
                request_id=request_id or f"web-{secrets.token_hex(8)}",
                code=exc.code,
                why=exc.why,
                message=exc.message,
                session=user.session_id,
                via="web",
            )
            raise

    async def act(
        self,
        user: WebUser,
        scope: str,
        name: str,
        args: dict[str, JsonValue] | None = None,
        *,
        device: str | None = None,
    ) -> JsonValue:
        """Run a command of the MQTT API as ``user``: authorised and audited as the bus does."""
        topic, _ = self._topic(scope, name, device)
        request = Request(
            id=f"web-{secrets.token_hex(8)}",
            reply_to=f"{self.topics.user_inboxes(user.id)}web",
            actor=user.id,
            args=args or {},
            session=user.session_id,
            t=time.time(),
        )
        await self.authorised(user, name, scope, device=device, request_id=request.id)
        if scope == "device":
            return await self.router.handle_device(request, topic)
        if scope == "jobs":
            return await self.submit(request, topic)
        return await self.router.handle_daemon(request, topic)


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("labdevices.web", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["clock"] = lambda t: time.strftime("%H:%M:%S", time.localtime(t)) if t else ""
    env.filters["datetime"] = lambda t: (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else ""
    )
    env.filters["shown"] = _shown
    env.filters["unit"] = lambda unit: _UNITS.get(unit, unit or "")
    env.filters["duration"] = _duration
    return env


def _shown(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


#: units as people write them
_UNITS = {"degC": "°C", "ul": "µL", "uL": "µL"}


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _safe_next(target: object, default: str = "/") -> str:
    """A local path to go back to (never another site: no ``//host`` nor a scheme)."""
    if isinstance(target, str) and target.startswith("/") and not target.startswith("//"):
        return target
    return default


def _matches(record: AuditRecord, query: dict[str, str]) -> bool:
    if query["actor"] and record.actor != query["actor"]:
        return False
    if query["action"] and not record.action.startswith(query["action"]):
        return False
    if query["object"] and not record.object.startswith(query["object"]):
        return False
    if query["text"]:
        text = query["text"].lower()
        fields = (record.actor, record.action, record.object, record.new, record.old, record.reason)
        return any(text in (f or "").lower() for f in fields)
    return True


#: the windows the culture charts offer: seconds, label
_WINDOWS = ((300, "5 minutes"), (3600, "1 hour"), (8 * 3600, "8 hours"), (24 * 3600, "24 hours"))


def _chart(
    signal: str, sig: dict[str, Any], points: list[TelemetryPoint], start: float, end: float
) -> dict[str, Any]:
    """One signal over a window as SVG coordinates (300×80), with its limits as lines."""
    numeric = [
        (p.t, float(p.value))
        for p in points
        if isinstance(p.value, int | float) and not isinstance(p.value, bool)
    ]
    low, high = sig.get("min"), sig.get("max")
    out: dict[str, Any] = {
        "signal": signal,
        "unit": sig.get("unit") or "",
        "writable": bool(sig.get("writable")),
        "min": low,
        "max": high,
        "count": len(numeric),
        "points": "",
        "limit_lines": [],
        "lo": None,
        "hi": None,
    }
    if not numeric:
        return out
    values = [v for _, v in numeric]
    lo, hi = min(values), max(values)
    out["lo"], out["hi"] = lo, hi
    # a lab younger than the window spans what it has (else a thin line at the right edge)
    start = max(start, min(t for t, _ in numeric))
    span_t = max(end - start, 1e-9)
    # the limits stay in view only when near the data (else the trend would be a flat line)
    view_lo, view_hi = lo, hi
    pad = (hi - lo) or max(abs(hi) * 0.05, 1.0)
    for limit in (low, high):
        if isinstance(limit, int | float) and lo - 2 * pad <= limit <= hi + 2 * pad:
            view_lo, view_hi = min(view_lo, limit), max(view_hi, limit)
    view_lo, view_hi = view_lo - 0.05 * pad, view_hi + 0.05 * pad
    span_v = view_hi - view_lo

    def y(v: float) -> float:
        return round(78 - 76 * (v - view_lo) / span_v, 1)

    if len(numeric) > 600:  # enough for 300 px: every n-th point
        step = len(numeric) // 600 + 1
        numeric = [*numeric[::step], numeric[-1]]
    out["points"] = " ".join(f"{round(300 * (t - start) / span_t, 1)},{y(v)}" for t, v in numeric)
    out["limit_lines"] = [
        y(limit)
        for limit in (low, high)
        if isinstance(limit, int | float) and view_lo <= limit <= view_hi
    ]
    return out


#: the printer page's live charts: signals of this unit, under this title
_LIVE_CHARTS = (("degC", "Temperatures"), ("kPa", "Pressures"))
#: what the printer page's charts show on load, from the store (seconds)
_LIVE_WINDOW_S = 300.0
#: a layer change in G-code: the toolpath planner's ``; layer 3/8 z=0.9``, Cura's
#: ``;LAYER:2``, PrusaSlicer's ``;LAYER_CHANGE``
_LAYER_MARK = re.compile(r"^\s*;\s*(?:layer\s+\d+|LAYER:\s*-?\d+|LAYER_CHANGE)", re.IGNORECASE)


def _layer_starts(gcode: str) -> list[int]:
    """The number of commands before each layer's mark (the job's ``line`` counts commands)."""
    starts, commands = [], 0
    for line in gcode.splitlines():
        if _LAYER_MARK.match(line):
            starts.append(commands)
        elif strip_gcode(line):
            commands += 1
    return starts


def _seconds(value: JsonValue, default: float) -> float:
    return float(value) if isinstance(value, int | float) else default


def _render_pdf(db_path: str | Path, job_id: int) -> bytes:
    from ..record import collect_record, render_pdf
    from ..store import open_database

    with open_database(db_path, readonly=True) as db:
        record = collect_record(db, job_id)
    return render_pdf(record)


def create_app(backend: WebBackend) -> Starlette:
    env = _environment()
    sessions = backend.sessions
    plans = Plans()
    #: live job → the command index at which each of its layers starts
    layer_starts: dict[int, list[int]] = {}

    def page(template: str, http_status: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=http_status)

    def wants_json(request: HttpRequest) -> bool:
        return "application/json" in request.headers.get("accept", "")

    def refused(
        request: HttpRequest, user: WebUser | None, exc: LabDeviceError, back: str = "/"
    ) -> Response:
        status = _STATUS.get(exc.code, 409)
        if wants_json(request):
            body = {"ok": False, "error": {"code": exc.code, "message": exc.message}}
            return JSONResponse(body, status_code=status)
        return page("error.html", status, user=user, error=exc, back=back)

    def done(request: HttpRequest, result: JsonValue, back: str) -> Response:
        """An action's success: its result for scripts, else back to the page it came from."""
        if wants_json(request):
            return JSONResponse({"ok": True, "result": result})
        return RedirectResponse(back, status_code=303)

    async def current(request: HttpRequest, *, touch: bool = True) -> WebUser | None:
        return await sessions.user(request.cookies.get(COOKIE), touch=touch)

    def to_login(request: HttpRequest) -> Response:
        if wants_json(request) or request.method != "GET":
            body = {"ok": False, "error": {"code": "unauthenticated", "message": "log in first"}}
            return JSONResponse(body, status_code=401)
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    async def checked_form(request: HttpRequest, user: WebUser) -> FormData | None:
        """The posted form, if it carries the session's CSRF token (field or header)."""
        form = await request.form()
        token = form.get("csrf") or request.headers.get("x-csrf-token") or ""
        if not isinstance(token, str) or not hmac.compare_digest(token, user.csrf):
            return None
        return form

    def csrf_refused(request: HttpRequest, user: WebUser) -> Response:
        exc = Forbidden("the form's CSRF token is missing or wrong: reload the page")
        return refused(request, user, exc)

    # -- login ------------------------------------------------------------------------------

    def login_page(
        request: HttpRequest,
        http_status: int = 200,
        *,
        target: str,
        error: str | None = None,
        login_name: str = "",
    ) -> Response:
        """The login form, its CSRF token bound to the browser's login cookie (set if new)."""
        nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_hex(16)
        response = page(
            "login.html",
            http_status,
            next=target,
            error=error,
            login_name=login_name,
            csrf=sessions.login_csrf(nonce),
        )
        if request.cookies.get(LOGIN_COOKIE) != nonce:
            response.set_cookie(
                LOGIN_COOKIE, nonce, httponly=True, samesite="strict", secure=False, path="/login"
            )
        return response

    async def login_form(request: HttpRequest) -> Response:
        return login_page(request, target=_safe_next(request.query_params.get("next")))

    async def login(request: HttpRequest) -> Response:
        form = await request.form()
        user_id, password = form.get("user"), form.get("password")
        target = _safe_next(form.get("next"))
        # A login posted from another site (login CSRF: the victim logged in as the attacker)
        # carries no login cookie (SameSite=Strict) and cannot know the token.
        if not sessions.login_csrf_ok(request.cookies.get(LOGIN_COOKIE), form.get("csrf")):
            return login_page(
                request,
                403,
                target=target,
                error="The login form's CSRF token is missing or wrong: log in from this page.",
            )
        if not isinstance(user_id, str) or not isinstance(password, str) or not user_id:
            return login_page(
                request, 400, target=target, error="Enter your user name and password."
            )
        try:
            cookie = await sessions.login(user_id.strip(), password)
        except LabDeviceError as exc:
            return login_page(request, 401, target=target, error=exc.message, login_name=user_id)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE, cookie, httponly=True, samesite="strict", secure=False, path="/"
        )
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        return response

    async def logout(request: HttpRequest) -> Response:
        user = await current(request)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        if await checked_form(request, user) is None:
            return csrf_refused(request, user)
        await sessions.logout(user.session_id, user.id)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- pages --------------------------------------------------------------------------------

    async def status_of(user: WebUser) -> dict[str, Any]:
        status = await backend.act(user, "daemon", "status")
        assert isinstance(status, dict)
        return status

    async def lab(request: HttpRequest) -> Response:
        user = await current(request)
        if user is None:
            return to_login(request)
        try:
            status = await status_of(user)
        except LabDeviceError as exc:
            return refused(request, user, exc)
        return page("lab.html", user=user, status=status, printers=printers(status))

    def printers(status: dict[str, Any]) -> list[str]:
        return [d["device"] for d in status["devices"] if d["driver"] == "gcode"]

    async def alarms_fragment(request: HttpRequest) -> Response:
        user = await current(request, touch=False)
        if user is None:
            return to_login(request)
        try:
            status = await status_of(user)
        except LabDeviceError as exc:
            return refused(request, user, exc)
        html = env.get_template("_alarms.html").render(user=user, alarms=status["alarms"])
        states = {d["device"]: d["state"] for d in status["devices"]}
        return JSONResponse({"banner": html, "alarms": status["alarms"], "states": states})

    async def events(request: HttpRequest) -> Response:
        user = await current(request, touch=False)
        if user is None:
            return to_login(request)
        try:
            authorise(user.id, user.roles, "daemon", "status", backend.router.knows)
        except NotPermitted as exc:
            return refused(request, user, exc)

        async def stream() -> AsyncIterator[str]:
            checked = time.monotonic()
            with backend.hub.subscribe() as subscriber:
                yield "retry: 1000\n\n"
                while (batch := await subscriber.next_batch()) is not None:
                    # A session revoked (logout elsewhere, deactivation, idle timeout) ends the
                    # stream at its next batch, checked at most once a second.
                    if time.monotonic() - checked >= 1.0:
                        checked = time.monotonic()
                        if await current(request, touch=False) is None:
                            return
                    yield f"data: {json.dumps(batch, separators=(',', ':'))}\n\n"

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    # -- actions ----------------------------------------------------------------------------

    async def ack_alarm(request: HttpRequest) -> Response:
        user = await current(request)
        if user is None:
            return to_login(request)
        form = await checked_form(request, user)
        if form is None:
            return csrf_refused(request, user)
        back = _safe_next(form.get("back"))
        reason = form.get("reason")
        args: dict[str, JsonValue] = {"alarm_id": int(request.path_params["alarm_id"])}
        if isinstance(reason, str) and reason.strip():
            args["reason"] = reason.strip()
        try:
            result = await backend.act(user, "daemon", "ack_alarm", args)
        except LabDeviceError as exc:
            return refused(request, user, exc, back)
        return done(request, result, back)

    async def device_action(request: HttpRequest) -> Response:
        user = await current(request)
        if user is None:
            return to_login(request)
        form = await checked_form(request, user)
        if form is None:
            return csrf_refused(request, user)
        back = _safe_next(form.get("back"))
        device = request.path_params["device"]
        action = request.path_params["action"]
        args: dict[str, JsonValue] = {}
        reason = form.get("reason")
        if isinstance(reason, str) and reason.strip():
            args["reason"] = reason.strip()
        try:
            if action not in _DEVICE_ACTIONS:
                raise BadRequest(f"no such action {action!r} (known: {', '.join(_DEVICE_ACTIONS)})")
            result = await backend.act(user, "device", action, args, device=device)
        except LabDeviceError as exc:
            return refused(request, user, exc, back)
        return done(request, result, back)

    async def with_layers(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The live jobs, each with its current layer (``layer`` of ``layers``) when its
        G-code marks layers (the toolpath planner's ``; layer k/N``, or a slicer's)."""
        for j in jobs:
            job_id = j["job_id"]
            if job_id not in layer_starts:
                gcode = await backend.store.job_gcode(job_id)
                layer_starts[job_id] = _layer_starts(gcode or "")
            starts = layer_starts[job_id]
            if starts:
                j["layers"] = len(starts)
                j["layer"] = max(1, bisect.bisect_right(starts, j["line"]))
        for stale in set(layer_starts) - {j["job_id"] for j in jobs}:
            del layer_starts[stale]
        return jobs

    async def printer_view(
        request: HttpRequest,
        user: WebUser,
        device: str,
        http_status: int = 200,
        **extra: Any,
    ) -> Response:
        try:
            status = await status_of(user)
            found = [d for d in status["devices"] if d["device"] == device]
            if not found or found[0]["driver"] != "gcode":
                raise UnknownDevice(f"no printer {device!r}", device=device)
            recent = await backend.act(user, "daemon", "jobs", {"printer": device, "limit": 20})
            charts = await live_charts(found[0])
        except LabDeviceError as exc:
            return refused(request, user, exc)
        live = await with_layers([j for j in status["jobs"] if j["printer"] == device])
        context: dict[str, Any] = {"plan": None, "plan_error": None, **extra}
        return page(
            "printer.html",
            http_status,
            user=user,
            status=status,
            d=found[0],
            jobs=live,
            recent=recent,
            charts=charts,
            window_s=_LIVE_WINDOW_S,
            printers=printers(status),
            back=f"/printers/{device}",
            now=time.time(),
            **context,
        )

    async def live_charts(d: dict[str, Any]) -> list[dict[str, Any]]:
        """The printer's temperatures and pressures over the last minutes, from the store: the
        page's script draws them and goes on with the live samples."""
        end = time.time()
        charts = []
        for unit, title in _LIVE_CHARTS:
            series = []  # a list: its order is the legend's and the colours'
            for name, sig in d["signals"].items():
                if sig.get("unit") != unit:
                    continue
                points = await backend.store.query_telemetry(
                    d["device"], name, start=end - _LIVE_WINDOW_S, end=end
                )
                numeric = [
                    [round(p.t, 3), p.value]
                    for p in points
                    if isinstance(p.value, int | float) and not isinstance(p.value, bool)
                ]
                series.append({"signal": name, "points": numeric})
            if series:
                charts.append({"title": title, "unit": unit, "series": series})
        return charts

    async def printer_page(request: HttpRequest) -> Response:
        user = await current(request)
        if user is None:
            return to_login(request)
        return await printer_view(request, user, request.path_params["device"])

    async def queue_fragment(request: HttpRequest) -> Response:
        user = await current(request, touch=False)
        if user is None:
            return to_login(request)
        device = request.path_params["device"]
        try:
            status = await status_of(user)
        except LabDeviceError as exc:
            return refused(request, user, exc)
        live = await with_layers([j for j in status["jobs"] if j["printer"] == device])
        html = env.get_template("_queue.html").render(
            user=user, jobs=live, device=device, back=f"/printers/{device}", now=time.time()
        )
        return JSONResponse({"html": html})

    async def plan_upload_page(request: HttpRequest) -> Response:
        """A job TOML planned for this printer: the page shows its preview and summary, and a
        button that submits exactly the planned G-code."""
        user = await current(request)
        if user is None:
            return to_login(request)
        form = await checked_form(request, user)
        if form is None:
            return csrf_refused(request, user)
        device = request.path_params["device"]
        try:
            upload = form.get("job")
            await backend.authorised(user, "submit", "jobs")
            status = await status_of(user)
            found = [d for d in status["devices"] if d["device"] == device]
            if not found or found[0]["driver"] != "gcode":
                raise UnknownDevice(f"no printer {device!r}", device=device)
            if not isinstance(upload, UploadFile) or not upload.filename:
                raise BadRequest("choose a job file (TOML) to plan")
            data = await upload.read(MAX_JOB_BYTES + 1)
            profile = load_profile(found[0]["profile"])
            assert isinstance(profile, GcodeProfile)
            plan = await asyncio.to_thread(
                plan_upload, data, upload.filename, profile, device, user.session_id
            )
        except ConfigurationError as exc:
            problems = exc.problems or [exc.message]
            summary = exc.message.split("\n", 1)[0] if exc.problems else ""
            return await printer_view(
                request, user, device, 400, plan_error={"summary": summary, "problems": problems}
            )
        except LabDeviceError as exc:
            return refused(request, user, exc, f"/printers/{device}")
        finally:
            await form.close()
        plans.add(plan)
        return await printer_view(request, user, device, plan=plan)

    async def submit_job(request: HttpRequest) -> Response:
        user = await current(request)
        if user is None:
            return to_login(request)
        form = await checked_form(request, user)
        if form is None:
            return csrf_refused(request, user)
        device = request.path_params["device"]
        try:
            return await _submit(request, user, device, form)
        finally:
            await form.close()  # the upload's spooled file

    async def _submit(request: HttpRequest, user: WebUser, device: str, form: FormData) -> Response:
        back = f"/printers/{device}"
        try:
            token = form.get("plan")
            if isinstance(token, str) and token:
                args = await planned_args(user, device, token, form.get("gcode_sha256"))
            else:
                args = await uploaded_args(device, form)
            await backend.act(user, "jobs", "submit", args)
        except LabDeviceError as exc:
            return refused(request, user, exc, back)
        return RedirectResponse(back, status_code=303)

    async def planned_args(
        user: WebUser, device: str, token: str, sha256: object
    ) -> dict[str, JsonValue]:
        # authorised before the plan is taken: a refused click keeps it for an allowed user
        await backend.authorised(user, "submit", "jobs")
        plan = plans.take(token, user.session_id, device)
        if sha256 != plan.gcode_sha256:
            raise BadRequest("the confirmed G-code is not the planned one: plan the job again")
        return {"printer": device, "gcode": plan.gcode, **plan.args}

    async def uploaded_args(device: str, form: FormData) -> dict[str, JsonValue]:
        upload = form.get("gcode")
        if not isinstance(upload, UploadFile):
            raise BadRequest("choose a G-code file to submit")
        raw = await upload.read()
        try:
            gcode = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(f"{upload.filename}: not UTF-8 text") from exc
        args: dict[str, JsonValue] = {"printer": device, "gcode": gcode}
        for key in ("batch_id", "patient_id", "name"):
            value = form.get(key)
            if isinstance(value, str) and value.strip():
                args[key] = value.strip()
        if "name" not in args and upload.filename:
            args["name"] = upload.filename
        return args

    async def sign_job(request: HttpRequest) -> Response:
        """A release (or other) signature: the signer re-enters user id and password and picks
        the meaning; the content hash is the one shown on the page they read."""
        user = await current(request)
        if user is None:
            return to_login(request)
        form = await checked_form(request, user)
        if form is None:
            return csrf_refused(request, user)
        back = _safe_next(form.get("back"))
        args: dict[str, JsonValue] = {"job_id": int(request.path_params["job_id"])}
        for key in ("user", "password", "meaning", "content_sha256", "comment"):
            value = form.get(key)
            if isinstance(value, str) and value.strip():
                args[key] = value if key == "password" else value.strip()
        try:
            result = await backend.act(user, "daemon", "sign", args)
        except LabDeviceError as exc:
            return refused(request, user, exc, back)
        return done(request, result, back)

    async def job_page(request: HttpRequest) -> Response:
        user = await current(request)
        if user is None:
            return to_login(request)
        job_id = int(request.path_params["job_id"])
        try:
            job = await backend.act(user, "daemon", "job", {"job_id": job_id})
            assert isinstance(job, dict)
            await backend.authorised(user, "audit")
            verified = await backend.store.verify()
            start = _seconds(job.get("started_at") or job.get("created_at"), 0.0)
            end = _seconds(job.get("ended_at"), time.time())
            alarms = [
                a
                for a in await backend.store.list_alarms(limit=1000)
                if a.device == job["printer"]
                and a.raised_at <= end
                and (a.cleared_at is None or a.cleared_at >= start)
            ]
            trail = await backend.store.audit_records(object=f"job/{job_id}")
            status = await status_of(user)
        except LabDeviceError as exc:
            return refused(request, user, exc)
        return page(
            "job.html",
            user=user,
            job=job,
            alarms=alarms,
            trail=trail,
            verified=verified,
            pdf=backend.db_path is not None,
            printers=printers(status),
            back=f"/jobs/{job_id}",
        )

    async def job_pdf(request: HttpRequest) -> Response:
        user = await current(request)
        if user is None:
            return to_login(request)
        job_id = int(request.path_params["job_id"])
        try:
            await backend.act(user, "daemon", "job", {"job_id": job_id})  # exists, may read
            if backend.db_path is None:
                raise BadRequest("this daemon's store renders no batch record")
            pdf = await asyncio.to_thread(_render_pdf, backend.db_path, job_id)
        except LabDeviceError as exc:
            return refused(request, user, exc)
        return Response(
            pdf,
            media_type="application/pdf",
            headers={"Content-Disposition": f'inline; filename="batch-record-job{job_id}.pdf"'},
        )

    async def audit_page(request: HttpRequest) -> Response:
        user = await current(request)
        if user is None:
            return to_login(request)
        query = {
            key: request.query_params.get(key, "").strip()
            for key in ("actor", "action", "object", "text")
        }
        try:
            await backend.authorised(user, "audit")
            records = await backend.store.audit_records()
            verified = await backend.store.verify()
            status = await status_of(user)
        except LabDeviceError as exc:
            return refused(request, user, exc)
        shown = [r for r in records if _matches(r, query)]
        shown.reverse()
        return page(
            "audit.html",
            user=user,
            records=shown[:500],
            total=len(shown),
            query=query,
            verified=verified,
            checkpoint=backend.checkpoint(),
            printers=printers(status),
            back="/audit",
        )

    async def culture_page(request: HttpRequest) -> Response:
        user = await current(request)
        if user is None:
            return to_login(request)
        try:
            window = int(request.query_params.get("window", "3600"))
        except ValueError:
            window = 3600
        if window not in dict(_WINDOWS):
            window = 3600
        try:
            status = await status_of(user)
            await backend.authorised(user, "status")
            now = time.time()
            devices = [d for d in status["devices"] if d["driver"] != "gcode"]
            charts = {}
            for d in devices:
                charts[d["device"]] = [
                    _chart(
                        name,
                        sig,
                        await backend.store.query_telemetry(
                            d["device"], name, start=now - window, end=now
                        ),
                        now - window,
                        now,
                    )
                    for name, sig in d["signals"].items()
                ]
        except LabDeviceError as exc:
            return refused(request, user, exc)
        return page(
            "culture.html",
            user=user,
            status=status,
            devices=devices,
            charts=charts,
            window=window,
            windows=_WINDOWS,
            printers=printers(status),
            back=f"/culture?window={window}",
        )

    async def setpoint(request: HttpRequest) -> Response:
        user = await current(request)
        if user is None:
            return to_login(request)
        form = await checked_form(request, user)
        if form is None:
            return csrf_refused(request, user)
        back = _safe_next(form.get("back"), "/culture")
        device = request.path_params["device"]
        args: dict[str, JsonValue] = {}
        for key in ("signal", "reason"):
            value = form.get(key)
            if isinstance(value, str) and value.strip():
                args[key] = value.strip()
        raw = form.get("value")
        try:
            try:
                args["value"] = float(raw) if isinstance(raw, str) else None
            except ValueError as exc:
                raise BadRequest(f"the new value must be a number (got {raw!r})") from exc
            if "reason" not in args:
                raise BadRequest("a setpoint change needs a reason")
            result = await backend.act(user, "device", "write", args, device=device)
        except LabDeviceError as exc:
            return refused(request, user, exc, back)
        return done(request, result, back)

    routes = [
        Route("/", lab),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/events", events),
        Route("/fragments/alarms", alarms_fragment),
        Route("/alarms/{alarm_id:int}/ack", ack_alarm, methods=["POST"]),
        Route("/devices/{device}/{action}", device_action, methods=["POST"]),
        Route("/printers/{device}", printer_page),
        Route("/printers/{device}/plan", plan_upload_page, methods=["POST"]),
        Route("/printers/{device}/submit", submit_job, methods=["POST"]),
        Route("/fragments/queue/{device}", queue_fragment),
        Route("/jobs/{job_id:int}/sign", sign_job, methods=["POST"]),
        Route("/jobs/{job_id:int}", job_page),
        Route("/jobs/{job_id:int}/record.pdf", job_pdf),
        Route("/audit", audit_page),
        Route("/culture", culture_page),
        Route("/culture/{device}/setpoint", setpoint, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=_STATIC), name="static"),
    ]
    return Starlette(routes=routes)

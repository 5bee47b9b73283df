"""Marlin-style G-code bioprinter driver over a serial link.

The protocol lives in ``labdevices.protocols.MarlinHost`` (no I/O); this module
moves bytes between it and the port, runs print jobs with progress, and turns the
printer's dialect (from its profile) into commands: pressure, valves,
temperatures, UV. Safety first: on doubt a printer stops depositing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from ..errors import (
    DeviceConnectionError,
    DeviceFault,
    DeviceTimeoutError,
    JobRejected,
    LabDeviceError,
    ProtocolError,
)
from ..profiles import GcodeProfile, GcodeSignal, PrintheadDialect
from ..protocols import (
    Busy,
    Capability,
    CommandDone,
    Echo,
    FirmwareError,
    FirmwareInfo,
    FirmwareReset,
    Halted,
    LineProcessed,
    MarlinHost,
    ResendRequest,
    TemperatureReport,
    Wait,
    frame,
    strip_gcode,
)
from ..transports import SerialTransport
from ._base import Device, DeviceState, Sample
from ._program import Program, load_gcode, load_program

__all__ = [
    "GcodePrinter",
    "JobOutcome",
    "JobProgress",
    "JobResult",
    "Program",
    "load_gcode",
    "load_program",
]

log = logging.getLogger(__name__)

#: Unanswered probes (resend of the oldest line after silence) before the link is declared dead.
MAX_PROBES = 3
#: Silence after a handshake command before it is sent again (Marlin's busy keepalive is 2 s).
HANDSHAKE_SILENCE_S = 2.5


class JobOutcome(StrEnum):
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class JobProgress:
    """Lines acknowledged by the printer out of the job's total, with timing."""

    lines_done: int
    lines_total: int
    elapsed_s: float

    @property
    def fraction(self) -> float:
        return self.lines_done / self.lines_total if self.lines_total else 1.0

    @property
    def eta_s(self) -> float | None:
        if self.lines_done == 0:
            return None
        return self.elapsed_s * (self.lines_total - self.lines_done) / self.lines_done


@dataclass(frozen=True, slots=True)
class JobResult:
    """How a job ended. ``last_acked_line`` is 1-based in the job's command list (0: none)."""

    outcome: JobOutcome
    lines_total: int
    last_acked_line: int
    elapsed_s: float
    error: LabDeviceError | None = None


@dataclass
class _Job:
    lines: Sequence[str]
    started: float = field(default_factory=time.monotonic)
    outcome: JobOutcome | None = None
    error: LabDeviceError | None = None
    valves_closed_for_pause: list[PrintheadDialect] = field(default_factory=list)
    stopper: asyncio.Task[None] | None = None
    """The safe stop in progress; the job's result waits for it."""


def _render(template: str, **fields: Any) -> list[str]:
    return [c for c in (strip_gcode(x) for x in template.format(**fields).split("\n")) if c]


class GcodePrinter(Device[GcodeProfile]):
    """A bioprinter speaking Marlin-style G-code on ``address`` (port path or ``socket://``)."""

    def __init__(
        self,
        name: str,
        profile: GcodeProfile,
        address: str,
        *,
        baudrate: int | None = None,
        window_lines: int | None = None,
        rx_buffer_bytes: int | None = None,
        ack_timeout_s: float | None = None,
        report_interval_s: float = 1.0,
        reconnect: bool = True,
    ) -> None:
        super().__init__(name, profile)
        s = profile.serial
        self.address = address
        self._transport = SerialTransport(address, baudrate=baudrate or s.baudrate, device=name)
        self._host = MarlinHost(
            window_lines=window_lines or s.window_lines,
            rx_buffer_bytes=rx_buffer_bytes or s.rx_buffer_bytes,
            max_resends_per_line=s.max_resends_per_line,
            long_timeouts_s=dict(s.long_timeouts_s),
            ack_timeout_s=ack_timeout_s or s.ack_timeout_s,
        )
        self.report_interval_s = report_interval_s
        self.reconnect = reconnect
        self.firmware: dict[str, str] = {}
        self.capabilities: dict[str, bool] = {}
        self.reports: dict[str, tuple[float, float | None]] = {}
        self.waiting_for_user = False
        self.last_error: str | None = None
        self._job: _Job | None = None
        self.stop_sent_at: float | None = None
        """``time.monotonic()`` when the last stop (M410, valves, pressure) was written."""
        self._closing = False
        self._identified: asyncio.Future[None] | None = None
        self._pipe_started = 0.0
        self._wake = asyncio.Event()
        self._report_event = asyncio.Event()
        self._report_signals: dict[str, list[tuple[str, GcodeSignal]]] = {}
        for sig_name, sig in profile.signals.items():
            if sig.report:
                self._report_signals.setdefault(sig.report, []).append((sig_name, sig))

    # -- lifecycle -----------------------------------------------------------
    async def _open(self) -> None:
        await self._connect()
        identified = self._identified = asyncio.get_running_loop().create_future()
        self._start_background(self._run(), "link")
        try:
            async with asyncio.timeout(self.profile.serial.connect_timeout_s):
                await asyncio.shield(identified)
        except TimeoutError:
            raise DeviceTimeoutError(
                f"printer on {self.address} did not answer M115 within "
                f"{self.profile.serial.connect_timeout_s} s",
                device=self.name,
            ) from None

    async def _close(self) -> None:
        self._closing = True
        self._fail_everything(DeviceConnectionError("device closed", device=self.name))
        await self._transport.close()

    async def _connect(self) -> None:
        await self._transport.open(timeout=self.profile.serial.connect_timeout_s)
        try:
            await self._handshake()
        except BaseException:
            await self._transport.close()
            raise

    async def _handshake(self) -> None:
        """Reset line numbers (``M110``) and read firmware info and capabilities (``M115``)."""
        s = self.profile.serial
        deadline = time.monotonic() + s.connect_timeout_s + s.reset_on_connect_wait_s
        self._rx_pending = b""
        self.firmware, self.capabilities = {}, {}
        # Numbered and checksummed, so a corrupted M110 is refused (and sent again)
        # rather than misread; M115 and everything after go through the host core.
        await self._exchange(frame(0, "M110 N0"), deadline)
        self._host.reset_numbering()
        log.info("%s: connected to %s", self.name, self.firmware.get("FIRMWARE_NAME", "firmware"))

    async def _exchange(self, data: bytes, deadline: float) -> None:
        """Send a handshake command until the firmware acknowledges it.

        It is sent again only after silence — lost (a board booting after the port
        opened, a dropped ``ok``), not slow — so that no late ``ok`` is left over to
        be mistaken for a numbered line's.
        """
        self._transport.write_nowait(data)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeviceTimeoutError(
                    f"no answer from a Marlin-style printer on {self.address} "
                    f"within {self.profile.serial.connect_timeout_s} s",
                    device=self.name,
                )
            try:
                answer = await self._await_handshake_ok(min(HANDSHAKE_SILENCE_S, remaining))
            except DeviceTimeoutError:
                self._transport.write_nowait(data)  # lost: send it again
                continue
            if answer == "ok":
                return
            if answer == "refused":
                self._transport.write_nowait(data)

    async def _await_handshake_ok(self, window: float) -> str:
        """``"ok"``; ``"refused"`` (an error, then its ok); ``"talking"`` (no ok in ``window``).

        Raises ``DeviceTimeoutError`` if the firmware said nothing at all.
        """
        end = time.monotonic() + window
        heard = refused = False
        while True:
            while b"\n" in self._rx_pending:
                heard = True
                raw, _, self._rx_pending = self._rx_pending.partition(b"\n")
                line = raw.decode("ascii", "replace").strip()
                if line.startswith("ok"):
                    return "refused" if refused else "ok"
                ev = _parse(line)
                if isinstance(ev, FirmwareError | ResendRequest):
                    refused = True
                    continue
                if isinstance(ev, Halted):
                    raise DeviceFault(
                        f"printer is halted ({ev.message}); reset it", device=self.name
                    )
                self._on_event(ev)
            remaining = end - time.monotonic()
            if remaining <= 0:
                if heard:
                    return "talking"
                raise DeviceTimeoutError("no answer", device=self.name)
            try:
                self._rx_pending += await self._transport.read(timeout=remaining)
            except DeviceTimeoutError:
                if heard:
                    return "talking"
                raise

    async def _run(self) -> None:
        """Own the link: read and dispatch, then reconnect with backoff after a loss."""
        delay = 0.5
        while True:
            try:
                await self._read_loop()
            except (DeviceConnectionError, DeviceTimeoutError, ProtocolError) as exc:
                if self._closing:
                    return
                self.last_error = str(exc)
                self._fail_everything(exc)
                await self._transport.close()
                if not self.reconnect:
                    self._set_state(DeviceState.FAULT, str(exc))
                    return
                self._set_state(DeviceState.OFFLINE, str(exc))
                log.warning("%s: %s; reconnecting", self.name, exc)
            while True:
                # capped, jittered exponential backoff
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, 30.0)
                self._set_state(DeviceState.CONNECTING)
                try:
                    await self._connect()
                except (DeviceConnectionError, DeviceTimeoutError, DeviceFault) as exc:
                    self._set_state(DeviceState.OFFLINE, str(exc))
                    continue
                delay = 0.5
                self._set_state(DeviceState.IDLE)
                break

    async def _read_loop(self) -> None:
        host = self._host
        identified: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        host.submit("M115", tag=identified)
        poller = asyncio.create_task(self._start_telemetry(identified), name=f"{self.name}:poll")
        try:
            if self._rx_pending:
                self._dispatch(host.receive_data(self._rx_pending))
                self._rx_pending = b""
            self._flush()
            probes = 0
            loop = asyncio.get_running_loop()
            last_rx = loop.time()
            while True:
                timeout = host.timeout()
                try:
                    data = await self._transport.read(timeout=timeout)
                except DeviceTimeoutError:
                    if host.in_flight == 0:
                        continue
                    # Lines may have been sent while this read was already waiting:
                    # silence counts from the last byte either way.
                    silent_for = loop.time() - max(last_rx, self._pipe_started)
                    if silent_for < timeout:
                        continue
                    probes += 1
                    if probes > MAX_PROBES:
                        raise DeviceTimeoutError(
                            f"printer silent for {MAX_PROBES} x {timeout:.1f} s "
                            f"with {host.in_flight} line(s) unacknowledged",
                            device=self.name,
                        ) from None
                    log.warning("%s: no answer for %.1f s, probing", self.name, timeout)
                    host.probe()
                    self._flush()
                    continue
                last_rx = loop.time()
                probes = 0
                self._dispatch(host.receive_data(data))
                self._flush()
        finally:
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller

    async def _start_telemetry(self, identified: asyncio.Future[None]) -> None:
        """Once M115 told the capabilities: auto-reports (M155) if the firmware has them, else polls."""
        first = self._identified
        try:
            await identified
        except LabDeviceError as exc:
            if first is not None and not first.done():
                first.set_exception(exc)
            return
        if first is not None and not first.done():
            first.set_result(None)
        if self.capabilities.get("AUTOREPORT_TEMP"):
            self._host.submit(f"M155 S{max(1, round(self.report_interval_s))}")
            self._flush()
            return
        await self._poll_reports()

    async def _poll_reports(self) -> None:
        while True:
            if self._host.halted:
                return
            done = asyncio.get_running_loop().create_future()
            self._host.submit(self.profile.report_command, tag=done)
            self._flush()
            with contextlib.suppress(LabDeviceError):
                await done
            await asyncio.sleep(self.report_interval_s)

    def _flush(self) -> None:
        idle = self._host.in_flight == 0
        data = self._host.data_to_send()
        if data:
            if idle:
                self._pipe_started = asyncio.get_running_loop().time()
            self._transport.write_nowait(data)

    # -- events --------------------------------------------------------------
    def _dispatch(self, events: list[Any]) -> None:
        for ev in events:
            self._on_event(ev)

    def _on_event(self, ev: Any) -> None:
        if isinstance(ev, LineProcessed):
            self._wake.set()
        elif isinstance(ev, CommandDone):
            fut = ev.tag
            if isinstance(fut, asyncio.Future) and not fut.done():
                fut.set_result(None)
        elif isinstance(ev, TemperatureReport):
            self._on_report(ev.values)
        elif isinstance(ev, Busy):
            self.waiting_for_user = "user" in ev.reason
        elif isinstance(ev, ResendRequest):
            log.debug("%s: printer asks for line %d again", self.name, ev.line)
        elif isinstance(ev, FirmwareError):
            if "Last Line" not in ev.message:
                self.last_error = ev.message
                log.warning("%s: firmware error: %s", self.name, ev.message)
        elif isinstance(ev, Halted):
            self._on_halted(ev.message)
        elif isinstance(ev, FirmwareReset):
            self._on_firmware_reset()
        elif isinstance(ev, Capability):
            self.capabilities[ev.name] = ev.enabled
        elif isinstance(ev, FirmwareInfo):
            self.firmware = ev.fields
        elif isinstance(ev, Wait) and self._host.in_flight:
            # Idle firmware with lines we think are in flight: their acks were lost.
            self._host.probe()
        elif isinstance(ev, Echo) and ev.text.lstrip().startswith("Unknown command"):
            self._on_unknown_command(ev.text.strip())

    def _on_unknown_command(self, text: str) -> None:
        """The firmware ignored a job command: it speaks another dialect, so it may be moving
        without depositing (or depositing where it should not). Stop the job safely."""
        job = self._job
        if job is None or job.outcome is not None:
            return
        command = text.partition(":")[2].strip().strip('"')
        word = command.split(None, 1)[0].upper() if command else ""
        kind = "deposition command" if word in self._deposition_words() else "command"
        exc = DeviceFault(
            f"the firmware does not know the job's {kind} {command!r} (Unknown command): "
            "the G-code is for another dialect; job stopped",
            device=self.name,
        )
        self.last_error = str(exc)
        log.error("%s", exc)
        self._begin_stop(job, JobOutcome.FAILED, exc)

    def _deposition_words(self) -> set[str]:
        """Command words of the profile's valve, pressure and printhead commands."""
        words: set[str] = set()
        for head in self.profile.printheads:
            for template in (head.valve_open, head.valve_close, head.set_pressure):
                if template:
                    words |= {
                        line.split(None, 1)[0].upper()
                        for line in template.split("\n")
                        if line.strip()
                    }
        return words

    def _on_report(self, values: dict[str, tuple[float, float | None]]) -> None:
        self.reports.update(values)
        now = time.time()
        for key, (actual, _target) in values.items():
            for sig_name, sig in self._report_signals.get(key, ()):
                self._publish(Sample(self.name, sig_name, actual, sig.unit, now))
        self._report_event.set()
        self._report_event = asyncio.Event()

    def _on_halted(self, message: str) -> None:
        exc = DeviceFault(f"printer halted: {message}", device=self.name)
        self.last_error = str(exc)
        self._fail_everything(exc, JobOutcome.FAILED)
        self._set_state(DeviceState.FAULT, str(exc))

    def _on_firmware_reset(self) -> None:
        # The firmware forgot its state (position, heaters, line numbers): a running
        # job cannot go on safely and is never resumed silently.
        exc = DeviceFault("printer firmware reset (start) — job interrupted", device=self.name)
        self.last_error = str(exc)
        self._fail_everything(exc)
        self._host.reset_numbering()
        self._host.stop_job()
        if self.state != DeviceState.FAULT:
            self._set_state(DeviceState.IDLE)

    def _fail_everything(
        self, exc: LabDeviceError, outcome: JobOutcome = JobOutcome.INTERRUPTED
    ) -> None:
        job = self._job
        if job is not None and job.outcome is None:
            job.outcome = outcome
            job.error = exc
        for fut in self._pending_futures():
            if not fut.done():
                fut.set_exception(exc)
        self._host.stop_job()
        self._wake.set()

    def _pending_futures(self) -> list[asyncio.Future[None]]:
        return [t for t in self._host.abandon_commands() if isinstance(t, asyncio.Future)]

    # -- commands --------------------------------------------------------------
    def _require_ready(self) -> None:
        if self.state in (DeviceState.OFFLINE, DeviceState.CONNECTING):
            raise DeviceConnectionError("printer is not connected", device=self.name)
        if self.state == DeviceState.FAULT or self._host.halted:
            raise DeviceFault(
                f"printer is in fault: {self.fault_reason or self.last_error}", device=self.name
            )

    async def send(self, *commands: str, timeout: float | None = None) -> None:
        """Run commands in order (ahead of job lines) and wait until the printer acknowledged them."""
        self._require_ready()
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []
        for command in commands:
            c = strip_gcode(command)
            if not c:
                continue
            fut: asyncio.Future[None] = loop.create_future()
            self._host.submit(c, tag=fut)
            futures.append(fut)
        self._flush()
        if not futures:
            return
        limit = timeout if timeout is not None else self._host.timeout() * (MAX_PROBES + 2)
        try:
            async with asyncio.timeout(limit):
                await asyncio.gather(*futures)
        except TimeoutError:
            raise DeviceTimeoutError(
                f"{commands[-1]!r} not acknowledged within {limit:.0f} s", device=self.name
            ) from None

    async def read(self, signal: str) -> Sample:
        """The latest reported value of ``signal`` (asks for a report if none came yet)."""
        sig = self.signal(signal)
        assert isinstance(sig, GcodeSignal)
        if sig.report is None:
            raise LabDeviceError(f"signal {signal!r} is write-only", device=self.name)
        if sig.report not in self.reports:
            event = self._report_event
            await self.send(self.profile.report_command)
            async with asyncio.timeout(self._host.timeout()):
                while sig.report not in self.reports:
                    await event.wait()
                    event = self._report_event
        return Sample(self.name, signal, self.reports[sig.report][0], sig.unit)

    async def write(self, signal: str, value: float) -> None:
        """Set a writable signal through its ``set`` template, after checking its limits."""
        sig = self.check_write(signal, value)
        assert isinstance(sig, GcodeSignal)
        assert sig.set is not None
        fields: dict[str, Any] = {"value": value}
        if sig.max:
            fraction = value / sig.max
            fields.update(fraction=fraction, pwm=round(255 * fraction))
        await self.send(*_render(sig.set, **fields))

    def _head(self, tool: int) -> PrintheadDialect:
        try:
            return self.profile.printhead(tool)
        except KeyError:
            tools = [p.tool for p in self.profile.printheads]
            raise LabDeviceError(
                f"no printhead {tool} (printheads: {tools})", device=self.name
            ) from None

    def pressure_commands(self, tool: int, kpa: float) -> list[str]:
        head = self._head(tool)
        if head.kind != "pneumatic":
            raise LabDeviceError(f"printhead {tool} is not pneumatic", device=self.name)
        if not 0 <= kpa <= head.pressure_max_kpa:
            from ..errors import LimitViolation

            raise LimitViolation(
                f"pressure {kpa} kPa outside 0–{head.pressure_max_kpa} kPa of printhead {tool}",
                device=self.name,
                signal=f"printhead{tool}_pressure",
                value=kpa,
            )
        if head.set_pressure is None:
            raise LabDeviceError(
                f"printhead {tool} pressure is set by hand on its regulator", device=self.name
            )
        fraction = kpa / head.pressure_max_kpa
        return _render(
            head.set_pressure, tool=tool, kpa=kpa, fraction=fraction, pwm=round(255 * fraction)
        )

    async def set_pressure(self, tool: int, kpa: float) -> None:
        await self.send(*self.pressure_commands(tool, kpa))

    async def set_valve(self, tool: int, is_open: bool) -> None:
        head = self._head(tool)
        template = head.valve_open if is_open else head.valve_close
        if template is None:
            raise LabDeviceError(f"printhead {tool} has no valve", device=self.name)
        await self.send(*_render(template, tool=tool))

    # -- jobs --------------------------------------------------------------------
    @property
    def job_running(self) -> bool:
        return self._job is not None

    async def print_file(
        self,
        path: str | Path,
        progress: Callable[[JobProgress], None] | None = None,
        *,
        allow_pauses: bool = False,
        force: bool = False,
    ) -> JobResult:
        """Load and check ``path`` (see ``load_program``), then run it."""
        data = await asyncio.to_thread(Path(path).read_bytes)
        program = load_program(
            data,
            self.profile,
            source=str(path),
            allow_pauses=allow_pauses,
            force=force,
            device=self.name,
        )
        return await self.run_job(program.commands, progress=progress)

    async def run_job(
        self,
        commands: Sequence[str],
        progress: Callable[[JobProgress], None] | None = None,
        progress_interval_s: float = 0.1,
    ) -> JobResult:
        """Stream ``commands`` (see ``load_gcode``) and wait until the job ends.

        Returns how it ended; cancelling the awaiting task cancels the job safely.
        """
        self._require_ready()
        if self._job is not None:
            raise JobRejected("a job is already running on this printer", device=self.name)
        if self.state != DeviceState.IDLE:
            raise JobRejected(f"printer is {self.state}, not idle", device=self.name)
        job = self._job = _Job(commands)
        host = self._host
        host.start_job(commands)
        self._set_state(DeviceState.BUSY)
        self._flush()
        total = len(commands)
        last_report = 0.0
        try:
            while job.outcome is None:
                if host.job_processed >= total:
                    job.outcome = JobOutcome.COMPLETED
                    break
                await self._wake.wait()
                self._wake.clear()
                now = time.monotonic()
                if progress is not None and now - last_report >= progress_interval_s:
                    last_report = now
                    progress(JobProgress(host.job_processed, total, now - job.started))
            if job.stopper is not None:
                # The result counts the lines acknowledged once the stop is reconciled.
                await asyncio.shield(job.stopper)
        except asyncio.CancelledError:
            await asyncio.shield(self._begin_stop(job, JobOutcome.CANCELLED, None))
            raise
        finally:
            self._job = None
            if self.state in (DeviceState.BUSY, DeviceState.PAUSED):
                self._set_state(DeviceState.IDLE)
        elapsed = time.monotonic() - job.started
        if progress is not None:
            progress(JobProgress(host.job_processed, total, elapsed))
        return JobResult(job.outcome, total, host.job_processed, elapsed, job.error)

    async def _wait_drained(self) -> None:
        """Until every line sent has been acknowledged."""
        while self._host.in_flight > 0 and not self._host.halted:
            if self.state in (DeviceState.OFFLINE, DeviceState.FAULT):
                raise DeviceConnectionError("link lost while draining", device=self.name)
            self._wake.clear()
            await self._wake.wait()

    def _valve_states(self, lines: Sequence[str], upto: int) -> dict[int, bool]:
        """Which printhead valves the first ``upto`` job lines left open."""
        opens = {
            c: h.tool
            for h in self.profile.printheads
            if h.valve_open
            for c in _render(h.valve_open, tool=h.tool)
        }
        closes = {
            c: h.tool
            for h in self.profile.printheads
            if h.valve_close
            for c in _render(h.valve_close, tool=h.tool)
        }
        state: dict[int, bool] = {}
        for line in lines[:upto]:
            if line in opens:
                state[opens[line]] = True
            elif line in closes:
                state[closes[line]] = False
        return state

    async def pause(self) -> None:
        """Stop feeding the job, let the printer finish what it holds, close open valves."""
        job = self._job
        if job is None or self.state != DeviceState.BUSY:
            raise JobRejected("no running job to pause", device=self.name)
        sent = self._host.stop_job()
        await self._wait_drained()
        open_heads = [t for t, is_open in self._valve_states(job.lines, sent).items() if is_open]
        job.valves_closed_for_pause = [self._head(t) for t in open_heads]
        closes = [
            c
            for h in job.valves_closed_for_pause
            for c in _render(h.valve_close or "", tool=h.tool)
        ]
        await self.send("M400", *closes)
        self._set_state(DeviceState.PAUSED)

    async def resume(self) -> None:
        """Reopen the valves the pause closed and go on from the next line, none skipped or repeated."""
        job = self._job
        if job is None or self.state != DeviceState.PAUSED:
            raise JobRejected("no paused job to resume", device=self.name)
        opens = [
            c for h in job.valves_closed_for_pause for c in _render(h.valve_open or "", tool=h.tool)
        ]
        if opens:
            await self.send(*opens)
        job.valves_closed_for_pause = []
        self._host.job_feeding = True
        self._set_state(DeviceState.BUSY)
        self._flush()

    async def cancel(self) -> None:
        """Cancel the job: stop now (see ``_stop``), then lift the nozzle; returns when done."""
        job = self._job
        if job is None:
            raise JobRejected("no job to cancel", device=self.name)
        stopper = self._begin_stop(job, JobOutcome.CANCELLED, None)
        await asyncio.shield(stopper)

    def _begin_stop(
        self, job: _Job, outcome: JobOutcome, error: LabDeviceError | None
    ) -> asyncio.Task[None]:
        if job.outcome is None:
            job.outcome, job.error = outcome, error
        if job.stopper is None:
            job.stopper = asyncio.get_running_loop().create_task(
                self._stop(job), name=f"{self.name}:safe stop"
            )
        self._wake.set()
        return job.stopper

    def _stop_now_commands(self) -> list[str]:
        """Quickstop (M410), every valve closed, every pressure zero."""
        out = ["M410"]
        for head in self.profile.printheads:
            if head.valve_close:
                out += _render(head.valve_close, tool=head.tool)
        for head in self.profile.printheads:
            if head.kind == "pneumatic" and head.set_pressure:
                out += _render(head.set_pressure, tool=head.tool, kpa=0.0, fraction=0.0, pwm=0)
        return out

    async def _stop(self, job: _Job) -> None:
        """Stop first, reconcile after: the stop commands go out now, ahead of everything.

        They are numbered and checksummed like any line (a firmware that enforces
        checksums takes them) and go ahead of everything queued: ``M410`` at once,
        past the window — Marlin's emergency parser acts on it as its bytes arrive and
        drops the planned moves — and the valve and pressure commands as far as the
        firmware's receive buffer has room (at once, or as soon as the quickstop has
        let the firmware read the few lines it held).
        Only then are the lines in flight reconciled and the nozzle lifted. If the
        firmware does not acknowledge the stop, the job has failed, not been cancelled.
        """
        host = self._host
        host.stop_job()
        loop = asyncio.get_running_loop()
        commands = self._stop_now_commands()
        acked: list[asyncio.Future[None]] = [loop.create_future() for _ in commands]
        try:
            self._require_ready()
            self.stop_sent_at = time.monotonic()
            self._write(host.send_urgent(commands, acked))
            self._flush()
            limit = host.timeout() * (MAX_PROBES + 2)
            try:
                async with asyncio.timeout(limit):
                    await asyncio.gather(*acked)
                    await self._wait_drained()
            except TimeoutError:
                raise DeviceTimeoutError(
                    f"the printer did not acknowledge the stop ({', '.join(commands)}) "
                    f"within {limit:.0f} s",
                    device=self.name,
                ) from None
            lift = [
                c
                for cmd in self.profile.safe_stop
                for c in _render(cmd, lift_mm=self.profile.travel_lift_mm)
            ]
            if lift:
                await self.send(*lift)
        except LabDeviceError as exc:
            log.error("%s: safe stop failed: %s", self.name, exc)
            job.outcome = JobOutcome.FAILED
            before = f"{job.error.message}; " if job.error is not None else ""
            job.error = DeviceFault(
                f"{before}safe stop not confirmed by the printer: {exc}", device=self.name
            )
        finally:
            for fut in acked:  # their errors are reported above, once
                if fut.done() and not fut.cancelled():
                    fut.exception()
            self._wake.set()

    async def emergency_stop(self) -> None:
        """``M112`` now, ahead of anything queued; the printer halts until it is reset.

        Numbered and checksummed (so a firmware that enforces checksums takes it too);
        Marlin's emergency parser acts on it as it arrives.
        """
        host = self._host
        if host.next_send > host.highest_sent and not host.halted:
            data = host.send_urgent(["M112"])
        else:  # mid-resend: the emergency parser takes a bare M112 as well
            data = b"M112\n"
        host.halted = True  # nothing more leaves the host
        with contextlib.suppress(DeviceConnectionError):
            self._transport.write_nowait(data)
        self._on_halted("emergency stop (M112) sent by host")

    def request_firmware_restart(self) -> None:
        """After a halt (``M112``, a firmware error): ask the firmware to restart (``M999``).

        Sent bare, as nothing numbered leaves a halted host. The driver must then be closed
        and opened again, so that it hand-shakes anew (line numbers, capabilities); a
        firmware that ignores ``M999`` does not answer that handshake, and needs its reset
        button or power.
        """
        with contextlib.suppress(DeviceConnectionError):
            self._transport.write_nowait(b"M999\n")

    async def resume_from_user_wait(self) -> None:
        """Release an ``M0``/``M1`` wait (``M108``, acted on at once by the emergency parser)."""
        self._write(self._host.send_urgent(["M108"]))
        self.waiting_for_user = False

    def _write(self, data: bytes) -> None:
        if data:
            if self._host.in_flight == 0:
                self._pipe_started = asyncio.get_running_loop().time()
            self._transport.write_nowait(data)


def _parse(line: str) -> Any:
    from ..protocols import parse_line

    return parse_line(line)

"""Sans-IO host side of the Marlin serial protocol: framing, acks, resends, reports.

``MarlinHost`` is fed the bytes the printer sent and returns events; it says which
bytes to send next. It never awaits and never touches a port, so every corner of
the protocol — corrupt lines, lost acks, resend storms, firmware resets — is
tested without I/O.

Exactly-once delivery rests on the firmware: it executes line ``N`` only when its
last line is ``N - 1``, so a duplicate is rejected and a gap is asked for again
(``Resend:``). The host's job is to resend from wherever the firmware asks, never
give up silently, and keep several lines in flight without overrunning the
firmware's command ring (``window_lines``) or receive buffer (``rx_buffer_bytes``).

Line accounting: ``processed`` is the last line whose ``ok`` arrived (counted, or
named by ADVANCED_OK's ``N``); ``received`` the last line the firmware is known to
hold; ``next_send`` the next line number to put on the wire. Lines between
``processed`` and ``next_send`` are in flight.

After a resend the first copies of the rewound lines are still on their way to the
firmware (or in its receive buffer) until it has read them: their bytes stay
counted (``ghost_bytes``) and each line-number error they cause is an echo
(``stale_copies``), until a line first sent after all of them is acknowledged —
the firmware reads in order, so by then it has read every older copy.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import ProtocolError

__all__ = [
    "Busy",
    "Capability",
    "CommandDone",
    "Echo",
    "FirmwareError",
    "FirmwareInfo",
    "FirmwareReset",
    "Halted",
    "LineProcessed",
    "MarlinEvent",
    "MarlinHost",
    "Ok",
    "ResendRequest",
    "TemperatureReport",
    "Unknown",
    "Wait",
    "checksum",
    "frame",
    "parse_line",
    "parse_report",
    "strip_gcode",
]


def checksum(data: bytes) -> int:
    """XOR of every byte, as Marlin computes it over ``N… cmd`` before ``*``."""
    x = int.from_bytes(data, "little")
    width = len(data)
    # Fold the integer onto itself: log2(n) big-int operations instead of n byte operations.
    while width > 1:
        half = (width + 1) // 2
        x = (x & ((1 << (8 * half)) - 1)) ^ (x >> (8 * half))
        width = half
    return x


def frame(n: int, command: str) -> bytes:
    """``N<n> <command>*<checksum>\\n``."""
    body = f"N{n} {command}".encode("ascii", "replace")
    return b"%s*%d\n" % (body, checksum(body))


def strip_gcode(line: str) -> str:
    """A G-code line without its comment and surrounding blanks ('' if nothing is left)."""
    i = line.find(";")
    if i >= 0:
        line = line[:i]
    return line.strip()


# -- events ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ok:
    """An ``ok``; ``line``/``planner_free``/``buffer_free`` come with ADVANCED_OK."""

    line: int | None = None
    planner_free: int | None = None
    buffer_free: int | None = None
    payload: str = ""


@dataclass(frozen=True, slots=True)
class LineProcessed:
    """Host-level: the firmware has processed (acknowledged) every line up to ``line``."""

    line: int


@dataclass(frozen=True, slots=True)
class CommandDone:
    """Host-level: the command submitted with ``tag`` was processed."""

    line: int
    tag: object


@dataclass(frozen=True, slots=True)
class ResendRequest:
    line: int


@dataclass(frozen=True, slots=True)
class FirmwareError:
    message: str
    last_line: int | None = None


@dataclass(frozen=True, slots=True)
class Busy:
    reason: str  # "processing", "paused for user", …


@dataclass(frozen=True, slots=True)
class Wait:
    """The firmware is idle with an empty buffer (``wait``)."""


@dataclass(frozen=True, slots=True)
class TemperatureReport:
    """Actual and target per key: ``T``, ``T0``, ``B``, ``P0`` (pressure, key-value dialects)."""

    values: dict[str, tuple[float, float | None]]


@dataclass(frozen=True, slots=True)
class Capability:
    name: str
    enabled: bool


@dataclass(frozen=True, slots=True)
class FirmwareInfo:
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class FirmwareReset:
    """``start``: the firmware (re)booted and forgot every line number."""


@dataclass(frozen=True, slots=True)
class Halted:
    message: str


@dataclass(frozen=True, slots=True)
class Echo:
    text: str


@dataclass(frozen=True, slots=True)
class Unknown:
    text: str


MarlinEvent = (
    Ok
    | LineProcessed
    | CommandDone
    | ResendRequest
    | FirmwareError
    | Busy
    | Wait
    | TemperatureReport
    | Capability
    | FirmwareInfo
    | FirmwareReset
    | Halted
    | Echo
    | Unknown
)

# -- parsing ---------------------------------------------------------------------

_REPORT_ITEM = re.compile(r"([A-Z][A-Z0-9]*@?):\s*(-?\d+(?:\.\d+)?)(?:\s*/\s*(-?\d+(?:\.\d+)?))?")
_ADV_OK = re.compile(r"^(?:N(\d+)\s*)?(?:P(\d+)\s*)?(?:B(\d+)\s*)?")
_RESEND = re.compile(r"^(?:Resend|rs)\s*:?\s*N?(\d+)", re.IGNORECASE)
_LAST_LINE = re.compile(r"Last Line:\s*(\d+)")
_INFO_FIELD = re.compile(r"([A-Z_]{3,}):(.*?)(?=\s+[A-Z_]{3,}:|$)")


def parse_report(text: str) -> dict[str, tuple[float, float | None]]:
    """``T:22.0 /0.0 B:20.0 /20.0 @:0`` → ``{"T": (22.0, 0.0), "B": (20.0, 20.0), "@": (0.0, None)}``."""
    out: dict[str, tuple[float, float | None]] = {}
    for key, actual, target in _REPORT_ITEM.findall(text):
        out[key] = (float(actual), float(target) if target else None)
    return out


def parse_line(line: str) -> MarlinEvent:
    """One line from the printer as an event."""
    if line.startswith("ok"):
        rest = line[2:].strip()
        if not rest:
            return Ok()
        m = _ADV_OK.match(rest)
        n = p = b = None
        if m and m.end():
            n = int(m.group(1)) if m.group(1) else None
            p = int(m.group(2)) if m.group(2) else None
            b = int(m.group(3)) if m.group(3) else None
            rest = rest[m.end() :]
        return Ok(n, p, b, rest)
    m = _RESEND.match(line)
    if m:
        return ResendRequest(int(m.group(1)))
    if line.startswith(("Error:", "!!")):
        msg = line[6:] if line.startswith("Error:") else line[2:].strip()
        low = msg.lower()
        if "halted" in low or "kill" in low:
            return Halted(msg)
        ll = _LAST_LINE.search(msg)
        return FirmwareError(msg, int(ll.group(1)) if ll else None)
    if line.startswith("echo:busy:"):
        return Busy(line[10:].strip())
    if line == "wait":
        return Wait()
    if line == "start":
        return FirmwareReset()
    if line.startswith("Cap:"):
        name, _, value = line[4:].rpartition(":")
        return Capability(name, value.strip() == "1")
    if line.startswith("FIRMWARE_NAME:"):
        return FirmwareInfo({k: v.strip() for k, v in _INFO_FIELD.findall(line)})
    if line.startswith(("T:", "T0:", "B:")) or line.startswith(("P0:",)):
        return TemperatureReport(parse_report(line))
    if line.startswith("echo:"):
        return Echo(line[5:])
    return Unknown(line)


# -- the host state machine ------------------------------------------------------


@dataclass
class _Pending:
    command: str
    tag: object = None


@dataclass
class MarlinHost:
    """Host side of one Marlin serial link.

    Commands come from two queues: ``submit`` (priority: user commands, telemetry
    polls, safe-stop sequences) and a job (``start_job``), taken lazily so that a
    priority command slips in between job lines and a paused job stops being fed.
    """

    window_lines: int = 4
    rx_buffer_bytes: int = 128
    max_resends_per_line: int = 20
    long_timeouts_s: dict[str, float] = field(default_factory=dict)
    ack_timeout_s: float = 10.0
    resend_timeout_s: float = 0.05
    """Silence after a swallowed echo before the one line in flight is probed once: Marlin
    flushes its receive buffer on every error, so the echo may have taken the resent line."""

    def __post_init__(self) -> None:
        self._rx = b""
        self.processed = 0
        self.received = 0
        self.next_send = 1
        self._sent: dict[int, bytes] = {}
        self._tags: dict[int, object] = {}
        self._timeouts: dict[int, float] = {}
        self._inflight_bytes = 0
        self._priority: deque[_Pending] = deque()
        self._job: Sequence[str] = ()
        self._job_cursor = 0
        self.job_feeding = False
        self._job_line_numbers: dict[int, int] = {}  # line number -> index in job
        self.job_processed = 0
        self._expect_resend_ok = False
        self._resend_counts: dict[int, int] = {}
        self._probing = False
        self._extra_oks: deque[int] = deque()
        self._checksum_error = False  # the error just before a Resend was a corrupt line
        self.ghost_bytes = 0
        self.stale_copies = 0
        self._ghost_until = 0  # both are cleared once this line is acknowledged
        self._quick_probe = False  # an echo was swallowed: probe early, once
        self._probe_line = 0
        self._numbered_oks = False  # the firmware names lines in its oks (ADVANCED_OK)
        self.highest_sent = 0
        self.firmware_bufsize = 0  # learnt from ADVANCED_OK's B; 0: not reported
        self.resends = 0
        self.echoes = 0
        self.halted = False

    # -- queues --------------------------------------------------------------
    def reset_numbering(self) -> None:
        """After connect or a firmware reset: forget every line; the next is ``N1`` after ``M110 N0``."""
        self.processed = self.received = 0
        self.next_send = 1
        self._sent.clear()
        self._tags.clear()
        self._timeouts.clear()
        self._inflight_bytes = 0
        self._job_line_numbers.clear()
        self._expect_resend_ok = False
        self._resend_counts.clear()
        self._probing = False
        self._extra_oks.clear()
        self._checksum_error = False
        self.ghost_bytes = self.stale_copies = self._ghost_until = 0
        self._quick_probe = False
        self.highest_sent = 0
        self.halted = False

    def submit(self, command: str, tag: object = None) -> None:
        """Queue a command ahead of job lines; ``tag`` comes back with its ``LineProcessed``."""
        self._priority.append(_Pending(command, tag))

    def start_job(self, lines: Sequence[str]) -> None:
        """Stream ``lines`` (already stripped, no blanks) after any priority command."""
        self._job = lines
        self._job_cursor = 0
        self.job_processed = 0
        self._job_line_numbers.clear()
        self.job_feeding = True

    def stop_job(self) -> int:
        """Take no more job lines; returns the index of the first job line never sent."""
        self.job_feeding = False
        return self._job_cursor

    @property
    def job_total(self) -> int:
        return len(self._job)

    @property
    def job_sent(self) -> int:
        return self._job_cursor

    @property
    def window(self) -> int:
        """Lines allowed in flight: the configured window, or less if the firmware's ring is smaller."""
        if self.firmware_bufsize:
            return min(self.window_lines, self.firmware_bufsize)
        return self.window_lines

    @property
    def in_flight(self) -> int:
        return self.next_send - 1 - self.processed

    @property
    def idle(self) -> bool:
        """Nothing in flight and nothing queued (a stopped job counts as nothing queued)."""
        return self.in_flight == 0 and not self._priority and not self._job_pending

    @property
    def _job_pending(self) -> bool:
        return self.job_feeding and self._job_cursor < len(self._job)

    def abandon_commands(self) -> list[object]:
        """Drop queued priority commands; return their tags and those of lines in flight.

        For a link that is lost or a printer that halted: whoever waits on them must
        be told they will never complete.
        """
        tags = [self._tags[n] for n in sorted(self._tags) if n > self.processed]
        tags += [p.tag for p in self._priority if p.tag is not None]
        self._priority.clear()
        self._tags.clear()
        return tags

    def tag_of(self, line: int) -> object:
        return self._tags.get(line)

    def timeout(self) -> float:
        """How long silence may last with the current lines in flight before a probe."""
        if self._quick_probe and self.in_flight <= 1 and not self._timeouts:
            return min(self.resend_timeout_s, self.ack_timeout_s)
        if not self._timeouts:
            return self.ack_timeout_s
        return max(self.ack_timeout_s, *self._timeouts.values())

    # -- output --------------------------------------------------------------
    def _number(self, command: str, tag: object) -> bytes:
        n = self.next_send
        data = frame(n, command)
        self._sent[n] = data
        if tag is not None:
            self._tags[n] = tag
        word = command.split(None, 1)[0].upper() if command else ""
        t = self.long_timeouts_s.get(word)
        if t is not None:
            self._timeouts[n] = t
        return data

    def data_to_send(self) -> bytes:
        """Bytes to write now: as many lines as the window and the receive buffer allow."""
        if self.halted:
            return b""
        out: list[bytes] = []
        budget = self.rx_buffer_bytes - self._inflight_bytes - self.ghost_bytes
        window = self.window
        while self.next_send - 1 - self.processed < window:
            n = self.next_send
            data = self._sent.get(n)
            if data is None:
                if self._priority:
                    p = self._priority[0]
                    data = self._number(p.command, p.tag)
                    fresh = "priority"
                elif self._job_pending:
                    data = self._number(self._job[self._job_cursor], None)
                    fresh = "job"
                else:
                    break
            else:
                fresh = ""
            # Never overrun the firmware's receive buffer, but always allow one line
            # (after a resend, Marlin has flushed its buffer: the ghosts are gone or
            # arriving, and are read at once since its command ring is not full).
            if len(data) > budget and self.in_flight > 0:
                if fresh:
                    del self._sent[n]
                    self._tags.pop(n, None)
                    self._timeouts.pop(n, None)
                break
            if fresh == "priority":
                self._priority.popleft()
            elif fresh == "job":
                self._job_line_numbers[n] = self._job_cursor
                self._job_cursor += 1
            out.append(data)
            budget -= len(data)
            self._inflight_bytes += len(data)
            self.next_send = n + 1
        if self.next_send - 1 > self.highest_sent:
            self.highest_sent = self.next_send - 1
        return b"".join(out)

    def send_urgent(
        self, commands: Sequence[str], tags: Sequence[object] = (), *, forced: int = 1
    ) -> bytes:
        """Number and frame ``commands`` to be written now, ahead of everything queued.

        For stop sequences: Marlin's emergency parser acts on ``M410``/``M112``/``M108``
        as their bytes arrive, numbered or not, even when its receive buffer is full;
        a numbered, checksummed line also passes a firmware that refuses unnumbered
        ones, and is then acknowledged in order like any line. The first ``forced``
        commands go out past the window and the receive budget; the others as far as
        the budget allows, the rest first in the queue (so the buffer is not overrun).
        While a resend is in progress all go first in the queue, right after the
        resent lines.
        """
        tags = list(tags) + [None] * (len(commands) - len(tags))
        if self.halted:
            return b""
        pending = list(zip(commands, tags, strict=True))
        if self.next_send <= self.highest_sent:
            for command, tag in reversed(pending):
                self._priority.appendleft(_Pending(command, tag))
            return self.data_to_send()
        out: list[bytes] = []
        budget = self.rx_buffer_bytes - self._inflight_bytes - self.ghost_bytes
        while pending:
            command, tag = pending[0]
            if len(out) >= forced and len(frame(self.next_send, command)) > budget:
                break
            pending.pop(0)
            data = self._number(command, tag)
            out.append(data)
            budget -= len(data)
            self._inflight_bytes += len(data)
            self.next_send += 1
        for command, tag in reversed(pending):
            self._priority.appendleft(_Pending(command, tag))
        self.highest_sent = self.next_send - 1
        return b"".join(out)

    def expect_unnumbered_ok(self) -> None:
        """An unnumbered command (``M108``, ``M410``) was written out of band.

        Marlin still queues it and answers ``ok`` once the lines sent before it are
        processed; that ``ok`` must not be counted for a numbered line.
        """
        self._extra_oks.append(self.next_send - 1)

    def probe(self) -> None:
        """Silence for too long: resend the oldest unacknowledged line.

        If the firmware has it, it answers with a line-number error naming its last
        line, which resynchronises our counts after lost ``ok``s; if it never got it,
        it executes it now. Either way nothing runs twice.
        """
        self._quick_probe = False
        if self.in_flight == 0:
            return
        self._probing = True
        self._probe_line = self.processed + 1
        self._rewind(self._probe_line, refused=False)

    def _rewind(self, n: int, *, refused: bool = True) -> None:
        """Send again from ``n``. The copies already sent stay counted until surely read.

        ``refused``: the firmware asked for ``n``, so it read (and refused) or lost its
        only copy; the resent copy is the one it will take, and its ``ok`` proves every
        older copy read. Otherwise (a probe, or copies of ``n`` already sent twice) only
        the ``ok`` of a line first sent after all of them proves it.
        """
        first_round = self.ghost_bytes == 0
        for k in range(n, self.next_send):
            data = self._sent.get(k)
            if data is not None:
                self._inflight_bytes -= len(data)
                self.ghost_bytes += len(data)
        until = n if refused and first_round else self.highest_sent + 1
        self._ghost_until = max(self._ghost_until, until)
        self.next_send = n

    # -- input ---------------------------------------------------------------
    def receive_data(self, data: bytes) -> list[MarlinEvent]:
        """Feed bytes from the printer; returns the events they complete."""
        buf = self._rx + data
        *lines, self._rx = buf.split(b"\n")
        events: list[MarlinEvent] = []
        for raw in lines:
            text = raw.decode("ascii", "replace").strip()
            if not text:
                continue
            if text == "ok":  # the hot path while streaming
                self._checksum_error = False
                self._on_ok(None, events)
                events.append(Ok())
                continue
            ev = parse_line(text)
            if isinstance(ev, Ok):
                if ev.buffer_free is not None and ev.buffer_free + 1 > self.firmware_bufsize:
                    # B counts free slots of the command ring besides the command being
                    # run: its largest value tells the ring's size (BUFSIZE).
                    self.firmware_bufsize = ev.buffer_free + 1
                if ev.line is not None:
                    self._numbered_oks = True
                self._on_ok(ev.line, events)
                if ev.payload:
                    report = parse_report(ev.payload)
                    if report:
                        events.append(ev)
                        events.append(TemperatureReport(report))
                        continue
            elif isinstance(ev, ResendRequest):
                self._on_resend(ev.line, events)
            elif isinstance(ev, Halted):
                self.halted = True
            elif isinstance(ev, FirmwareReset):
                self.halted = False
            if isinstance(ev, FirmwareError):
                self._checksum_error = "checksum" in ev.message.lower()
            elif not isinstance(ev, ResendRequest):
                self._checksum_error = False  # it qualifies only the Resend right after it
            events.append(ev)
        return events

    def _on_ok(self, line: int | None, events: list[MarlinEvent]) -> None:
        if self._expect_resend_ok:
            # The ok that follows a Resend belongs to the error, not to a line.
            self._expect_resend_ok = False
            if line is not None:
                self.received = max(self.received, min(line, self.next_send - 1))
            return
        self._probing = False
        if line is not None:
            target = min(line, self.highest_sent)
        else:
            if self._extra_oks and self.processed >= self._extra_oks[0]:
                self._extra_oks.popleft()
                return
            target = min(self.processed + 1, self.highest_sent)
        if target > self.processed:
            self._advance(target, events)

    def _advance(self, target: int, events: list[MarlinEvent]) -> None:
        # A line rewound for a probe may turn out to have been received after all:
        # its ok moves the send pointer past it, so it is not sent again.
        for k in range(self.processed + 1, target + 1):
            data = self._sent.pop(k, None)
            if data is not None and k < self.next_send:
                self._inflight_bytes -= len(data)
            self._timeouts.pop(k, None)
            if self._job_line_numbers.pop(k, None) is not None:
                self.job_processed += 1
            self._resend_counts.pop(k, None)
            if self._tags:
                tag = self._tags.pop(k, None)
                if tag is not None:
                    events.append(CommandDone(k, tag))
        self.processed = target
        self.received = max(self.received, target)
        self._quick_probe = False
        if self._ghost_until and target >= self._ghost_until:
            # A line sent after every ghost was read: so were they.
            self.ghost_bytes = self.stale_copies = self._ghost_until = 0
        if self.next_send <= target:
            self.next_send = target + 1
        events.append(LineProcessed(target))

    def _on_resend(self, n: int, events: list[MarlinEvent]) -> None:
        self._expect_resend_ok = True
        self.resends += 1
        corrupt = self._checksum_error
        self._checksum_error = False
        if n <= self.processed:
            # Stale: the firmware's last line only grows (a reset announces itself
            # with `start`), and it has since processed beyond n.
            self._probing = False
            return
        if n > self.highest_sent + 1:
            raise ProtocolError(
                f"printer asked for line {n}, but only lines up to {self.highest_sent} were sent"
            )
        if self._probing:
            # Answer to a probe: the firmware holds every line before n and, being
            # silent until now, has processed them.
            self._probing = False
            self.received = max(self.received, n - 1)
            if n - 1 > self.processed:
                self._advance(n - 1, events)
            # Copies the probe sent after the one answered are refused in turn.
            self.stale_copies += max(0, self.next_send - 1 - self._probe_line)
            if n < self.next_send:
                self._rewind(n, refused=False)
            return
        if self.stale_copies > 0 and not corrupt:
            # An echo: a copy sent before the last rewind reached the firmware out of
            # order. Whatever line it names, the resent lines are already on the way.
            self.stale_copies -= 1
            self.echoes += 1
            # Only with numbered oks may an early probe's answer be trusted about the
            # line in flight (a plain ok arriving late would be counted for the next).
            self._quick_probe = self._numbered_oks
            return
        count = self._resend_counts.get(n, 0) + 1
        self._resend_counts[n] = count
        if count > self.max_resends_per_line:
            raise ProtocolError(
                f"printer asked for line {n} {count} times; the link is too corrupt to go on"
            )
        self.received = max(self.received, n - 1)
        # Copies after the rejected one will each be refused too (or were flushed).
        self.stale_copies += max(0, self.next_send - n - 1)
        if n < self.next_send:
            self._rewind(n)

"""Marlin 2.x firmware emulation without I/O: bytes in, bytes out, the time passed in by the caller.

``MarlinFirmware.receive(data, now)`` is the UART receiving bytes,
``tick(now)`` lets time pass, ``take_output(now)`` collects what the firmware
sent and ``next_wakeup()`` says when something will next happen by itself. The
serving layer (``_printer_server``) only moves bytes and keeps the clock.
"""

from __future__ import annotations

import math
import random
import re
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Final

from ..profiles import GcodeProfile
from ._dialect import Action, build_actions, deduce_dialect, match_action
from ._printer_config import SimPrinterConfig

__all__ = ["MarlinFirmware", "PrinterState", "PrintheadState", "UvExposure", "checksum"]

# Marlin's language.h strings, so hosts written against real firmware recognise them.
STR_OK: Final = "ok"
STR_RESEND: Final = "Resend: "
STR_ERR_LINE_NO: Final = "Line Number is not Last Line Number+1, Last Line: "
STR_ERR_CHECKSUM_MISMATCH: Final = "checksum mismatch, Last Line: "
STR_ERR_NO_CHECKSUM: Final = "No Checksum with line number, Last Line: "
STR_ERR_NO_LINENUMBER_WITH_CHECKSUM: Final = "No Line Number with checksum, Last Line: "
STR_ERR_KILLED: Final = "Printer halted. kill() called!"
STR_BUSY_PROCESSING: Final = "busy: processing"
STR_BUSY_PAUSED_FOR_USER: Final = "busy: paused for user"
STR_UNKNOWN_COMMAND: Final = 'Unknown command: "'

FIRMWARE_VERSION: Final = "2.1.2.1"
AMBIENT_C: Final = 22.0
BED_IDLE_C: Final = 20.0
HOTEND_TAU_S: Final = 20.0
BED_TAU_S: Final = 40.0
REGULATOR_TAU_S: Final = 0.3
TEMP_WINDOW_C: Final = 1.0
DEFAULT_FEED_MM_MIN: Final = 1500.0
HOMING_FEED_MM_S: Final = 50.0
PROBING_S: Final = 20.0
TEMP_REPORT_WHILE_WAITING_S: Final = 1.0

_LINE_NO = re.compile(rb"N\s*([-+]?\d*)")
_LEADING_INT = re.compile(rb"\s*([-+]?\d+)")
_WORD = re.compile(r"\s*([A-Za-z])\s*(-?\d+)(?:\.\d+)?")
_PARAM = re.compile(r"([A-Za-z])\s*([-+]?(?:\d+\.?\d*|\.\d+))?")
_EMERGENCY = re.compile(rb"^\s*(?:N\s*-?\d*\s*)?(M108|M112|M410)(?!\d)")
_EMERGENCY_WORDS = (b"M108", b"M112", b"M410")
#: a restart request after a halt; this firmware restarts on it (as Marlin does on M999 after
#: ``stop()``; a real board halted by ``kill()`` needs its reset button or a DTR reset)
_RESTART = re.compile(rb"^\s*(?:N\s*-?\d*\s*)?M999(?!\d)")


def checksum(data: bytes) -> int:
    """Marlin's line checksum: XOR of every byte before the ``*``."""
    x = 0
    for c in data:
        x ^= c
    return x


@dataclass(frozen=True)
class PrintheadState:
    """One printhead as the simulator sees it."""

    tool: int
    valve_open: bool
    pressure_kpa: float
    pressure_target_kpa: float
    temperature_c: float
    temperature_target_c: float


@dataclass(frozen=True)
class UvExposure:
    """One finished UV exposure (photocuring)."""

    module: int
    seconds: float
    intensity_percent: float


@dataclass(frozen=True)
class PrinterState:
    """A snapshot of the simulated printer, for tests and the CLI."""

    position: tuple[float, float, float, float]
    """Planned position X, Y, Z, E in mm (what M114 reports)."""
    active_tool: int
    printheads: dict[int, PrintheadState]
    bed_temperature_c: float | None
    bed_target_c: float | None
    uv_on: bool
    uv_intensity_percent: float
    uv_exposures: tuple[UvExposure, ...]
    pins: dict[int, int]
    fan_pwm: int
    homed: bool
    halted: bool
    paused_for_user: bool
    busy: bool
    last_line: int
    planner_blocks: int
    lost_bytes: int
    resets: int

    @property
    def valves(self) -> dict[int, bool]:
        """Valve open, by printhead tool."""
        return {t: h.valve_open for t, h in self.printheads.items()}

    @property
    def pressures_kpa(self) -> dict[int, float]:
        return {t: h.pressure_kpa for t, h in self.printheads.items()}

    @property
    def pressure_setpoints_kpa(self) -> dict[int, float]:
        return {t: h.pressure_target_kpa for t, h in self.printheads.items()}

    @property
    def temperatures_c(self) -> dict[int, float]:
        return {t: h.temperature_c for t, h in self.printheads.items()}

    @property
    def temperature_setpoints_c(self) -> dict[int, float]:
        return {t: h.temperature_target_c for t, h in self.printheads.items()}


class _FirstOrder:
    """A heater or pressure regulator: moves toward its target with time constant ``tau_s``."""

    __slots__ = ("idle", "target", "tau_s", "value")

    def __init__(self, value: float, tau_s: float, idle: float) -> None:
        self.value = value
        self.target = 0.0
        self.tau_s = tau_s
        self.idle = idle  # where it drifts when switched off (target 0)

    @property
    def goal(self) -> float:
        return self.target if self.target > 0 else self.idle

    def advance(self, dt_s: float) -> None:
        if dt_s == math.inf:
            self.value = self.goal
        elif dt_s > 0:
            self.value = self.goal + (self.value - self.goal) * math.exp(-dt_s / self.tau_s)

    def time_to_reach(self, window: float) -> float:
        """Firmware seconds until within ``window`` of the target."""
        gap = abs(self.value - self.goal)
        return 0.0 if gap <= window else self.tau_s * math.log(gap / window)

    def power(self) -> int:
        return max(0, min(127, round((self.goal - self.value) * 8))) if self.target > 0 else 0


class _Head:
    __slots__ = ("heater", "regulator", "tool", "valve_open")

    def __init__(self, tool: int) -> None:
        self.tool = tool
        self.valve_open = False
        self.heater = _FirstOrder(AMBIENT_C, HOTEND_TAU_S, AMBIENT_C)
        self.regulator = _FirstOrder(0.0, REGULATOR_TAU_S, 0.0)


class _Wait:
    """A command that holds the command queue until something has happened."""

    busy_message = STR_BUSY_PROCESSING
    sync_planner = True  # Marlin's planner.synchronize() before the wait proper

    def ready(self, fw: MarlinFirmware, now: float) -> bool:
        raise NotImplementedError

    def wakeup(self, fw: MarlinFirmware) -> float | None:
        return None

    def finish(self, fw: MarlinFirmware, now: float) -> None:
        """Effects at the end of the wait (position after homing, UV off...)."""


class _Dwell(_Wait):
    """Wait for the planner to empty, then for ``duration`` wall seconds."""

    def __init__(self, duration_wall_s: float, sync_planner: bool = True) -> None:
        self.duration = duration_wall_s
        self.sync_planner = sync_planner
        self.until: float | None = None

    def ready(self, fw: MarlinFirmware, now: float) -> bool:
        if self.until is None:
            if self.sync_planner and fw._planner:
                return False
            self.until = now + self.duration
        return now >= self.until

    def wakeup(self, fw: MarlinFirmware) -> float | None:
        return self.until


class _Homing(_Dwell):
    def finish(self, fw: MarlinFirmware, now: float) -> None:
        fw._pos[0:3] = [0.0, 0.0, 0.0]
        fw._homed = True


class _Exposure(_Dwell):
    def __init__(self, duration_wall_s: float, module: int, seconds: float, percent: float) -> None:
        super().__init__(duration_wall_s)
        self.exposure = UvExposure(module, seconds, percent)

    def ready(self, fw: MarlinFirmware, now: float) -> bool:
        fw._uv_percent = self.exposure.intensity_percent
        return super().ready(fw, now)

    def finish(self, fw: MarlinFirmware, now: float) -> None:
        fw._uv_percent = 0.0
        fw._exposures.append(self.exposure)


class _Heat(_Wait):
    """M109/M190: wait until a heater is within the window of its target."""

    sync_planner = False

    def __init__(self, heater: _FirstOrder) -> None:
        self.heater = heater

    def ready(self, fw: MarlinFirmware, now: float) -> bool:
        if fw._scale == 0:
            self.heater.advance(math.inf)
        return abs(self.heater.value - self.heater.goal) <= TEMP_WINDOW_C + 1e-9

    def wakeup(self, fw: MarlinFirmware) -> float | None:
        return fw._now + fw._wall(self.heater.time_to_reach(TEMP_WINDOW_C)) + 1e-6


class _UserPause(_Wait):
    """M0/M1: wait for M108 (or the optional timeout)."""

    busy_message = STR_BUSY_PAUSED_FOR_USER
    sync_planner = True

    def __init__(self, timeout_wall_s: float | None) -> None:
        self.timeout = timeout_wall_s
        self.until: float | None = None

    def ready(self, fw: MarlinFirmware, now: float) -> bool:
        if fw._planner:
            return False
        if self.timeout is not None and self.until is None:
            self.until = now + self.timeout
        return not fw._wait_for_user or (self.until is not None and now >= self.until)

    def wakeup(self, fw: MarlinFirmware) -> float | None:
        return self.until


_Handler = Callable[["MarlinFirmware", dict[str, float], str, float], object]
_NO_OK: Final = object()  # the handler sent its own `ok` line (M105)
_PLANNER_FULL: Final = object()  # a move found no free planner block; retry later


class MarlinFirmware:
    """The firmware of a Marlin-style bioprinter, as a state machine over bytes and time."""

    def __init__(
        self, profile: GcodeProfile, config: SimPrinterConfig | None = None, *, now: float = 0.0
    ) -> None:
        self.profile = profile
        self.config = config = config or SimPrinterConfig(profile=profile.name)
        self.dialect = config.dialect or deduce_dialect(profile)
        self._bufsize = config.bufsize or profile.serial.window_lines
        self._rx_size = config.rx_buffer_bytes or profile.serial.rx_buffer_bytes
        self._planner_size = config.block_buffer_size - 1  # Marlin keeps one block free
        self._scale = config.time_scale
        self._ok_delay = config.ok_delay_s
        self._advanced_ok = config.advanced_ok
        self._faults = config.faults
        self._rng = random.Random(config.seed)
        self._actions = build_actions(profile)
        self._heated = [h.tool for h in profile.printheads if h.set_temperature is not None]
        self.executed: list[str] = []
        """Every command executed, once, in order, without line number or checksum."""
        self.emergency: list[tuple[float, str]] = []
        """(time, word) of every M108/M112/M410 the emergency parser acted on, as it arrived."""
        self.lost_bytes = 0
        self.link_dropped = False
        """Set when the disconnect fault fires; the serving layer then closes the link."""
        self.resets = 0
        self._disconnect_fired = False
        self._reset_fired = False
        self._out = bytearray()
        self._delayed: deque[tuple[float, bytes]] = deque()
        self._ep_tail = b""
        self._now = now
        # Firmware state; _power_on gives every field its boot value.
        self.halted = False
        self._rx = bytearray()
        self._discard_partial = False
        self._ring: deque[tuple[int | None, str]] = deque()
        self._planner: deque[float] = deque()  # wall time at which each planned block ends
        self._wait: _Wait | None = None
        self._stall_until: float | None = None
        self._power_on(now, banner=True)

    # ---------------------------------------------------------------- public API

    def receive(self, data: bytes, now: float) -> None:
        """Bytes arrive at the UART; they are parsed as far as the firmware can take them now."""
        self._sync(now)
        self._emergency_parse(data)
        if self.halted or not data:
            return
        if b"\r" in data:
            data = data.replace(b"\r", b"\n")
        if self._discard_partial:
            nl = data.find(b"\n")
            if nl < 0:
                return
            data = data[nl + 1 :]
            self._discard_partial = False
        self._rx += data
        self._run(now)
        if len(self._rx) > self._rx_size and len(self._ring) >= self._bufsize:
            # The firmware stopped reading (command ring full): the hardware FIFO
            # fills and every byte after it is lost, as on a real UART.
            self.lost_bytes += len(self._rx) - self._rx_size
            del self._rx[self._rx_size :]

    def tick(self, now: float) -> None:
        """Let time pass: moves finish, heaters settle, waits end, reports fall due."""
        self._sync(now)
        if self.halted:
            return
        self._run(now)
        self._periodic(now)

    def take_output(self, now: float) -> bytes:
        """Everything the firmware has sent by ``now``."""
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            self._out += delayed.popleft()[1]
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_wakeup(self) -> float | None:
        """When ``tick`` should next be called (None: nothing happens until bytes arrive)."""
        times: list[float] = []
        if self._delayed:
            times.append(self._delayed[0][0])
        if self.halted:
            return min(times) if times else None
        if self._planner:
            times.append(self._planner[0])
        if self._wait is not None:
            t = self._wait.wakeup(self)
            if t is not None:
                times.append(t)
            times.append(self._next_busy)
        if self._stall_until is not None:
            times.append(self._stall_until)
            times.append(self._next_busy)
        if self._autoreport_wall is not None:
            times.append(self._next_autoreport)
        if self._wait is not None and isinstance(self._wait, _Heat):
            times.append(self._next_temp_report)
        return min(times) if times else None

    def reset(self, now: float) -> None:
        """A firmware reset (reset button, watchdog, DTR): everything in flight is forgotten."""
        self._sync(now)
        self.resets += 1
        self._power_on(now, banner=True)

    def set_regulator(self, tool: int, kpa: float) -> None:
        """Turn a manual pressure regulator's knob (printers with no pressure command)."""
        self._heads[tool].regulator.target = kpa

    def link_closed(self) -> None:
        """The link went down: bytes and commands in flight with it are gone."""
        self.link_dropped = False
        self._rx.clear()
        self._ring.clear()
        self._wait = None
        self._stall_until = None
        self._discard_partial = False
        self._ep_tail = b""

    def state(self, now: float | None = None) -> PrinterState:
        """A snapshot of the printer (physics advanced to ``now`` if given)."""
        self._sync(self._now if now is None else now)
        heads = {
            t: PrintheadState(
                t,
                h.valve_open,
                h.regulator.value,
                h.regulator.target,
                h.heater.value,
                h.heater.target,
            )
            for t, h in self._heads.items()
        }
        has_bed = self.profile.bed is not None
        return PrinterState(
            position=(self._pos[0], self._pos[1], self._pos[2], self._pos[3]),
            active_tool=self._tool,
            printheads=heads,
            bed_temperature_c=self._bed.value if has_bed else None,
            bed_target_c=self._bed.target if has_bed else None,
            uv_on=self._uv_percent > 0,
            uv_intensity_percent=self._uv_percent,
            uv_exposures=tuple(self._exposures),
            pins=dict(self._pins),
            fan_pwm=self._fan,
            homed=self._homed,
            halted=self.halted,
            paused_for_user=isinstance(self._wait, _UserPause),
            busy=self._wait is not None or self._stall_until is not None,
            last_line=self._last_n,
            planner_blocks=len(self._planner),
            lost_bytes=self.lost_bytes,
            resets=self.resets,
        )

    # ---------------------------------------------------------------- power, time

    def _power_on(self, now: float, *, banner: bool) -> None:
        self.halted = False
        self._rx = bytearray()
        self._discard_partial = False
        self._ring = deque()
        self._planner = deque()
        self._planner_end = now
        self._wait = None
        self._stall_until = None
        self._stalled_head = False
        self._wait_for_user = False
        self._next_busy = math.inf
        self._next_temp_report = math.inf
        self._autoreport_wall: float | None = None
        self._next_autoreport = math.inf
        self._last_n = 0
        self._pos = [0.0, 0.0, 0.0, 0.0]
        self._relative = False
        self._relative_e = False
        self._feed_mm_s = DEFAULT_FEED_MM_MIN / 60.0
        self._homed = False
        self._tool = self.profile.printheads[0].tool
        self._heads = {h.tool: _Head(h.tool) for h in self.profile.printheads}
        self._bed = _FirstOrder(BED_IDLE_C, BED_TAU_S, AMBIENT_C)
        self._bed.target = BED_IDLE_C if self.profile.bed is not None else 0.0
        self._uv_percent = 0.0
        self._uv_module = self.profile.uv.module if self.profile.uv is not None else 0
        self._exposures: list[UvExposure] = []
        self._pins: dict[int, int] = {}
        self._fan = 0
        if banner:
            name = f"{self.profile.vendor} {self.profile.model}".strip() or self.profile.name
            self._send(
                "start\n"
                f"echo:Marlin {FIRMWARE_VERSION} (labdevices simulator)\n"
                f"echo: Last Updated: 2023-06-11 | Author: (labdevices, {name})\n"
                "echo:Hardcoded Default Settings Loaded\n",
                now,
            )

    def _wall(self, firmware_s: float) -> float:
        return firmware_s * self._scale

    def _sync(self, now: float) -> None:
        """Advance physics and retire finished planner blocks up to ``now``."""
        dt = now - self._now
        if dt < 0:
            return
        self._now = now
        fw_dt = math.inf if self._scale == 0 else dt / self._scale
        if self._scale == 0 or dt > 0:
            self._bed.advance(fw_dt)
            for h in self._heads.values():
                h.heater.advance(fw_dt)
                h.regulator.advance(fw_dt)
        planner = self._planner
        while planner and planner[0] <= now:
            planner.popleft()

    # ---------------------------------------------------------------- output

    def _send(self, text: str, now: float) -> None:
        data = text.encode("latin-1")
        if self._ok_delay:
            self._delayed.append((now + self._ok_delay, data))
        else:
            self._out += data

    def _ok(self, n: int | None, now: float) -> None:
        if self._faults.ack_loss_rate and self._rng.random() < self._faults.ack_loss_rate:
            return
        if self._advanced_ok:
            free_blocks = self._planner_size - len(self._planner)
            free_ring = self._bufsize - len(self._ring)
            if n is None:
                self._send(f"ok P{free_blocks} B{free_ring}\n", now)
            else:
                self._send(f"ok N{n} P{free_blocks} B{free_ring}\n", now)
        else:
            self._send("ok\n", now)

    # ---------------------------------------------------------------- receiving

    def _emergency_parse(self, data: bytes) -> None:
        """EMERGENCY_PARSER: M108/M112/M410 act when their line ends, ahead of any queue."""
        text = self._ep_tail + data
        end = text.rfind(b"\n")
        if end < 0:
            end = text.rfind(b"\r")
        self._ep_tail = text[end + 1 :][-96:]  # Marlin's MAX_CMD_SIZE
        if end < 0:
            return
        complete = text[: end + 1]
        if self.halted:
            lines = complete.replace(b"\r", b"\n").split(b"\n")
            if any(_RESTART.match(line) for line in lines):
                self.emergency.append((self._now, "M999"))
                self.reset(self._now)
            return
        if not any(w in complete for w in _EMERGENCY_WORDS):
            return
        for line in complete.replace(b"\r", b"\n").split(b"\n"):
            m = _EMERGENCY.match(line)
            if m is None:
                continue
            word = m.group(1)
            self.emergency.append((self._now, word.decode()))
            if word == b"M112":
                self._kill()
                return
            if word == b"M108":
                self._wait_for_user = False
                if isinstance(self._wait, _Heat):
                    self._wait = _Dwell(0.0, sync_planner=False)  # stop waiting for heat-up
            else:  # M410 quickstop: drop planned moves
                self._planner.clear()
                self._planner_end = self._now

    def _kill(self) -> None:
        self._send(f"Error:{STR_ERR_KILLED}\n", self._now)
        self.halted = True
        self._rx.clear()
        self._ring.clear()
        self._planner.clear()
        self._wait = None
        self._stall_until = None
        self._bed.target = 0.0
        for h in self._heads.values():
            h.heater.target = 0.0
            h.valve_open = False
        self._uv_percent = 0.0

    def _line_error(self, message: str, now: float) -> None:
        """Marlin's gcode_line_error: report, drain the receive buffer, ask for a resend."""
        self._send(f"Error:{message}{self._last_n}\n", now)
        rx = self._rx
        drained = bytes(rx[: self._rx_size])
        del rx[: self._rx_size]
        if drained and not drained.endswith(b"\n"):
            # The drain cut a line: its remainder, when it arrives, is no command.
            nl = rx.find(b"\n")
            if nl >= 0:
                del rx[: nl + 1]
            else:
                rx.clear()
                self._discard_partial = True
        self._send(f"{STR_RESEND}{self._last_n + 1}\n", now)
        self._ok(self._last_n, now)  # flush_and_request_resend ends with ok_to_send()

    def _plain_ok(self, now: float) -> None:
        if self._faults.ack_loss_rate and self._rng.random() < self._faults.ack_loss_rate:
            return
        self._send("ok\n", now)

    def _pull_line(self, now: float) -> bool:
        """Take one complete line from the receive buffer into the command ring."""
        rx = self._rx
        nl = rx.find(b"\n")
        if nl < 0:
            return False
        raw = bytes(rx[:nl])
        del rx[: nl + 1]
        if self._faults.corrupt_rate and raw and self._rng.random() < self._faults.corrupt_rate:
            raw = self._corrupt(raw)
        semi = raw.find(b";")
        if semi >= 0:
            raw = raw[:semi]
        line = raw.strip()
        if not line:
            return True
        if line[0] == 0x4E:  # N
            m = _LINE_NO.match(line)
            assert m is not None
            digits = m.group(1)
            n = int(digits) if digits.lstrip(b"+-") else 0
            if n != self._last_n + 1 and b"M110" not in line:
                self._line_error(STR_ERR_LINE_NO, now)
                return True
            star = line.rfind(b"*")
            if star < 0:
                self._line_error(STR_ERR_NO_CHECKSUM, now)
                return True
            given = _LEADING_INT.match(line, star + 1)
            if checksum(line[:star]) != (int(given.group(1)) if given else 0):
                self._line_error(STR_ERR_CHECKSUM_MISMATCH, now)
                return True
            self._last_n = n
            self._ring.append((n, line[m.end() : star].strip().decode("latin-1")))
        elif b"*" in line:
            self._line_error(STR_ERR_NO_LINENUMBER_WITH_CHECKSUM, now)
        else:
            self._ring.append((None, line.decode("latin-1")))
        return True

    def _corrupt(self, raw: bytes) -> bytes:
        i = self._rng.randrange(len(raw))
        flipped = raw[i] ^ (1 << self._rng.randrange(7))
        if flipped in (0x0A, 0x0D):  # a line break would split the line, not corrupt it
            flipped ^= 0x40
        return raw[:i] + bytes((flipped,)) + raw[i + 1 :]

    # ---------------------------------------------------------------- main loop

    def _run(self, now: float) -> None:
        """Marlin's loop at ``now``: run queued commands, take new lines, until something blocks."""
        while not (self.halted or self.link_dropped):
            if self._ring:
                if not self._advance_head(now):
                    while len(self._ring) < self._bufsize and self._pull_line(now):
                        pass
                    return
            elif not self._pull_line(now):
                return

    def _advance_head(self, now: float) -> bool:
        """Run or continue the command at the head of the ring; False if it must wait."""
        n, text = self._ring[0]
        if self._stall_until is not None:
            if now < self._stall_until:
                return False
            self._stall_until = None
        elif (
            self._faults.busy_stall_rate
            and not self._stalled_head
            and self._wait is None
            and self._rng.random() < self._faults.busy_stall_rate
        ):
            self._stalled_head = True
            self._stall_until = now + self._wall(self._faults.busy_stall_s)
            self._next_busy = now + self._keepalive()
            return now >= self._stall_until and self._advance_head(now)
        wait = self._wait
        if wait is not None:
            if not wait.ready(self, now):
                return False
            self._wait = None
            wait.finish(self, now)
            self._next_temp_report = math.inf
            self._done(n, text, now)
            return True
        result = self._execute(text, now)
        if result is _PLANNER_FULL:
            return False
        self.executed.append(text)
        if isinstance(result, _Wait):
            self._wait = result
            self._next_busy = now + self._keepalive()
            if isinstance(result, _Heat):
                self._next_temp_report = now + self._wall(TEMP_REPORT_WHILE_WAITING_S)
            return self._advance_head(now)
        if result is _NO_OK:
            self._ring.popleft()
            self._stalled_head = False
            self._after_command(now)
        else:
            self._done(n, text, now)
        return True

    def _done(self, n: int | None, text: str, now: float) -> None:
        self._ok(n, now)
        self._ring.popleft()
        self._stalled_head = False
        self._after_command(now)

    def _after_command(self, now: float) -> None:
        count = len(self.executed)
        faults = self._faults
        reset_at, disconnect_at = faults.reset_after_lines, faults.disconnect_after_lines
        if reset_at is not None and not self._reset_fired and count >= reset_at:
            self._reset_fired = True
            self.reset(now)
        if disconnect_at is not None and not self._disconnect_fired and count >= disconnect_at:
            self._disconnect_fired = True
            self.link_dropped = True

    def _keepalive(self) -> float:
        interval = self.config.keepalive_interval_s
        return interval * self._scale if self._scale > 0 else interval

    def _periodic(self, now: float) -> None:
        """Host keepalive (`busy:`), temperature reports while heating, M155 auto-reports."""
        if (self._wait is not None or self._stall_until is not None) and now >= self._next_busy:
            message = self._wait.busy_message if self._wait is not None else STR_BUSY_PROCESSING
            self._send(f"echo:{message}\n", now)
            self._next_busy = now + self._keepalive()
        if isinstance(self._wait, _Heat) and now >= self._next_temp_report:
            self._send(f" {self._temperatures()} W:?\n", now)
            self._next_temp_report = now + max(self._wall(TEMP_REPORT_WHILE_WAITING_S), 1e-3)
        if self._autoreport_wall is not None and now >= self._next_autoreport:
            self._send(f" {self._temperatures()}\n", now)
            self._next_autoreport = now + self._autoreport_wall

    # ---------------------------------------------------------------- commands

    def _execute(self, text: str, now: float) -> object:
        """Run one command. Returns None (send ok), _NO_OK, _PLANNER_FULL or a _Wait."""
        m = _WORD.match(text)
        if m is None:
            if not text:
                return None
            self._send(f'echo:{STR_UNKNOWN_COMMAND}{text}"\n', now)
            return None
        letter = m.group(1).upper()
        word = f"{letter}{int(m.group(2))}"
        rest = text[m.end() :]
        params: dict[str, float] = {}
        for p_letter, value in _PARAM.findall(rest):
            try:
                params[p_letter.upper()] = float(value) if value else math.nan
            except ValueError:
                continue
        action = match_action(self._actions, word, params, self._tool)
        if action is not None:
            return self._dialect_command(action, params, now)
        if letter == "G":
            if word in ("G0", "G1", "G2", "G3"):
                return self._move(params, now)
            handler = self._G.get(word)
        elif letter == "M":
            handler = self._M.get(word)
        elif letter == "T":
            return self._select_tool(int(m.group(2)), now)
        else:
            handler = None
        if handler is None:
            self._send(f'echo:{STR_UNKNOWN_COMMAND}{text.strip()}"\n', now)
            return None
        return handler(self, params, text, now)

    def _move(self, params: dict[str, float], now: float) -> object:
        if len(self._planner) >= self._planner_size:
            return _PLANNER_FULL
        pos = self._pos
        f = params.get("F")
        if f is not None and f > 0:
            self._feed_mm_s = f / 60.0
        target = list(pos)
        for i, axis in enumerate("XYZ"):
            v = params.get(axis)
            if v is not None and v == v:
                target[i] = pos[i] + v if self._relative else v
        e = params.get("E")
        if e is not None and e == e:
            target[3] = pos[3] + e if (self._relative or self._relative_e) else e
        dist = math.dist(pos[:3], target[:3]) or abs(target[3] - pos[3])
        self._pos = target
        if dist > 0:
            duration = self._wall(dist / self._feed_mm_s)
            start = max(now, self._planner_end)
            self._planner_end = start + duration
            if self._planner_end > now:
                self._planner.append(self._planner_end)
        return None

    def _select_tool(self, tool: int, now: float) -> object:
        if tool in self._heads:
            self._tool = tool
        else:
            self._send(f"echo:T{tool} Invalid extruder\n", now)
        return None

    def _dialect_command(self, action: Action, params: dict[str, float], now: float) -> object:
        def value(kind: tuple[str, ...]) -> tuple[float, str] | None:
            for letter, field_name in action.values.items():
                if field_name in kind and letter in params and params[letter] == params[letter]:
                    return params[letter], field_name
            return None

        role = action.role
        if role in ("valve_open", "valve_close"):
            self._heads[action.target].valve_open = role == "valve_open"
        elif role == "pressure":
            got = value(("kpa", "fraction", "pwm", "value"))
            if got is not None:
                maximum = self.profile.printhead(action.target).pressure_max_kpa
                kpa = _to_unit(got[0], got[1], maximum)
                self._heads[action.target].regulator.target = max(0.0, min(maximum, kpa))
        elif role == "head_temperature":
            got = value(("celsius", "value"))
            if got is not None:
                self._heads[action.target].heater.target = got[0]
        elif role == "bed_temperature":
            got = value(("celsius", "value"))
            if got is not None:
                self._set_bed(got[0])
        elif role == "uv_on":
            self._uv_percent = 100.0
        elif role == "uv_off":
            self._uv_percent = 0.0
        elif role == "uv_level":
            got = value(("pwm", "intensity", "fraction", "value"))
            level = _to_unit(got[0], got[1], 100.0) if got is not None else 0.0
            if got is None and action.values:
                # The literal S0 of `M42 P4 S0` arrives as a plain number.
                level = _to_unit(params.get(next(iter(action.values)), 0.0), "pwm", 100.0)
            self._uv_percent = max(0.0, min(100.0, level))
        elif role == "uv_select":
            self._uv_module = action.target
        elif role == "uv_exposure":
            got = value(("seconds", "ms"))
            seconds = 0.0 if got is None else (got[0] / 1000 if got[1] == "ms" else got[0])
            strength = value(("intensity", "pwm", "fraction"))
            percent = 100.0 if strength is None else _to_unit(*strength, 100.0)
            return _Exposure(self._wall(seconds), action.target, seconds, percent)
        return None

    def _set_bed(self, celsius: float) -> None:
        bed = self.profile.bed
        if bed is None:
            return
        # A Peltier bed holds any target inside its range; 0 switches it off.
        self._bed.target = (
            0.0 if celsius <= 0 else max(bed.temperature_min_c, min(bed.temperature_max_c, celsius))
        )

    def _temperatures(self) -> str:
        """The temperature report, as Marlin's print_heater_states (or key-value for Cellink)."""
        if self._scale == 0:
            self._sync(self._now)  # instant physics: a new target is reached at once
        heads = self._heads
        active = heads[self._tool]
        has_bed = self.profile.bed is not None
        if self.dialect == "cellink":
            parts = [
                f"T{t}:{heads[t].heater.value:.1f}/{heads[t].heater.target:.1f}"
                for t in self._heated
            ]
            parts += [
                f"P{t}:{h.regulator.value:.1f}/{h.regulator.target:.1f}" for t, h in heads.items()
            ]
            if has_bed:
                parts.append(f"B:{self._bed.value:.1f}/{self._bed.target:.1f}")
            return " ".join(parts)
        shown = active if len(self._heated) != 1 else heads[self._heated[0]]
        parts = [f"T:{shown.heater.value:.2f} /{shown.heater.target:.2f}"]
        if has_bed:
            parts.append(f"B:{self._bed.value:.2f} /{self._bed.target:.2f}")
        if len(self._heated) > 1:
            parts += [
                f"T{t}:{heads[t].heater.value:.2f} /{heads[t].heater.target:.2f}"
                for t in self._heated
            ]
        parts.append(f"@:{shown.heater.power()}")
        if has_bed:
            parts.append(f"B@:{self._bed.power()}")
        if len(self._heated) > 1:
            parts += [f"@{t}:{heads[t].heater.power()}" for t in self._heated]
        return " ".join(parts)

    # Standard Marlin handlers: (firmware, params, text, now) -> result of _execute.

    def _g4(self, p: dict[str, float], text: str, now: float) -> object:
        seconds = p.get("S", 0.0) + p.get("P", 0.0) / 1000.0
        return _Dwell(self._wall(seconds if seconds == seconds else 0.0))

    def _g28(self, p: dict[str, float], text: str, now: float) -> object:
        travel = max(abs(v) for v in self._pos[:3])
        return _Homing(self._wall(1.0 + travel / HOMING_FEED_MM_S))

    def _g29(self, p: dict[str, float], text: str, now: float) -> object:
        return _Dwell(self._wall(PROBING_S))

    def _g90(self, p: dict[str, float], text: str, now: float) -> object:
        self._relative = False
        self._relative_e = False
        return None

    def _g91(self, p: dict[str, float], text: str, now: float) -> object:
        self._relative = True
        return None

    def _g92(self, p: dict[str, float], text: str, now: float) -> object:
        for i, axis in enumerate("XYZE"):
            v = p.get(axis)
            if v is not None:
                self._pos[i] = 0.0 if v != v else v
        if not p:
            self._pos = [0.0, 0.0, 0.0, 0.0]
        return None

    def _m0(self, p: dict[str, float], text: str, now: float) -> object:
        seconds = p.get("S", 0.0) + p.get("P", 0.0) / 1000.0
        self._wait_for_user = True
        return _UserPause(self._wall(seconds) if seconds and seconds == seconds else None)

    def _m82(self, p: dict[str, float], text: str, now: float) -> object:
        self._relative_e = False
        return None

    def _m83(self, p: dict[str, float], text: str, now: float) -> object:
        self._relative_e = True
        return None

    def _m42(self, p: dict[str, float], text: str, now: float) -> object:
        pin, value = p.get("P"), p.get("S", 0.0)
        if pin is not None and pin == pin:
            self._pins[int(pin)] = int(value) if value == value else 0
        return None

    def _heater_of(self, p: dict[str, float]) -> _FirstOrder:
        t = p.get("T")
        tool = int(t) if t is not None and t == t and int(t) in self._heads else self._tool
        return self._heads[tool].heater

    def _m104(self, p: dict[str, float], text: str, now: float) -> object:
        s = p.get("S")
        if s is not None and s == s:
            self._heater_of(p).target = max(0.0, s)
        return None

    def _m109(self, p: dict[str, float], text: str, now: float) -> object:
        heater = self._heater_of(p)
        target = p.get("S", p.get("R"))
        if target is not None and target == target:
            heater.target = max(0.0, target)
        if "S" in p and heater.value >= heater.goal:
            return None  # M109 S waits only while heating
        return _Heat(heater)

    def _m140(self, p: dict[str, float], text: str, now: float) -> object:
        s = p.get("S")
        if s is not None and s == s:
            self._set_bed(s)
        return None

    def _m190(self, p: dict[str, float], text: str, now: float) -> object:
        if self.profile.bed is None:
            return None
        s = p.get("S", p.get("R"))
        if s is not None and s == s:
            self._set_bed(s)
        return _Heat(self._bed)  # a Peltier bed is waited for in both directions

    def _m105(self, p: dict[str, float], text: str, now: float) -> object:
        # Marlin's M105 prints its own `ok` with the report, without ADVANCED_OK fields.
        if not (self._faults.ack_loss_rate and self._rng.random() < self._faults.ack_loss_rate):
            self._send(f"ok {self._temperatures()}\n", now)
        return _NO_OK

    def _m106(self, p: dict[str, float], text: str, now: float) -> object:
        s = p.get("S", 255.0)
        self._fan = int(s) if s == s else 255
        return None

    def _m107(self, p: dict[str, float], text: str, now: float) -> object:
        self._fan = 0
        return None

    def _m108(self, p: dict[str, float], text: str, now: float) -> object:
        self._wait_for_user = False
        return None

    def _m110(self, p: dict[str, float], text: str, now: float) -> object:
        n = p.get("N")
        if n is not None and n == n:
            self._last_n = int(n)
        return None

    def _m112(self, p: dict[str, float], text: str, now: float) -> object:
        self._kill()
        return _NO_OK

    def _m114(self, p: dict[str, float], text: str, now: float) -> object:
        x, y, z, e = self._pos
        self._send(
            f"X:{x:.2f} Y:{y:.2f} Z:{z:.2f} E:{e:.2f} Count X:{round(x * 80)} Y:{round(y * 80)} Z:{round(z * 400)}\n",
            now,
        )
        return None

    def _m115(self, p: dict[str, float], text: str, now: float) -> object:
        profile = self.profile
        machine = profile.model or profile.name
        caps = {
            "SERIAL_XON_XOFF": 0,
            "BINARY_FILE_TRANSFER": 0,
            "EEPROM": 0,
            "AUTOREPORT_TEMP": 1,
            "AUTOREPORT_POS": 0,
            "ADVANCED_OK": int(self._advanced_ok),
            "EMERGENCY_PARSER": 1,
            "PROGRESS": 0,
            "PRINT_JOB": 1,
            "AUTOLEVEL": 1,
            "Z_PROBE": 1,
            "SDCARD": 0,
            "THERMAL_PROTECTION": 1,
            "ARCS": 1,
            "HOST_ACTION_COMMANDS": 0,
            "PROMPT_SUPPORT": 0,
        }
        lines = [
            f"FIRMWARE_NAME:Marlin {FIRMWARE_VERSION} (labdevices simulator, {self.dialect} dialect) "
            f"SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin PROTOCOL_VERSION:1.0 "
            f"MACHINE_TYPE:{machine} KINEMATICS:Cartesian EXTRUDER_COUNT:{len(profile.printheads)} "
            f"UUID:00000000-0000-4000-8000-{zlib.crc32(profile.name.encode()):012d}"
        ]
        lines += [f"Cap:{k}:{v}" for k, v in caps.items()]
        self._send("\n".join(lines) + "\n", now)
        return None

    def _m155(self, p: dict[str, float], text: str, now: float) -> object:
        s = p.get("S", 0.0)
        if s is not None and s == s and s > 0:
            self._autoreport_wall = s  # telemetry for people: wall seconds, not scaled
            self._next_autoreport = now + s
        else:
            self._autoreport_wall = None
            self._next_autoreport = math.inf
        return None

    def _m400(self, p: dict[str, float], text: str, now: float) -> object:
        return _Dwell(0.0)

    def _m410(self, p: dict[str, float], text: str, now: float) -> object:
        self._planner.clear()
        self._planner_end = now
        return None

    def _noop(self, p: dict[str, float], text: str, now: float) -> object:
        return None

    _G: ClassVar[dict[str, _Handler]] = {
        "G4": _g4,
        "G28": _g28,
        "G29": _g29,
        "G90": _g90,
        "G91": _g91,
        "G92": _g92,
        "G21": _noop,
    }
    _M: ClassVar[dict[str, _Handler]] = {
        "M0": _m0,
        "M1": _m0,
        "M17": _noop,
        "M18": _noop,
        "M84": _noop,
        "M42": _m42,
        "M82": _m82,
        "M83": _m83,
        "M104": _m104,
        "M105": _m105,
        "M106": _m106,
        "M107": _m107,
        "M108": _m108,
        "M109": _m109,
        "M110": _m110,
        "M112": _m112,
        "M114": _m114,
        "M115": _m115,
        "M117": _noop,
        "M140": _m140,
        "M155": _m155,
        "M190": _m190,
        "M220": _noop,
        "M221": _noop,
        "M400": _m400,
        "M410": _m410,
    }


def _to_unit(value: float, kind: str, maximum: float) -> float:
    """A template field's value in the target unit (kPa, percent, celsius)."""
    if kind == "pwm":
        return value / 255.0 * maximum
    if kind == "fraction":
        return value * maximum
    return value

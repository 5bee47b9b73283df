"""Load a G-code program and check it against the printer it is for, before anything moves.

One loader and one set of checks for every way a job reaches a printer
(``labdevices print``, ``jobs/submit``): the text is G-code (no binary or control
bytes), has commands, was planned for this printer's profile, contains no command
the profile forbids, and keeps the head inside the build volume. Every problem is
reported at once, each with its line number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import JobRejected
from ..profiles import GcodeProfile
from ..protocols import strip_gcode

__all__ = ["Program", "load_gcode", "load_program"]

#: Problems listed in one error before the rest are only counted.
MAX_PROBLEMS = 20

_HEADER_PROFILE = re.compile(r"^\s*;\s*printer profile:\s*(\S+)", re.IGNORECASE)
_COMMAND = re.compile(r"^([GMT])0*(\d+)(\.\d+)?(?![\d.])", re.IGNORECASE)
_AXIS = re.compile(r"([XYZ])\s*([-+]?(?:\d+\.?\d*|\.\d+))", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_MOVES = frozenset({"G0", "G1", "G2", "G3"})


@dataclass(frozen=True, slots=True)
class Program:
    """The commands of a checked G-code program, each with its 1-based line in the source."""

    commands: list[str]
    source_lines: list[int]
    source: str
    header_profile: str | None
    """The printer profile named in the planner's header (``; printer profile: …``), if any."""


def load_gcode(text: str | Iterable[str]) -> list[str]:
    """The commands of G-code text, comments and blank lines removed — no checks.

    For a job, use ``load_program``: it checks the text against the printer.
    """
    lines = text.splitlines() if isinstance(text, str) else text
    return [c for c in (strip_gcode(line) for line in lines) if c]


def load_program(
    text: str | bytes,
    profile: GcodeProfile,
    *,
    source: str = "G-code",
    allow_pauses: bool = False,
    force: bool = False,
    device: str | None = None,
) -> Program:
    """The program in ``text``, checked for ``profile``; ``JobRejected`` lists every problem.

    ``allow_pauses`` admits the profile's operator-pause commands (``M0``, ``M1``…);
    ``force`` admits a program planned for another printer profile (nothing else).
    """
    problems: list[str] = []
    if isinstance(text, bytes):
        data = text
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            at = data.count(b"\n", 0, exc.start) + 1
            raise JobRejected(
                f"{source}: line {at}: not G-code text (byte 0x{data[exc.start]:02x} "
                "is not UTF-8); refusing to stream it",
                device=device,
            ) from None
    commands: list[str] = []
    numbers: list[int] = []
    header: tuple[int, str] | None = None
    forbidden = set(profile.forbidden_commands)
    pauses = set(profile.pause_commands)
    for i, raw_line in enumerate(text.split("\n"), start=1):
        line = raw_line.removesuffix("\r")
        bad = _CONTROL.search(line)
        if bad is not None:
            problems.append(
                f"line {i}: control byte 0x{ord(bad.group()):02x} at column {bad.start() + 1}: "
                "not G-code text"
            )
            continue
        command = strip_gcode(line)
        if not command:
            if header is None and (m := _HEADER_PROFILE.match(line)):
                header = (i, m.group(1))
            continue
        if not command.isascii():
            problems.append(f"line {i}: non-ASCII character in command {_show(command)}")
            continue
        m = _COMMAND.match(command)
        if m is None:
            if command[0] in "Nn" or "*" in command:
                problems.append(
                    f"line {i}: {_show(command)} carries a line number or checksum; "
                    "the host numbers lines itself"
                )
            else:
                problems.append(f"line {i}: {_show(command)} is not a G-code command")
            continue
        word = f"{m.group(1).upper()}{int(m.group(2))}{m.group(3) or ''}"
        if word in forbidden:
            problems.append(
                f"line {i}: {word} may not be in a job on {profile.name} (forbidden_commands)"
            )
        elif word in pauses and not allow_pauses:
            problems.append(
                f"line {i}: {word} waits for an operator; the job must allow operator pauses"
            )
        commands.append(command)
        numbers.append(i)
    if header is not None and header[1] != profile.name and not force:
        problems.insert(
            0,
            f"line {header[0]}: planned for printer profile {header[1]!r}, but this printer "
            f"is {profile.name!r} (force to print it anyway)",
        )
    if not commands and not problems:
        problems.append("no G-code commands (empty, or only comments)")
    problems += _extent_problems(commands, numbers, profile)
    if problems:
        shown = problems[:MAX_PROBLEMS]
        more = len(problems) - len(shown)
        raise JobRejected(
            f"{source}: refused, {len(problems)} problem(s):\n  "
            + "\n  ".join(shown)
            + (f"\n  … and {more} more" if more else ""),
            device=device,
        )
    return Program(commands, numbers, source, header[1] if header else None)


def _show(command: str) -> str:
    return repr(command if len(command) <= 40 else command[:37] + "...")


def _extent_problems(commands: list[str], numbers: list[int], profile: GcodeProfile) -> list[str]:
    """Where the program takes the head outside the build volume (the first line, per axis).

    Tracks absolute/relative positioning (G90/G91), units (G20/G21), G92 position
    shifts and G28 homing. The program starts on a homed printer without shift:
    absolute coordinates are machine coordinates. A position reached only by
    relative moves from an unknown one is unknown, and not checked.
    """
    lo = profile.build_volume_min_mm
    hi = profile.build_volume_mm
    pos: list[float | None] = [None, None, None]  # machine coordinates, mm
    shift: list[float | None] = [0.0, 0.0, 0.0]  # machine = logical + shift
    absolute = True
    unit = 1.0
    first: dict[int, str] = {}
    for command, line in zip(commands, numbers, strict=True):
        m = _COMMAND.match(command)
        if m is None or m.group(1).upper() != "G":
            continue
        word = f"G{int(m.group(2))}{m.group(3) or ''}"
        if word in _MOVES or word in ("G28", "G92"):
            axes = {a.upper(): float(v) for a, v in _AXIS.findall(command[m.end() :])}
        else:
            axes = {}
        if word == "G90":
            absolute = True
        elif word == "G91":
            absolute = False
        elif word == "G20":
            unit = 25.4
        elif word == "G21":
            unit = 1.0
        elif word == "G28":
            named = command[m.end() :].upper()
            homed = [i for i, a in enumerate("XYZ") if a in named] or [0, 1, 2]
            for i in homed:
                pos[i] = lo[i]
                shift[i] = 0.0
        elif word == "G92":
            for i, a in enumerate("XYZ"):
                if a in axes:
                    p = pos[i]
                    shift[i] = None if p is None else p - axes[a] * unit
        elif word in _MOVES:
            for i, a in enumerate("XYZ"):
                if a not in axes:
                    continue
                v = axes[a] * unit
                if absolute:
                    s = shift[i]
                    pos[i] = None if s is None else v + s
                else:
                    p = pos[i]
                    pos[i] = None if p is None else p + v
                p = pos[i]
                if p is not None and i not in first and not lo[i] - 1e-6 <= p <= hi[i] + 1e-6:
                    first[i] = (
                        f"line {line}: {a} = {p:g} mm is outside the build volume "
                        f"{lo[i]:g}…{hi[i]:g} mm of {profile.name}"
                    )
    return [first[i] for i in sorted(first)]

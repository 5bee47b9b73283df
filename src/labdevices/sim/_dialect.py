"""Read a printer profile's command templates back into the commands the simulated firmware answers.

The simulator understands a vendor's G-code because the profile says what each
command does (``valve_open = "M750 T{tool}"``), so a new vendor's profile works
in the simulator without code, as it does in the driver.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from ..profiles import GcodeProfile
from ._printer_config import Dialect

__all__ = ["Action", "Role", "build_actions", "deduce_dialect", "match_action"]

Role = Literal[
    "valve_open",
    "valve_close",
    "pressure",
    "head_temperature",
    "bed_temperature",
    "uv_level",
    "uv_on",
    "uv_off",
    "uv_exposure",
    "uv_select",
]

# Standard Marlin commands the firmware core implements itself; a template using
# them needs no dialect entry (M42 stays here: pins are vendor-specific).
_BUILTIN = {
    "G0", "G1", "G2", "G3", "G4", "G28", "G29", "G90", "G91", "G92",
    "M0", "M1", "M82", "M83", "M104", "M105", "M106", "M107", "M108", "M109",
    "M110", "M112", "M114", "M115", "M140", "M155", "M190", "M400", "M410",
}  # fmt: skip

_FIELD = re.compile(r"\{(\w+)(?::[^}]*)?\}")
# Parameters that pick which output a command drives (a pin, a tool); others carry values.
_SELECTORS = ("P", "T")


@dataclass(frozen=True)
class Action:
    """One dialect command: ``word`` with ``selectors`` (e.g. ``P6``) does ``role`` on ``target``.

    ``values`` maps a parameter letter to the template field it carries
    (``{"S": "pwm"}``), which says the unit of the value.
    """

    word: str
    role: Role
    target: int
    selectors: dict[str, float] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)


def deduce_dialect(profile: GcodeProfile) -> Dialect:
    """The firmware family a profile's valve commands point to."""
    word = profile.printheads[0].valve_open or ""
    if word.startswith("M750"):
        return "cellink"
    if word.startswith(("M760", "M762")):
        return "inkredible"
    return "marlin"


def _parse(line: str, role: Role, target: int, **known: int) -> Action | None:
    text = _FIELD.sub(lambda m: str(known.get(m.group(1), m.group(0))), line).strip()
    tokens = text.split()
    if not tokens:
        return None
    word = tokens[0].upper()
    selectors: dict[str, float] = {}
    values: dict[str, str] = {}
    for tok in tokens[1:]:
        letter, rest = tok[0].upper(), tok[1:]
        m = _FIELD.fullmatch(rest)
        if m is not None:
            values[letter] = m.group(1)
            continue
        try:
            number = float(rest)
        except ValueError:
            continue
        if letter in _SELECTORS and letter not in values:
            selectors[letter] = number
    return Action(word, role, target, selectors, values)


def _durations(values: dict[str, str]) -> bool:
    return any(v in ("seconds", "ms") for v in values.values())


def _levels(values: dict[str, str]) -> bool:
    return any(v in ("pwm", "intensity", "fraction") for v in values.values())


def build_actions(profile: GcodeProfile) -> dict[str, list[Action]]:
    """Every dialect command of ``profile``, by command word; builtin Marlin words are left out."""
    table: dict[str, list[Action]] = {}

    def add(template: str | None, role: Role, target: int, **known: int) -> None:
        if template is None:
            return
        for line in template.splitlines():
            action = _parse(line, role, target, tool=target, **known)
            if action is None or action.word in _BUILTIN:
                continue
            entries = table.setdefault(action.word, [])
            if all(e.selectors != action.selectors for e in entries):
                entries.append(action)

    for head in profile.printheads:
        add(head.valve_open, "valve_open", head.tool)
        add(head.valve_close, "valve_close", head.tool)
        add(head.set_pressure, "pressure", head.tool)
        add(head.set_temperature, "head_temperature", head.tool)
    if profile.bed is not None:
        add(profile.bed.set_temperature, "bed_temperature", 0)
        add(profile.bed.wait_temperature, "bed_temperature", 0)
    uv = profile.uv
    # A dialect that numbers its curing modules (Cellink's T10/T11) has two of them.
    modules = [] if uv is None else [uv.module] + ([uv.module + 1] if "{module}" in uv.cure else [])
    for module in modules:
        assert uv is not None
        add(uv.on, "uv_on", module, module=module)
        add(uv.off, "uv_off", module, module=module)
        # In a cure template, what comes before the dwell switches the light on,
        # what comes after switches it off; a command with its own duration is a
        # timed exposure (M805); a bare T<module> selects the curing module.
        after_dwell = False
        for line in uv.cure.splitlines():
            action = _parse(line, "uv_on", module, module=module)
            if action is None:
                continue
            if action.word in ("G4", "M400"):
                after_dwell = True
                continue
            if _durations(action.values):
                role: Role = "uv_exposure"
            elif _levels(action.values):
                role = "uv_level"
            elif action.word.startswith("T") and not action.values and not action.selectors:
                role = "uv_select"
            else:
                role = "uv_off" if after_dwell else "uv_on"
            add(line, role, module, module=module)
    return table


def match_action(
    table: dict[str, list[Action]], word: str, params: dict[str, float], active_tool: int
) -> Action | None:
    """The dialect action ``word`` with ``params`` invokes, if any; no ``T`` means the active tool."""
    entries = table.get(word)
    if not entries:
        return None
    for action in entries:
        selectors = action.selectors.items()
        if all(params.get(k, active_tool if k == "T" else None) == v for k, v in selectors):
            return action
    return None

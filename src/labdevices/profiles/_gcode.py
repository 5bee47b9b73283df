"""Profiles of Marlin-style G-code bioprinters: the serial link and the printer's dialect.

A dialect says which G-code a printer understands for each printhead action
(pressure, valve, extrusion, temperature), the bed and UV crosslinking. Command
templates are Python format strings; the fields each template may use are listed
on the field. Another vendor is another profile, not code.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ..files import StrictModel
from ._base import ProfileBase, SignalBase

__all__ = [
    "DEFAULT_FORBIDDEN_COMMANDS",
    "DEFAULT_PAUSE_COMMANDS",
    "BedDialect",
    "GcodeProfile",
    "GcodeSignal",
    "PrintheadDialect",
    "SerialSettings",
    "UvDialect",
]

# Commands a job may never contain: they halt or restart the firmware, rewrite its
# stored settings or firmware, take over line numbering, or switch off the limits
# that keep the head inside the build volume.
DEFAULT_FORBIDDEN_COMMANDS: tuple[str, ...] = (
    "M112",  # emergency stop: the operator's, not a job's
    "M999",  # restart after a halt
    "M110",  # line numbering belongs to the host
    "M111",  # debug flags
    "M28",  # SD card writes
    "M29",
    "M30",
    "M81",  # power off
    "M121",  # endstops off
    "M211",  # software endstops off
    "M206",  # home offsets
    "M428",
    "M303",  # PID autotune
    "M500",  # EEPROM store / load / factory reset / check
    "M501",
    "M502",
    "M504",
    "M928",  # SD logging
    "M997",  # firmware update
)
# Commands that wait for an operator: allowed only in jobs that allow operator pauses.
DEFAULT_PAUSE_COMMANDS: tuple[str, ...] = ("M0", "M1", "M600")

_WORD = r"^[GMT]\d+$"

# Commands that legitimately take long; the driver waits this long for their `ok`.
DEFAULT_LONG_TIMEOUTS_S: dict[str, float] = {
    "G28": 180.0,
    "G29": 600.0,
    "M109": 900.0,
    "M190": 1800.0,
    "M400": 1800.0,
    "G4": 3600.0,
}


class SerialSettings(StrictModel):
    """The serial link and the firmware's buffers, which bound how much may be in flight."""

    baudrate: int = Field(default=115200, gt=0)
    window_lines: int = Field(
        default=4, ge=1, le=64, description="lines in flight without ok (firmware BUFSIZE)"
    )
    rx_buffer_bytes: int = Field(
        default=128, ge=32, description="firmware serial receive buffer (RX_BUFFER_SIZE)"
    )
    ack_timeout_s: float = Field(default=10.0, gt=0, description="silence before a resync probe")
    connect_timeout_s: float = Field(default=10.0, gt=0)
    max_resends_per_line: int = Field(default=20, ge=1)
    long_timeouts_s: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_LONG_TIMEOUTS_S))
    reset_on_connect_wait_s: float = Field(
        default=0.0,
        ge=0,
        description="wait for a `start` banner after opening (boards that reset on DTR)",
    )


class PrintheadDialect(StrictModel):
    """One printhead (tool) and the G-code that drives it.

    Template fields: ``{tool}``; ``{kpa}``, ``{fraction}`` (of ``pressure_max_kpa``),
    ``{pwm}`` (0–255) for pressure; ``{celsius}`` for temperature.
    """

    tool: int = Field(ge=0)
    kind: Literal["pneumatic", "piston"]
    label: str = ""
    select: str = Field(default="T{tool}", description="makes this printhead active")
    offset_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # pneumatic
    pressure_max_kpa: float = Field(default=700.0, gt=0)
    set_pressure: str | None = Field(default=None, description="None: set by hand on the regulator")
    valve_open: str | None = None
    valve_close: str | None = None
    # piston
    syringe_diameter_mm: float | None = Field(default=None, gt=0)
    # temperature-controlled printhead (heated or cooled)
    temperature_min_c: float | None = None
    temperature_max_c: float | None = None
    set_temperature: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> PrintheadDialect:
        if self.kind == "pneumatic":
            missing = [f for f in ("valve_open", "valve_close") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"a pneumatic printhead needs {', '.join(missing)}")
        if self.kind == "piston" and self.syringe_diameter_mm is None:
            raise ValueError("a piston printhead needs syringe_diameter_mm")
        if self.set_temperature is not None and (
            self.temperature_min_c is None or self.temperature_max_c is None
        ):
            raise ValueError("set_temperature needs temperature_min_c and temperature_max_c")
        return self


class BedDialect(StrictModel):
    """Temperature-controlled print bed. Template field: ``{celsius}``."""

    temperature_min_c: float = 4.0
    temperature_max_c: float = 60.0
    set_temperature: str = "M140 S{celsius:.1f}"
    wait_temperature: str = "M190 S{celsius:.1f}"


class UvDialect(StrictModel):
    """UV crosslinking. Template fields: ``{seconds}``, ``{ms}``, ``{intensity}`` (percent), ``{module}``."""

    wavelength_nm: float = 365.0
    module: int = 0
    cure: str = Field(description="one exposure of the given duration")
    on: str | None = None
    off: str | None = None


class GcodeSignal(SignalBase):
    """A printer signal: read from a report key (``T0``, ``B``, ``P0``) and optionally set by a template.

    ``report`` is the key in temperature / key-value reports; ``set`` a template
    with the fields ``{value}``, and, when ``max`` is given, ``{fraction}`` (value/max)
    and ``{pwm}`` (0–255). Several commands are separated by newlines.
    """

    report: str | None = None
    set: str | None = None

    @model_validator(mode="after")
    def _settable(self) -> GcodeSignal:
        if self.writable and self.set is None:
            raise ValueError("a writable signal needs a `set` template")
        return self


class GcodeProfile(ProfileBase):
    """A Marlin-style G-code bioprinter."""

    driver: Literal["gcode"]
    serial: SerialSettings = SerialSettings()
    build_volume_mm: tuple[float, float, float] = Field(
        default=(130.0, 90.0, 70.0),
        description="highest X, Y, Z the head may reach (mm); jobs are checked against it",
    )
    build_volume_min_mm: tuple[float, float, float] = Field(
        default=(0.0, 0.0, 0.0), description="lowest X, Y, Z the head may reach (mm)"
    )
    forbidden_commands: list[Annotated[str, Field(pattern=_WORD)]] = Field(
        default_factory=lambda: list(DEFAULT_FORBIDDEN_COMMANDS),
        description="command words (e.g. M112) a job may never contain",
    )
    pause_commands: list[Annotated[str, Field(pattern=_WORD)]] = Field(
        default_factory=lambda: list(DEFAULT_PAUSE_COMMANDS),
        description="command words that wait for an operator: only in jobs that allow pauses",
    )
    travel_lift_mm: float = Field(default=5.0, ge=0)
    printheads: list[PrintheadDialect] = Field(min_length=1)
    bed: BedDialect | None = None
    uv: UvDialect | None = None
    signals: dict[str, GcodeSignal] = Field(default_factory=dict)
    report_command: str = Field(default="M105", description="asks for a temperature report")
    safe_stop: list[str] = Field(
        default_factory=lambda: ["G91", "G0 Z{lift_mm}", "G90"],
        description="sent after the printheads are closed on cancel; field {lift_mm}",
    )

    @model_validator(mode="after")
    def _volume_ordered(self) -> GcodeProfile:
        for axis, lo, hi in zip("XYZ", self.build_volume_min_mm, self.build_volume_mm, strict=True):
            if lo >= hi:
                raise ValueError(
                    f"build_volume_min_mm {axis} = {lo} is not below build_volume_mm {axis} = {hi}"
                )
        return self

    @model_validator(mode="after")
    def _unique_tools(self) -> GcodeProfile:
        tools = [p.tool for p in self.printheads]
        if len(set(tools)) != len(tools):
            raise ValueError(f"printhead tool numbers must be unique, got {tools}")
        return self

    def printhead(self, tool: int) -> PrintheadDialect:
        for p in self.printheads:
            if p.tool == tool:
                return p
        raise KeyError(tool)

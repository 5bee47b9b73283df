"""Settings of a simulated Marlin-style printer: which profile it emulates, its buffers, timing and faults."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from ..errors import ConfigurationError
from ..files import StrictModel, load_toml, validate
from ..profiles import GcodeProfile, load_profile

__all__ = [
    "Dialect",
    "FaultConfig",
    "SimPrinterConfig",
    "load_sim_printer_config",
    "resolve_profile",
]

Dialect = Literal["marlin", "cellink", "inkredible"]


class FaultConfig(StrictModel):
    """Faults the simulator injects, drawn from ``random.Random(seed)`` so a run can be replayed."""

    corrupt_rate: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="probability that a received line has one byte flipped",
    )
    ack_loss_rate: float = Field(
        default=0.0, ge=0.0, le=1.0, description="probability that an `ok` is never sent"
    )
    busy_stall_rate: float = Field(
        default=0.0, ge=0.0, le=1.0, description="probability that a command stalls before its ok"
    )
    busy_stall_s: float = Field(
        default=3.0,
        ge=0.0,
        description="length of a stall in firmware seconds (scaled by time_scale)",
    )
    disconnect_after_lines: int | None = Field(
        default=None, ge=1, description="close the link once this many commands have executed"
    )
    reset_after_lines: int | None = Field(
        default=None, ge=1, description="reset the firmware once this many commands have executed"
    )


class SimPrinterConfig(StrictModel):
    """A simulated printer. Durations are firmware seconds; wall time is that × ``time_scale``."""

    profile: str = Field(
        default="marlin-pneumatic", description="shipped profile name or path to a profile TOML"
    )
    dialect: Dialect | None = Field(
        default=None, description="emulated firmware family; None: deduced from the profile"
    )
    time_scale: float = Field(
        default=1.0, ge=0.0, description="wall seconds per firmware second; 0 = everything instant"
    )
    advanced_ok: bool = Field(default=True, description="ADVANCED_OK: `ok N.. P.. B..`")
    rx_buffer_bytes: int | None = Field(
        default=None,
        ge=16,
        description="RX_BUFFER_SIZE; None: the profile's serial.rx_buffer_bytes",
    )
    bufsize: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="command ring BUFSIZE; None: the profile's window_lines",
    )
    block_buffer_size: int = Field(
        default=16, ge=2, le=256, description="planner BLOCK_BUFFER_SIZE"
    )
    keepalive_interval_s: float = Field(
        default=2.0, gt=0.0, description="`echo:busy:` period while a command blocks (firmware s)"
    )
    ok_delay_s: float = Field(
        default=0.0, ge=0.0, description="latency added to every reply (wall s, pipelined)"
    )
    baudrate: int | None = Field(
        default=None,
        gt=0,
        description="pace the link at baudrate/10 bytes/s each way; None: unpaced",
    )
    seed: int = 0
    faults: FaultConfig = FaultConfig()


def resolve_profile(profile: str | Path | GcodeProfile, base: Path | None = None) -> GcodeProfile:
    """The G-code profile named, found at a path (relative to ``base``), or given."""
    if isinstance(profile, GcodeProfile):
        return profile
    ref: str | Path = profile
    p = Path(profile)
    if base is not None and not p.is_absolute() and (p.suffix == ".toml" or len(p.parts) > 1):
        ref = base / p
    loaded = load_profile(ref)
    if not isinstance(loaded, GcodeProfile):
        raise ConfigurationError(
            f"profile {str(profile)!r} is a {loaded.driver} profile; the printer simulator needs a gcode one"
        )
    return loaded


def load_sim_printer_config(path: str | Path) -> SimPrinterConfig:
    """Read a simulated-printer TOML file; errors name the file and field.

    A relative ``profile`` path is taken relative to the file.
    """
    p = Path(path)
    config = validate(SimPrinterConfig, load_toml(p), str(p))
    ref = Path(config.profile)
    if not ref.is_absolute() and (ref.suffix == ".toml" or len(ref.parts) > 1):
        config = config.model_copy(update={"profile": str(p.parent / ref)})
    try:
        resolve_profile(config.profile)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{p}: profile: {exc.message}", file=str(p)) from exc
    return config

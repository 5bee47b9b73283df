"""Device profiles: one TOML file per device model, validated into pydantic models.

``load_profile("marlin-pneumatic")`` finds a shipped profile by name;
``load_profile(Path("my.toml"))`` loads a file. A bad profile raises
``ConfigurationError`` naming the file, field and reason.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from .._resources import data_dir
from ..errors import ConfigurationError
from ..files import load_toml, validate
from ._base import ProfileBase, SignalBase

if TYPE_CHECKING:
    from pydantic import Field

    from ._gcode import (
        BedDialect,
        GcodeProfile,
        GcodeSignal,
        PrintheadDialect,
        SerialSettings,
        UvDialect,
    )
    from ._modbus import ModbusConnection, ModbusProfile, ModbusSignal
    from ._opcua import (
        OpcUaArgument,
        OpcUaConnection,
        OpcUaMethod,
        OpcUaNodeRef,
        OpcUaProfile,
        OpcUaSecurity,
        OpcUaSignal,
        OpcUaSubscription,
    )

    Profile = Annotated[GcodeProfile | ModbusProfile | OpcUaProfile, Field(discriminator="driver")]

__all__ = [
    "BedDialect",
    "GcodeProfile",
    "GcodeSignal",
    "ModbusConnection",
    "ModbusProfile",
    "ModbusSignal",
    "OpcUaArgument",
    "OpcUaConnection",
    "OpcUaMethod",
    "OpcUaNodeRef",
    "OpcUaProfile",
    "OpcUaSecurity",
    "OpcUaSignal",
    "OpcUaSubscription",
    "PrintheadDialect",
    "Profile",
    "ProfileBase",
    "ProfileEntry",
    "SerialSettings",
    "SignalBase",
    "UvDialect",
    "list_profiles",
    "load_profile",
    "profile_path",
]

# Each protocol's models are loaded on first use: a print job needs only its printer's
# (G-code) profile, and building the Modbus and OPC UA models costs a one-off command
# (`labdevices toolpath`) a noticeable part of its run time.
_PROFILE_CLASS = {"gcode": "GcodeProfile", "modbus": "ModbusProfile", "opcua": "OpcUaProfile"}
_WHERE: dict[str, str] = {
    "BedDialect": "_gcode",
    "GcodeProfile": "_gcode",
    "GcodeSignal": "_gcode",
    "PrintheadDialect": "_gcode",
    "SerialSettings": "_gcode",
    "UvDialect": "_gcode",
    "ModbusConnection": "_modbus",
    "ModbusProfile": "_modbus",
    "ModbusSignal": "_modbus",
    "OpcUaArgument": "_opcua",
    "OpcUaConnection": "_opcua",
    "OpcUaMethod": "_opcua",
    "OpcUaNodeRef": "_opcua",
    "OpcUaProfile": "_opcua",
    "OpcUaSecurity": "_opcua",
    "OpcUaSignal": "_opcua",
    "OpcUaSubscription": "_opcua",
}


def __getattr__(name: str) -> Any:
    if name == "Profile":
        from pydantic import Field

        gcode, modbus, opcua = (_profile_class(driver) for driver in ("gcode", "modbus", "opcua"))
        value: Any = Annotated[gcode | modbus | opcua, Field(discriminator="driver")]
    elif name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def _profile_class(driver: str) -> type[GcodeProfile | ModbusProfile | OpcUaProfile]:
    cls: type[GcodeProfile | ModbusProfile | OpcUaProfile] = __getattr__(_PROFILE_CLASS[driver])
    return cls


def profile_path(name_or_path: str | Path) -> Path:
    """A path as given, or the shipped profile of that name."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists() or len(p.parts) > 1:
        return p
    candidate = data_dir("drivers") / f"{name_or_path}.toml"
    if not candidate.exists():
        known = ", ".join(sorted(f.stem for f in data_dir("drivers").glob("*.toml")))
        raise ConfigurationError(f"unknown device profile {name_or_path!r}; known: {known}")
    return candidate


def load_profile(name_or_path: str | Path) -> GcodeProfile | ModbusProfile | OpcUaProfile:
    """Load and validate one profile (by shipped name or by path)."""
    path = profile_path(name_or_path)
    data = load_toml(path)
    data.setdefault("name", path.stem)
    if "driver" not in data:
        raise ConfigurationError(
            f"{path}: driver: field required (one of 'gcode', 'modbus', 'opcua')", file=str(path)
        )
    driver = data["driver"]
    if not isinstance(driver, str) or driver not in _PROFILE_CLASS:
        raise ConfigurationError(
            f"{path}: driver: {driver!r} is not one of 'gcode', 'modbus', 'opcua'", file=str(path)
        )
    return validate(_profile_class(driver), data, str(path))


@dataclass(frozen=True)
class ProfileEntry:
    path: Path
    profile: GcodeProfile | ModbusProfile | OpcUaProfile | None
    error: ConfigurationError | None


def list_profiles(folder: Path | None = None) -> list[ProfileEntry]:
    """Every profile in ``folder`` (default: the shipped ones), each loaded or with its error."""
    out = []
    for path in sorted((folder or data_dir("drivers")).glob("*.toml")):
        try:
            out.append(ProfileEntry(path, load_profile(path), None))
        except ConfigurationError as exc:
            out.append(ProfileEntry(path, None, exc))
    return out

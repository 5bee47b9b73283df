"""Foundation: error tree, profile loading with clear errors, shipped data."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from labdevices import ConfigurationError, LabDeviceError, LimitViolation
from labdevices.profiles import GcodeProfile, list_profiles, load_profile

ROOT = Path(__file__).resolve().parent.parent


def test_every_shipped_profile_is_valid() -> None:
    entries = list_profiles()
    assert entries, "no shipped profiles found"
    bad = {e.path.name: str(e.error) for e in entries if e.error is not None}
    assert not bad


def test_profile_by_name_and_limits() -> None:
    p = load_profile("marlin-pneumatic")
    assert isinstance(p, GcodeProfile)
    assert p.driver == "gcode"
    sig = p.signals["bed_temperature_setpoint"]
    with pytest.raises(LimitViolation, match="above the limit 60"):
        sig.check("printer1", "bed_temperature_setpoint", 80.0)
    sig.check("printer1", "bed_temperature_setpoint", 37.0)


def test_unknown_profile_lists_known() -> None:
    with pytest.raises(ConfigurationError, match=r"known: .*marlin-pneumatic"):
        load_profile("no-such-printer")


def test_bad_profile_names_file_field_and_reason(tmp_path: Path) -> None:
    f = tmp_path / "broken.toml"
    f.write_text(
        'driver = "gcode"\n'
        "[[printheads]]\n"
        'tool = -1\nkind = "pneumatic"\nset_pressure = "M773"\nvalve_open = "a"\nvalve_close = "b"\n'
        "colour = 'red'\n"
    )
    with pytest.raises(ConfigurationError) as info:
        load_profile(f)
    text = str(info.value)
    assert str(f) in text
    assert "printheads[0].tool" in text
    assert "greater than or equal to 0" in text
    assert "printheads[0].colour: unknown field" in text
    assert isinstance(info.value, LabDeviceError)


def test_malformed_toml_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text('driver = "gcode"\nname = \n')
    with pytest.raises(ConfigurationError, match=r"bad\.toml: not valid TOML.*line 2"):
        load_profile(f)


def test_missing_driver_is_named(tmp_path: Path) -> None:
    f = tmp_path / "nodriver.toml"
    f.write_text('vendor = "x"\n')
    with pytest.raises(ConfigurationError, match=r"nodriver\.toml: driver: field required"):
        load_profile(f)


def test_unknown_driver_is_named(tmp_path: Path) -> None:
    f = tmp_path / "odd.toml"
    f.write_text('driver = "canbus"\n')
    with pytest.raises(ConfigurationError, match=r"odd\.toml: driver: 'canbus' is not one of"):
        load_profile(f)


def test_missing_field_is_named(tmp_path: Path) -> None:
    f = tmp_path / "noheads.toml"
    f.write_text('driver = "gcode"\n')
    with pytest.raises(ConfigurationError) as info:
        load_profile(f)
    assert info.value.problems == [f"{f}: printheads: Field required"]


def test_a_gcode_profile_loads_without_the_other_protocols_models() -> None:
    # a print job needs its printer's profile only (`labdevices toolpath` starts faster)
    code = (
        "import sys; from labdevices.profiles import load_profile; "
        "load_profile('marlin-pneumatic'); "
        "print(*sorted(m for m in sys.modules if m.startswith('labdevices.profiles.')))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["labdevices.profiles._base", "labdevices.profiles._gcode"]


def test_profile_union_and_lazy_names_resolve() -> None:
    from pydantic import TypeAdapter

    from labdevices import profiles

    union = TypeAdapter(profiles.Profile)
    modbus = union.validate_python({"name": "m", "driver": "modbus"})
    assert isinstance(modbus, profiles.ModbusProfile)
    assert "OpcUaSignal" in dir(profiles)
    with pytest.raises(AttributeError):
        profiles.NoSuchProfile  # noqa: B018


def test_cli_profiles_reports_bad_file_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('driver = "gcode"\nprintheads = []\n')
    run = subprocess.run(
        [sys.executable, "-m", "labdevices", "profiles", "--folder", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1
    assert "printheads" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr


def test_wheel_ships_profiles_and_configs(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("labdevices-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "labdevices/_data/drivers/marlin-pneumatic.toml" in names
    assert any(n.startswith("labdevices/_data/config/") for n in names)
    assert any(n.startswith("labdevices/_data/simulators/") for n in names)

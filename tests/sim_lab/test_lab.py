"""The demo lab: every device starts and answers our drivers; bad lab files are named."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from labdevices.devices import create_device
from labdevices.errors import ConfigurationError
from labdevices.profiles import load_profile
from labdevices.sim.lab import SimulatedLab

READ = {
    "printer": "bed_temperature",
    "incubator": "chamber_temperature",
    "bioreactor": "temperature",
    "sensors": "ph",
}


async def test_demo_lab_devices_answer_our_drivers(sim_lab: SimulatedLab) -> None:
    assert set(sim_lab.addresses) == set(READ)
    for name, signal in READ.items():
        profile = load_profile(sim_lab.profiles[name])
        assert signal in profile.signals, f"{name}: profile has no {signal}"
        async with create_device(name, profile, sim_lab.addresses[name]) as device:
            async with asyncio.timeout(20):
                sample = await device.read(signal)
        assert sample.device == name
        assert isinstance(sample.value, float | int)


def test_bad_lab_file_names_file_and_field(tmp_path: Path) -> None:
    f = tmp_path / "lab.toml"
    f.write_text('[devices.p]\nkind = "printer"\ntime_scale = -1\n[devices.q]\nkind = "toaster"\n')
    with pytest.raises(ConfigurationError) as info:
        SimulatedLab.from_file(f)
    text = str(info.value)
    assert "devices.p.time_scale" in text
    assert "devices.q" in text

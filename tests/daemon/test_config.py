"""Daemon configs: a bad one is refused with every problem listed, file and field named."""

from __future__ import annotations

from pathlib import Path

import pytest

from labdevices.daemon import load_config, parse_mqtt_url
from labdevices.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_config_loads() -> None:
    loaded = load_config(ROOT / "config" / "demo.toml")
    assert loaded.config.site == "demo"
    assert set(loaded.profiles) == {"printer", "incubator", "bioreactor", "sensors"}
    assert loaded.config.store.path == ROOT / "config" / "labdevices-demo.db"
    assert len(loaded.sha256) == 64


def test_the_postgresql_site_config_loads_and_a_bad_store_url_is_named(tmp_path: Path) -> None:
    loaded = load_config(ROOT / "config" / "site-postgresql.toml")
    store = loaded.config.store
    assert store.location == "postgresql://labdevices@127.0.0.1:5432/labdevices"
    assert store.key_file == ROOT / "config" / "site1.key"
    bad = tmp_path / "bad.toml"
    bad.write_text('site = "s"\n[store]\nurl = "mysql://db/lab"\n')
    with pytest.raises(ConfigurationError) as caught:
        load_config(bad)
    assert any("store.url" in p and "postgresql://" in p for p in caught.value.problems)


def test_a_bad_config_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        """
site = "lab/1"
colour = "blue"
[bus]
url = "http://broker:1883"
[devices.printer]
profile = "marlin-pneumatic"
poll_interval_s = -1
[[interlocks]]
name = "hot"
device = "printer"
condition = "above"
action = "explode"
"""
    )
    with pytest.raises(ConfigurationError) as caught:
        load_config(path)
    problems = caught.value.problems
    text = "\n".join(problems)
    assert all(p.startswith(f"{path}: ") for p in problems)
    assert "site: Value error, site name 'lab/1' contains '/'" in text
    assert "colour: unknown field" in text
    assert "bus.url: Value error, MQTT url 'http://broker:1883' must start with mqtt://" in text
    assert "devices.printer.poll_interval_s: Input should be greater than 0" in text
    assert (
        "interlocks[0].action: Input should be 'pause_job', 'estop', 'hold_setpoint' or 'alarm'"
        in text
    )
    # and, in the same pass, what the cross-check finds
    assert "devices.printer.address: field required" in text
    assert len(problems) == 6


def test_eight_mistakes_are_reported_in_one_pass(tmp_path: Path) -> None:
    path = tmp_path / "eight.toml"
    path.write_text(
        """
site = "demo"
colour = "blue"
[devices.printer]
profile = "no-such-printer"
address = "socket://127.0.0.1:1"
[devices.incubator]
profile = "co2-incubator"
[devices.reactor]
profile = "stirred-tank-bioreactor"
address = "tcp://127.0.0.1:1?unit=1"
poll_interval_s = -1
[[interlocks]]
name = "a"
device = "nowhere"
signal = "x"
condition = "above"
value = 1.0
action = "alarm"
[[interlocks]]
name = "b"
device = "incubator"
signal = "chamber_temperature"
condition = "above"
action = "alarm"
[[interlocks]]
name = "c"
device = "incubator"
signal = "no_signal"
condition = "above"
value = 2
action = "alarm"
[[interlocks]]
name = "d"
device = "reactor"
target = "elsewhere"
signal = "temperature"
condition = "above"
value = 40
action = "alarm"
"""
    )
    with pytest.raises(ConfigurationError) as caught:
        load_config(path)
    text = "\n".join(caught.value.problems)
    expected = [
        "colour: unknown field",
        "devices.reactor.poll_interval_s: Input should be greater than 0",
        "interlocks[1]: Value error, condition 'above' needs a numeric `value`",
        "devices.printer.profile: unknown device profile 'no-such-printer'",
        "devices.incubator.address: field required",
        "interlocks[0].device: unknown device 'nowhere'",
        "interlocks[2].signal: device 'incubator' has no signal 'no_signal'",
        "interlocks[3].target: unknown device 'elsewhere'",
    ]
    for problem in expected:
        assert f"{path}: {problem}" in text, (problem, text)
    assert len(caught.value.problems) == len(expected), text


def test_cross_checks_name_devices_and_signals(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        """
site = "lab"
[devices.printer]
profile = "marlin-pneumatic"
[devices.incubator]
profile = "co2-incubator"
address = "tcp://127.0.0.1:1502"
[devices.mystery]
profile = "no-such-printer"
address = "/dev/null"
[[interlocks]]
name = "hot"
device = "printer"
signal = "nozzle_temp"
condition = "above"
value = 40
action = "pause_job"
[[interlocks]]
name = "door"
device = "incubator"
signal = "door_open"
condition = "equals"
value = true
action = "pause_job"
[[interlocks]]
name = "cold"
device = "freezer"
condition = "offline"
[[interlocks]]
name = "hold"
device = "incubator"
signal = "chamber_temperature"
condition = "outside"
low = 30
high = 40
action = "hold_setpoint"
setpoint = "temperature_setpoint"
setpoint_value = 80
"""
    )
    with pytest.raises(ConfigurationError) as caught:
        load_config(path)
    text = "\n".join(caught.value.problems)
    assert "devices.mystery.profile: unknown device profile 'no-such-printer'" in text
    assert "devices.printer.address: field required" in text
    assert "interlocks[0].signal: device 'printer' has no signal 'nozzle_temp'" in text
    assert (
        "interlocks[1].action: 'pause_job' needs a printer, but 'incubator' is a modbus device"
        in text
    )
    assert "interlocks[2].device: unknown device 'freezer'" in text
    assert (
        "interlocks[3].setpoint_value: temperature_setpoint = 80.0 degC is above the limit" in text
    )


def test_mqtt_urls() -> None:
    assert parse_mqtt_url("mqtt://127.0.0.1") == ("127.0.0.1", 1883, False, None, None)
    assert parse_mqtt_url("mqtts://u:p%40ss@broker:9000") == ("broker", 9000, True, "u", "p@ss")
    with pytest.raises(ValueError, match="no host"):
        parse_mqtt_url("mqtt://")

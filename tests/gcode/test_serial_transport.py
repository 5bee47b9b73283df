"""Serial transport: ptys, socket:// URLs, timeouts and vanished ports."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from labdevices.devices.gcode import GcodePrinter, JobOutcome
from labdevices.errors import DeviceConnectionError, DeviceTimeoutError
from labdevices.profiles import GcodeProfile, load_profile
from labdevices.sim.printer import SimPrinterConfig, SimulatedPrinter
from labdevices.transports import SerialTransport


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_missing_port_is_a_connection_error(tmp_path: Path) -> None:
    t = SerialTransport(str(tmp_path / "ttyNOPE"), device="printer-9")
    with pytest.raises(DeviceConnectionError, match="printer-9: cannot open"):
        await t.open()


async def test_refused_socket_is_a_connection_error() -> None:
    t = SerialTransport(f"socket://127.0.0.1:{free_port()}")
    with pytest.raises(DeviceConnectionError, match="cannot open"):
        await t.open()


async def test_bad_socket_url_is_named() -> None:
    with pytest.raises(DeviceConnectionError, match="bad socket URL"):
        await SerialTransport("socket://nohostport").open()


async def test_silence_times_out_and_vanished_pty_raises() -> None:
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.0)) as sim:
        t = SerialTransport(sim.port or "")
        await t.open()
        try:
            await t.write(b"M105\n")
            assert b"ok" in await t.read(timeout=2.0)
            with pytest.raises(DeviceTimeoutError, match="no data"):
                await t.read(timeout=0.05)
            sim.disconnect()
            with pytest.raises(DeviceConnectionError, match=r"lost|closed"):
                await t.read(timeout=5.0)
        finally:
            await t.close()
            await t.close()  # safe twice


async def test_job_over_socket_url() -> None:
    prof = load_profile("cellink-biox")
    assert isinstance(prof, GcodeProfile)
    async with SimulatedPrinter(
        config=SimPrinterConfig(profile="cellink-biox", time_scale=0)
    ) as sim:
        port = await sim.serve_tcp()
        async with GcodePrinter("p", prof, f"socket://127.0.0.1:{port}") as printer:
            commands = ["G90", "M773 T0 P85.0", "M750 T0", "G1 X10 Y10 F600", "M751 T0"]
            result = await printer.run_job(commands)
        assert result.outcome == JobOutcome.COMPLETED
        assert [c for c in sim.executed if c in commands] == commands


def test_cli_print_to_missing_port_is_one_clear_line(tmp_path: Path) -> None:
    gcode = tmp_path / "a.gcode"
    gcode.write_text("G28\n")
    run = subprocess.run(
        [sys.executable, "-m", "labdevices", "print", str(gcode), "--port", str(tmp_path / "ttyX")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert run.returncode == 2
    assert "cannot open" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout


async def test_write_to_closed_link_is_a_connection_error() -> None:
    t = SerialTransport("socket://127.0.0.1:1")
    with pytest.raises(DeviceConnectionError, match="not open"):
        await t.write(b"G28\n")

"""The simulated printer served on real pseudo-terminals and TCP sockets, and a third-party host."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from labdevices.errors import ConfigurationError, DeviceConnectionError
from labdevices.sim.printer import (
    FaultConfig,
    SimPrinterConfig,
    SimulatedPrinter,
    checksum,
    load_sim_printer_config,
)
from labdevices.transports import SerialTransport

ROOT = Path(__file__).resolve().parents[2]


def numbered(n: int, command: str) -> bytes:
    line = f"N{n} {command}"
    return f"{line}*{checksum(line.encode())}\n".encode()


async def read_lines(link: SerialTransport, count: int, timeout: float = 5.0) -> list[str]:
    """The next ``count`` lines from the printer (skipping nothing)."""
    buf = b""
    async with asyncio.timeout(timeout):
        while buf.count(b"\n") < count:
            buf += await link.read(timeout=timeout)
    return buf.decode().splitlines()


async def drain(link: SerialTransport) -> None:
    """Read until the link fails."""
    while True:
        await link.read(timeout=5)


async def test_pty_speaks_marlin() -> None:
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0)) as sim:
        assert sim.port is not None and sim.port.startswith("/dev/")
        assert sim.url == sim.port
        link = SerialTransport(sim.url)
        await link.open()
        try:
            await link.write(b"M105\n" + numbered(1, "G1 X5 Y6") + numbered(2, "M126 S255"))
            lines = await read_lines(link, 3)
        finally:
            await link.close()
        assert lines == ["ok T:22.00 /0.00 B:20.00 /20.00 @:0 B@:0", "ok N1 P15 B3", "ok N2 P15 B3"]
        assert sim.executed == ["M105", "G1 X5 Y6", "M126 S255"]
        assert sim.state.position[:2] == (5.0, 6.0)
        assert sim.state.valves[0] is True


async def test_tcp_speaks_marlin_and_takes_one_host_at_a_time() -> None:
    async with SimulatedPrinter("cellink-biox", SimPrinterConfig(), transport="tcp") as sim:
        assert sim.port is None
        assert sim.url == f"socket://127.0.0.1:{sim.tcp_port}"
        link = SerialTransport(sim.url)
        await link.open()
        second = SerialTransport(sim.url)
        await second.open()
        try:
            with pytest.raises(DeviceConnectionError, match="closed"):
                await second.read(timeout=5)  # the port is taken
            await link.write(numbered(1, "M773 T0 P85"))
            assert await read_lines(link, 1) == ["ok N1 P15 B7"]
        finally:
            await link.close()
            await second.close()
        assert sim.state.pressure_setpoints_kpa[0] == 85.0


async def test_tcp_alongside_pty() -> None:
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0)) as sim:
        port = await sim.serve_tcp()
        link = SerialTransport(f"socket://127.0.0.1:{port}")
        await link.open()
        try:
            await link.write(b"M114\n")
            lines = await read_lines(link, 2)
        finally:
            await link.close()
        assert lines[0].startswith("X:0.00 Y:0.00 Z:0.00 E:0.00")
        assert sim.url == sim.port  # the pty stays the main port


async def test_disconnect_on_pty_is_eio_for_the_host_then_reconnect() -> None:
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0)) as sim:
        old = sim.url
        link = SerialTransport(old)
        await link.open()
        try:
            sim.disconnect()
            with pytest.raises(DeviceConnectionError):
                await link.read(timeout=5)
        finally:
            await link.close()
        assert sim.port is None
        new = sim.reconnect()
        link = SerialTransport(new)
        await link.open()
        try:
            await link.write(numbered(1, "G90"))
            assert await read_lines(link, 1) == ["ok N1 P15 B3"]
        finally:
            await link.close()


async def test_disconnect_fault_closes_a_tcp_link_mid_stream() -> None:
    config = SimPrinterConfig(time_scale=0, faults=FaultConfig(disconnect_after_lines=3))
    async with SimulatedPrinter(config=config, transport="tcp") as sim:
        link = SerialTransport(sim.url)
        await link.open()
        try:
            await link.write(b"".join(numbered(i, f"G1 X{i}") for i in range(1, 8)))
            with pytest.raises(DeviceConnectionError, match="closed"):
                await drain(link)
        finally:
            await link.close()
        assert sim.executed == ["G1 X1", "G1 X2", "G1 X3"]
        # the bridge keeps listening: the host can come back
        link = SerialTransport(sim.url)
        await link.open()
        try:
            await link.write(numbered(4, "G1 X4"))
            assert await read_lines(link, 1) == ["ok N4 P15 B3"]
        finally:
            await link.close()


async def test_reset_sends_start_and_forgets_line_numbers() -> None:
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0)) as sim:
        link = SerialTransport(sim.url)
        await link.open()
        try:
            await link.write(numbered(1, "G90"))
            assert await read_lines(link, 1) == ["ok N1 P15 B3"]
            sim.reset()
            lines = await read_lines(link, 4)
            assert lines[0] == "start"
            await link.write(numbered(1, "G91"))
            assert (await read_lines(link, 1))[-1] == "ok N1 P15 B3"
        finally:
            await link.close()
        assert sim.state.resets == 1


async def test_emergency_stop_over_the_wire_while_blocked() -> None:
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=1.0)) as sim:
        link = SerialTransport(sim.url)
        await link.open()
        try:
            await link.write(numbered(1, "G4 S600") + numbered(2, "G1 X1"))
            await sim.wait_until(lambda s: s.executed == ["G4 S600"])
            await link.write(b"M112\n")
            assert await read_lines(link, 1) == ["Error:Printer halted. kill() called!"]
        finally:
            await link.close()
        assert sim.state.halted


async def test_busy_keepalive_reaches_the_host() -> None:
    config = SimPrinterConfig(time_scale=0.01, keepalive_interval_s=1.0)
    async with SimulatedPrinter(config=config) as sim:
        link = SerialTransport(sim.url)
        await link.open()
        try:
            await link.write(numbered(1, "G4 S5"))
            lines = await read_lines(link, 3)
        finally:
            await link.close()
        assert lines[:2] == ["echo:busy: processing", "echo:busy: processing"]


async def test_baud_pacing_limits_throughput() -> None:
    config = SimPrinterConfig(time_scale=0, baudrate=9600)  # 960 bytes/s each way
    async with SimulatedPrinter(config=config) as sim:
        link = SerialTransport(sim.url)
        await link.open()
        loop = asyncio.get_running_loop()
        try:
            data = b"".join(numbered(i, f"G1 X{i}.5 Y{i}.25") for i in range(1, 21))
            start = loop.time()
            await link.write(data)
            received = b""
            while b"ok N20 " not in received:  # the tail of the power-on banner comes first
                received += await link.read(timeout=5)
            elapsed = loop.time() - start
        finally:
            await link.close()
        assert len(sim.executed) == 20
        # a lower bound only: a UART at 9600 baud cannot move these bytes faster
        assert elapsed >= len(data) / 960 * 0.95


async def test_wait_until_times_out() -> None:
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0)) as sim:
        with pytest.raises(TimeoutError):
            await sim.wait_until(lambda s: s.state.halted, timeout=0.05)


async def test_context_is_not_reentrant_and_closes_twice() -> None:
    sim = SimulatedPrinter(config=SimPrinterConfig(time_scale=0))
    async with sim:
        pass
    await sim.aclose()
    with pytest.raises(RuntimeError, match="only once"):
        async with sim:
            pass


def test_demo_config_loads() -> None:
    config = load_sim_printer_config(ROOT / "simulators" / "demo-printer.toml")
    assert config.profile == "marlin-pneumatic"


def test_bad_config_names_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "sim.toml"
    bad.write_text("time_scale = -1\n[faults]\ncorrupt_rate = 2\nlose_everything = true\n")
    with pytest.raises(ConfigurationError) as info:
        load_sim_printer_config(bad)
    text = str(info.value)
    assert f"{bad}: time_scale:" in text
    assert f"{bad}: faults.corrupt_rate:" in text
    assert f"{bad}: faults.lose_everything: unknown field" in text
    bad.write_text('profile = "no-such-printer"\n')
    with pytest.raises(ConfigurationError, match=r"sim.toml: profile: unknown device profile"):
        load_sim_printer_config(bad)


def test_profile_path_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text(
        (ROOT / "drivers" / "inkredible.toml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    (tmp_path / "sim.toml").write_text('profile = "mine.toml"\n')
    config = load_sim_printer_config(tmp_path / "sim.toml")
    assert Path(config.profile) == tmp_path / "mine.toml"


async def test_cli_starts_a_simulator_and_says_where() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "labdevices",
        "sim",
        "printer",
        "--profile",
        "inkredible",
        "--port",
        "0",
        "--time-scale",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            url = (await proc.stdout.readline()).decode().strip()
        assert url.startswith("socket://127.0.0.1:")
        link = SerialTransport(url)
        await link.open()
        try:
            await link.write(b"M760\n")
            assert await read_lines(link, 1) == ["ok P15 B3"]
        finally:
            await link.close()
    finally:
        proc.terminate()
        async with asyncio.timeout(10):
            _, err = await proc.communicate()
    assert proc.returncode == 0
    assert b"simulated printer stopped" in err

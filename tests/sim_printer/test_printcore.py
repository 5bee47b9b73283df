"""A third-party host, printrun's printcore, streams G-code files into the simulated printer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from labdevices.sim.printer import FaultConfig, SimPrinterConfig, SimulatedPrinter

printcore_module = pytest.importorskip("printrun.printcore")
gcoder = pytest.importorskip("printrun.gcoder")


def gcode_file(tmp_path: Path, n: int) -> tuple[Path, list[str]]:
    """A G-code file with comments and blank lines, and the commands a host must send."""
    commands = ["G28", "G90", "M126 S255", "M42 P6 S128"]
    commands += [f"G1 X{i % 100}.{i % 10} Y{(i * 7) % 80}.5 F3000" for i in range(n)]
    commands += ["M127", "M42 P6 S0"]
    text = "; demo scaffold\n\n" + "\n".join(
        f"{c} ; step" if i % 50 == 0 else c for i, c in enumerate(commands)
    )
    path = tmp_path / "job.gcode"
    path.write_text(text + "\n", encoding="utf-8")
    return path, commands


async def stream_with_printcore(sim: SimulatedPrinter, path: Path) -> None:
    loop = asyncio.get_running_loop()
    online, finished = asyncio.Event(), asyncio.Event()
    host = printcore_module.printcore()
    host.onlinecb = lambda: loop.call_soon_threadsafe(online.set)
    host.endcb = lambda: loop.call_soon_threadsafe(finished.set)
    host.errorcb = lambda _error: None  # Error: lines are expected under faults
    await asyncio.to_thread(host.connect, sim.port, 115200)
    try:
        async with asyncio.timeout(30):
            await online.wait()
            lines = (await asyncio.to_thread(path.read_text, encoding="utf-8")).splitlines()
            assert host.startprint(gcoder.LightGCode(lines))
            print_thread = host.print_thread
            await finished.wait()
            # printcore ends a print with `M110 N-1`; wait until it has run
            await sim.wait_until(lambda s: s.executed[-1].startswith("M110"))
            # and until its print thread has ended: it starts the send thread again last, and
            # printcore's disconnect races a send thread not yet started
            if print_thread is not None:
                await asyncio.to_thread(print_thread.join)
    finally:
        await asyncio.to_thread(host.disconnect)


def job_part(executed: list[str]) -> list[str]:
    """The executed stream without printcore's own commands (M105 probes, M110)."""
    return [c for c in executed if not c.startswith(("M105", "M110"))]


async def test_printcore_streams_a_file(tmp_path: Path) -> None:
    path, commands = gcode_file(tmp_path, 1500)
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0)) as sim:
        await stream_with_printcore(sim, path)
        assert job_part(sim.executed) == commands
        state = sim.state
    assert state.valves[0] is False
    assert state.position[:2] == (99.9, 13.5)  # the last move of the file


async def test_printcore_recovers_from_corruption_via_resend(tmp_path: Path) -> None:
    path, commands = gcode_file(tmp_path, 400)
    config = SimPrinterConfig(time_scale=0, seed=11, faults=FaultConfig(corrupt_rate=0.02))
    async with SimulatedPrinter(config=config) as sim:
        await stream_with_printcore(sim, path)
        assert job_part(sim.executed) == commands

"""``labdevices print``: streams a file, and Ctrl-C (SIGINT) cancels safely."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from labdevices.sim.printer import SimPrinterConfig, SimulatedPrinter


def gcode_file(tmp_path: Path, n: int) -> Path:
    lines = ["G90", "M126 S255"] + [f"G1 X{i % 90}.5 Y{(i * 7) % 80}.5 F600" for i in range(n)]
    path = tmp_path / "job.gcode"
    path.write_text("; a test print\n" + "\n".join(lines) + "\nM127\n")
    return path


async def run_cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "labdevices",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_print_streams_the_whole_file(tmp_path: Path) -> None:
    path = gcode_file(tmp_path, 200)
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.0)) as sim:
        proc = await run_cli("print", str(path), "--port", sim.url)
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert b"completed: 203/203 lines" in out
        assert sim.executed[-1] == "M127"


async def test_ctrl_c_cancels_safely(tmp_path: Path) -> None:
    path = gcode_file(tmp_path, 5000)
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim:
        proc = await run_cli("print", str(path), "--port", sim.url)
        try:
            await sim.wait_until(lambda s: len(s.executed) > 40, timeout=30)
            assert sim.state.valves[0] is True
            proc.send_signal(signal.SIGINT)
            out, err = await asyncio.wait_for(proc.communicate(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 1
        assert b"cancelled" in out
        assert b"Traceback" not in out + err
        state = sim.state
        assert all(v is False for v in state.valves.values())
        assert all(p == 0 for p in state.pressure_setpoints_kpa.values())
        assert sim.executed[-3:] == ["G91", "G0 Z5.0", "G90"]  # nozzle lifted
        assert len([c for c in sim.executed if c.startswith("G1 X")]) < 5000

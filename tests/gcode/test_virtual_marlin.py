"""The printer driver against an independent firmware: OctoPrint's virtual Marlin on a real pty.

Its receive buffer is the profile's 128 bytes and it never waits for the host: a
byte that does not fit is lost (``dropped_bytes``). Issue #10, items 5–8.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from labdevices.devices.gcode import GcodePrinter, JobOutcome
from labdevices.profiles import GcodeProfile, load_profile

from .virtual_marlin import VirtualMarlin, available

pytestmark = pytest.mark.skipif(
    not available(), reason="OctoPrint is not installed (`make .venv/.installed` installs it)"
)

PROFILE = load_profile("marlin-pneumatic")
assert isinstance(PROFILE, GcodeProfile)
DRIVER = ("M110", "M115", "M105", "M155")


def moves(n: int, distance_mm: int = 4) -> list[str]:
    return [f"G1 X{(i % 2) * distance_mm}.{i % 10} Y{i % 7}.5 F6000" for i in range(n)]


def job_part(executed: list[str]) -> list[str]:
    end = executed.index("M410") if "M410" in executed else len(executed)
    return [c for c in executed[:end] if not c.startswith(DRIVER)]


async def wait_for(cond: Callable[[], bool], printer: GcodePrinter) -> None:
    async with asyncio.timeout(30):
        while not cond():
            printer._wake.clear()
            await printer._wake.wait()


async def test_faults_never_overrun_its_buffer_nor_run_a_line_twice() -> None:
    lines = moves(400)
    with VirtualMarlin(
        rx_buffer_bytes=PROFILE.serial.rx_buffer_bytes, fault_rate=0.02, seed=3
    ) as vm:
        async with GcodePrinter(
            "p", PROFILE, vm.port, reconnect=False, ack_timeout_s=2, report_interval_s=60
        ) as printer:
            async with asyncio.timeout(60):
                result = await printer.run_job(lines)
        executed = [c for c in vm.executed if c.startswith("G1")]
        copies, dropped = vm.copies, vm.dropped_bytes
        faults = [n for n in vm.fault_lines if n <= max(copies)]
    assert result.outcome == JobOutcome.COMPLETED, result.error
    assert executed == lines
    assert dropped == 0
    assert faults
    # item 7: a fault costs a window of lines sent again at most, not the rest of the job
    extra = sum(copies.values()) - len(copies)
    assert extra <= 2 * PROFILE.serial.window_lines * len(faults)


async def test_cancel_passes_a_firmware_that_enforces_checksums() -> None:
    """Item 5: the stop is numbered and checksummed; the job is cancelled only if it was taken."""
    lines = ["G90", "M126 S255", "M42 P6 S128", *moves(300, distance_mm=60)]
    with VirtualMarlin(force_checksum=True) as vm:
        async with GcodePrinter(
            "p", PROFILE, vm.port, reconnect=False, ack_timeout_s=2, report_interval_s=60
        ) as printer:
            job = asyncio.create_task(printer.run_job(lines))
            await wait_for(lambda: printer._host.job_processed >= 10, printer)
            async with asyncio.timeout(20):
                await printer.cancel()
            result = await job
        executed = list(vm.executed)
    assert result.outcome == JobOutcome.CANCELLED and result.error is None
    stop = executed.index("M410")
    assert executed[stop : stop + 5] == ["M410", "M127", "M129", "M42 P6 S0", "M42 P11 S0"]
    assert executed[-3:] == ["G91", "G0 Z5.0", "G90"]
    # item 8: every job line the firmware took is counted, after the reconciliation
    assert result.last_acked_line == len(job_part(executed))
    assert result.last_acked_line < len(lines)

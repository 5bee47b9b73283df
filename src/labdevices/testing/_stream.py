"""Stream G-code through the simulated firmware without any I/O: fast checks for CI.

``stream_offline(lines, profile)`` runs the driver's own protocol core against the
printer simulator's firmware core, in one thread, with simulated time: it tells
in milliseconds whether a program runs on the printer (no unknown command, every
line executed once, in order), under the faults a ``SimPrinterConfig`` injects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..profiles import GcodeProfile
from ..protocols import FirmwareReset, MarlinHost
from ..sim._marlin import MarlinFirmware
from ..sim._printer_config import SimPrinterConfig

__all__ = ["OfflineStream", "stream_offline"]


@dataclass
class OfflineStream:
    host: MarlinHost
    firmware: MarlinFirmware
    executed: list[str]
    """Commands the firmware executed while streaming, in order."""
    output: str
    """Everything the firmware said."""
    reset: bool
    """The firmware reset (a fault) and the stream stopped there."""


def stream_offline(
    lines: Sequence[str],
    profile: GcodeProfile,
    config: SimPrinterConfig | None = None,
    *,
    window_lines: int | None = None,
    max_probes: int = 10_000,
) -> OfflineStream:
    """Stream ``lines`` (stripped commands) as the driver does, until all are acknowledged."""
    config = config or SimPrinterConfig(profile=profile.name, time_scale=0.0)
    fw = MarlinFirmware(profile, config)
    host = MarlinHost(
        window_lines=window_lines or profile.serial.window_lines,
        rx_buffer_bytes=profile.serial.rx_buffer_bytes,
        max_resends_per_line=50,
    )
    now = 0.0
    said = bytearray(fw.take_output(now))  # the power-on banner
    start = len(fw.executed)
    host.start_job(lines)
    probes = 0
    reset = False
    while host.job_processed < len(lines):
        data = host.data_to_send()
        if data:
            fw.receive(data, now)
        fw.tick(now)
        out = fw.take_output(now)
        if out:
            said += out
            if any(isinstance(e, FirmwareReset) for e in host.receive_data(out)):
                reset = True
                break
            continue
        if data:
            continue
        wake = fw.next_wakeup()
        if wake is not None and wake > now:
            now = wake
            continue
        # Silence with lines in flight: the driver's ack timeout fires.
        probes += 1
        if probes > max_probes:
            raise AssertionError(f"stream stalled at line {host.processed} of {len(lines)}")
        now += 1.0
        host.probe()
    return OfflineStream(host, fw, fw.executed[start:], said.decode(errors="replace"), reset)

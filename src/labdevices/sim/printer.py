"""The simulated Marlin-style bioprinter: firmware core, pty/TCP server and its settings.

``async with SimulatedPrinter(profile="marlin-pneumatic") as sim:`` starts one on a
pseudo-terminal; see ``SimulatedPrinter`` and ``SimPrinterConfig``.
"""

from ._marlin import MarlinFirmware, PrinterState, PrintheadState, UvExposure, checksum
from ._printer_config import (
    Dialect,
    FaultConfig,
    SimPrinterConfig,
    load_sim_printer_config,
    resolve_profile,
)
from ._printer_server import SimulatedPrinter

__all__ = [
    "Dialect",
    "FaultConfig",
    "MarlinFirmware",
    "PrinterState",
    "PrintheadState",
    "SimPrinterConfig",
    "SimulatedPrinter",
    "UvExposure",
    "checksum",
    "load_sim_printer_config",
    "resolve_profile",
]

"""OctoPrint's bundled virtual Marlin printer on a real pseudo-terminal: an independent firmware.

``octoprint/plugins/virtual_printer/virtual.py`` (installed by ``make`` for tests
only: ``pip install --no-deps OctoPrint``) is a serial-like object with
``write``/``readline``. Its module imports a few helpers of OctoPrint's server
(plugin manager, settings, text helpers) whose own dependencies are not installed:
they are stubbed here with the little the printer uses, and the printer's real code
runs unchanged. Two bridge threads move bytes between it and a pty, so the host
under test opens ``port`` like a serial port.

Like a real UART the bridge never blocks the host: bytes that do not fit the
printer's receive buffer (``rxBuffer``) are dropped and counted (``dropped_bytes``),
where OctoPrint itself would log "Incoming queue is full".
"""

from __future__ import annotations

import importlib.util
import os
import random
import re
import sys
import tempfile
import threading
import tty
import types
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["VirtualMarlin", "available"]

_NUMBERED = re.compile(rb"^N(\d+) ")


def _octoprint_root() -> Path | None:
    spec = importlib.util.find_spec("octoprint")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def available() -> bool:
    root = _octoprint_root()
    return root is not None and (root / "plugins" / "virtual_printer" / "virtual.py").exists()


class _RepeatedTimer(threading.Thread):
    """``octoprint.util.RepeatedTimer``: call ``function`` every ``interval`` s until cancelled."""

    def __init__(self, interval: Any, function: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(name="virtual-marlin-timer", daemon=True)
        self._interval = interval
        self._function = function
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(
            self._interval() if callable(self._interval) else self._interval
        ):
            self._function()

    def cancel(self) -> None:
        self._stop_event.set()


def _to_bytes(s: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    return s if isinstance(s, bytes) else str(s).encode(encoding, errors)


def _to_unicode(s: Any, encoding: str = "utf-8", errors: str = "strict") -> str:
    return s.decode(encoding, errors) if isinstance(s, bytes) else str(s)


class _PluginManager:
    def get_hooks(self, name: str) -> dict[str, Any]:
        return {}


def _load(path: Path, name: str, stubs: dict[str, types.ModuleType]) -> types.ModuleType:
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return module


_MODULES: dict[str, types.ModuleType] = {}


def _modules() -> tuple[types.ModuleType, dict[str, Any]]:
    if not _MODULES:
        root = _octoprint_root()
        assert root is not None, "OctoPrint is not installed (make installs it for tests)"
        octoprint = types.ModuleType("octoprint")
        octoprint.__version__ = "virtual"  # type: ignore[attr-defined]
        plugin = types.ModuleType("octoprint.plugin")
        plugin.plugin_manager = _PluginManager  # type: ignore[attr-defined]
        plugin.SettingsPlugin = type("SettingsPlugin", (), {})  # type: ignore[attr-defined]
        plugin.TemplatePlugin = type("TemplatePlugin", (), {})  # type: ignore[attr-defined]
        octoprint.plugin = plugin  # type: ignore[attr-defined]
        util = types.ModuleType("octoprint.util")
        util.RepeatedTimer = _RepeatedTimer  # type: ignore[attr-defined]
        util.get_dos_filename = lambda name, **kw: name  # type: ignore[attr-defined]
        util.to_bytes = _to_bytes  # type: ignore[attr-defined]
        util.to_unicode = _to_unicode  # type: ignore[attr-defined]
        files = types.ModuleType("octoprint.util.files")
        files.unix_timestamp_to_m20_timestamp = lambda t: "0x0"  # type: ignore[attr-defined]
        stubs = {
            "octoprint": octoprint,
            "octoprint.plugin": plugin,
            "octoprint.util": util,
            "octoprint.util.files": files,
        }
        base = root / "plugins" / "virtual_printer"
        _MODULES["virtual"] = _load(base / "virtual.py", "_octoprint_virtual", stubs)
        _MODULES["plugin"] = _load(base / "__init__.py", "_octoprint_virtual_plugin", stubs)
    defaults = _MODULES["plugin"].VirtualPrinterPlugin().get_settings_defaults()
    return _MODULES["virtual"], defaults


class _Settings:
    """The slice of OctoPrint's plugin settings the virtual printer reads."""

    def __init__(self, values: dict[str, Any], basefolder: str) -> None:
        self._values = values
        self._basefolder = basefolder

    def get(self, path: list[str], merged: bool = False) -> Any:
        value: Any = self._values
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    def get_int(self, path: list[str]) -> int:
        return int(self.get(path))

    def get_float(self, path: list[str]) -> float:
        return float(self.get(path))

    def get_boolean(self, path: list[str]) -> bool:
        return bool(self.get(path))

    def global_get_basefolder(self, name: str) -> str:
        return self._basefolder


class VirtualMarlin:
    """OctoPrint's virtual Marlin on a pty. Use as a context manager; connect to ``port``.

    ``fault_rate``: probability that a numbered line is refused once (OctoPrint's
    ``simulated_errors`` "resend": the printer asks for it again). Not bit flips: on a
    checksum mismatch the virtual printer asks for a line counted over every line
    with a valid checksum, refused duplicates included, so it skips lines (seen in
    OctoPrint 1.11.8; a host can only stop, as labdevices does with a protocol error). ``executed``: the
    commands that reached the printer's command handling, in order.
    """

    def __init__(
        self,
        *,
        rx_buffer_bytes: int = 128,
        command_buffer: int = 4,
        force_checksum: bool = False,
        fault_rate: float = 0.0,
        max_line: int = 100_000,
        seed: int = 0,
    ) -> None:
        virtual, defaults = _modules()
        self._tmp = tempfile.TemporaryDirectory(prefix="virtual-marlin-")
        rng = random.Random(seed)
        faults = [n for n in range(2, max_line) if rng.random() < fault_rate]
        self.fault_lines = faults
        """Line numbers the printer refuses once, asking for them again."""
        values = dict(defaults)
        values.update(
            rxBuffer=rx_buffer_bytes,
            commandBuffer=command_buffer,
            forceChecksum=force_checksum,
            simulateReset=False,
            sendWait=False,
            enable_eeprom=False,
            simulated_errors=[f"{n}:resend" for n in faults],
            capabilities={**defaults["capabilities"], "AUTOREPORT_TEMP": False},
        )
        self._printer_class = virtual.VirtualPrinter
        self._values = values
        self.executed: list[str] = []
        self.copies: Counter[int] = Counter()
        """How often each line number reached the printer."""
        self.dropped_bytes = 0
        self._printer: Any = None
        self._master = self._slave = -1
        self.port = ""
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()

    def __enter__(self) -> VirtualMarlin:
        executed = self.executed

        class Recording(self._printer_class):  # type: ignore[misc,name-defined]
            def _gcode_G(self, code: str, data: str) -> bool:
                executed.append(data.strip())
                return False

            _gcode_M = _gcode_G

        self._printer = Recording(
            _Settings(self._values, self._tmp.name), None, self._tmp.name, read_timeout=0.05
        )
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        for target, name in ((self._to_printer, "in"), (self._to_host, "out")):
            t = threading.Thread(target=target, name=f"virtual-marlin-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()
        printer = self._printer
        if printer is not None:
            # Its move thread crashes if closed mid-move: let the planned moves finish.
            moves = printer.buffered
            with moves.all_tasks_done:
                moves.all_tasks_done.wait_for(lambda: moves.unfinished_tasks == 0, timeout=30)
            for name in ("_temperature_reporter", "_sdstatus_reporter", "_pos_reporter"):
                timer = getattr(printer, name, None)
                if timer is not None:
                    timer.cancel()
            printer.close()
        if self._slave >= 0:
            os.close(self._slave)
            self._slave = -1
        for t in self._threads:
            t.join(timeout=5)
        if self._master >= 0:
            os.close(self._master)
            self._master = -1
        self._tmp.cleanup()

    def _to_printer(self) -> None:
        import select

        from serial import SerialTimeoutException

        pending = b""
        while not self._closing.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self._master, 4096)
            except OSError:
                return
            if not data:
                return
            pending += data
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = raw + b"\n"
                m = _NUMBERED.match(line)
                if m:
                    self.copies[int(m.group(1))] += 1
                # The printer takes one line per read; a line that does not fit is lost
                # (never waited for: a UART does not wait either).
                printer = self._printer
                with printer._incoming_lock:
                    incoming = printer.incoming
                    if incoming is None:
                        return
                    room = incoming.maxsize - incoming.qsize()
                if room < len(line):
                    self.dropped_bytes += len(line)
                    continue
                try:
                    printer.write(line)
                except SerialTimeoutException:
                    self.dropped_bytes += len(line)

    def _to_host(self) -> None:
        while not self._closing.is_set():
            printer = self._printer
            if printer is None or printer.outgoing is None:
                return
            line = printer.readline()
            if not line:
                continue
            if not line.endswith(b"\n"):  # one line per readline, as a serial port gives it
                line += b"\n"
            try:
                os.write(self._master, line)
            except OSError:
                return

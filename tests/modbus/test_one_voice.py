"""One voice in the logs during a Modbus outage: no library frame dumps, no tracebacks, no
``Repeating....``, each line naming the device once — in `watch` and in the daemon."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from labdevices._logging import configure_logging, current_device, one_voice
from labdevices.testing._modbus import ModbusSim

NOISE = (">>>>>", "Repeating", "Traceback", "0x0 0x")


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "labdevices",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"},
    )


async def test_watch_during_a_modbus_outage_shows_no_library_noise(
    modbus_incubator: ModbusSim,
) -> None:
    sim = modbus_incubator.sim
    answered = sim.answered
    proc = await _spawn(
        "watch", "--profile", "co2-incubator", "--duration", "3", modbus_incubator.address
    )
    try:
        async with asyncio.timeout(30):
            await answered.wait()  # the watch reads the incubator …
            await sim.stop()  # … and then it is gone
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode() + err.decode()
    assert proc.returncode == 0, text
    assert "chamber_temperature" in text
    for noise in NOISE:
        assert noise not in text, text


async def test_the_daemon_names_the_device_once_during_an_outage(
    modbus_incubator: ModbusSim, tmp_path: Path
) -> None:
    config = tmp_path / "daemon.toml"
    config.write_text(
        f'site = "outage"\n[store]\npath = "{tmp_path / "lab.db"}"\n'
        f'[devices.incubator]\nprofile = "co2-incubator"\n'
        f'address = "{modbus_incubator.address}"\npoll_interval_s = 0.2\n'
    )
    proc = await _spawn("daemon", "-c", str(config))
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(60):
            assert b"labdevices daemon ready" in await proc.stdout.readline()
            await modbus_incubator.sim.answered.wait()
            await modbus_incubator.sim.stop()
            while not any("WARNING" in line for line in lines):
                raw = await proc.stderr.readline()
                assert raw, "".join(lines)
                lines.append(raw.decode())
            proc.send_signal(signal.SIGTERM)
            rest = await proc.stderr.read()
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = "".join(lines) + rest.decode()
    for noise in NOISE:
        assert noise not in text, text
    assert "incubator: incubator:" not in text, text
    warned = [line for line in text.splitlines() if "WARNING" in line]
    assert warned and all("incubator: " in line for line in warned), text


def test_library_lines_lose_frames_and_tracebacks_but_not_with_debug() -> None:
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    def log_like_the_libraries(debug: bool) -> None:
        configure_logging(debug=debug)
        records.clear()
        handler = Keep()
        handler.addFilter(one_voice(debug))
        logger = logging.getLogger("pymodbus.logging")
        root = logging.getLogger()
        root.addHandler(handler)
        token = current_device.set("incubator")
        try:
            logger.error("No response received\n>>>>> send: 0x0 0x6 0x0 0x0")
            logger.error("Repeating....")
            try:
                raise TimeoutError("no answer")
            except TimeoutError:
                logging.getLogger("asyncua.client.ua_session").exception(
                    "Publish iteration crashed"
                )
        finally:
            current_device.reset(token)
            root.removeHandler(handler)

    try:
        log_like_the_libraries(debug=False)
        assert records == [
            "incubator: No response received [pymodbus]",
            "incubator: Publish iteration crashed (TimeoutError: no answer) [asyncua]",
        ]
        log_like_the_libraries(debug=True)
        assert ">>>>> send" in records[0] and "Traceback" in records[-1]
    finally:
        root = logging.getLogger()
        for h in list(root.handlers):
            if h.get_name() == "labdevices":
                root.removeHandler(h)
        root.setLevel(logging.WARNING)

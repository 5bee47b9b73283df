"""``labdevices read`` / ``watch`` / ``sim`` against running simulators, as a user runs them."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from labdevices.testing._modbus import ModbusSim

ROOT = Path(__file__).resolve().parents[2]


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "labdevices",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"COLUMNS": "200", "PATH": ""},
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_read_prints_one_snapshot(modbus_incubator: ModbusSim) -> None:
    code, out, err = await run_cli("read", "--profile", "co2-incubator", modbus_incubator.address)
    assert code == 0, err
    for signal in modbus_incubator.profile.signals:
        assert signal in out
    assert "good" in out and "degC" in out


async def test_watch_rtu_bioreactor_for_a_while(modbus_bioreactor: ModbusSim) -> None:
    code, out, err = await run_cli(
        "watch",
        "--profile",
        "stirred-tank-bioreactor",
        "--duration",
        "0.5",
        modbus_bioreactor.address,
    )
    assert code == 0, err
    assert "dissolved_oxygen" in out and "pH" in out


async def test_read_unreachable_device_is_one_clear_error(modbus_incubator: ModbusSim) -> None:
    port = modbus_incubator.sim.port
    await modbus_incubator.sim.stop()
    code, _out, err = await run_cli("read", "-p", "co2-incubator", f"tcp://127.0.0.1:{port}")
    assert code == 2
    assert "error:" in err and "co2-incubator: cannot connect to tcp://127.0.0.1" in err
    assert "Traceback" not in err


async def test_sim_incubator_prints_where_it_listens() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "labdevices",
        "sim",
        "incubator",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            line = (await proc.stdout.readline()).decode()
        assert line.startswith("incubator listening on tcp://127.0.0.1:")
        address = line.split(" on ", 1)[1].strip()
        code, out, err = await run_cli("read", "-p", "co2-incubator", address)
        assert code == 0, err
        assert "chamber_temperature" in out
    finally:
        proc.terminate()
        async with asyncio.timeout(30):
            await proc.wait()


async def test_read_from_an_http_server_fails(tmp_path: Path) -> None:
    """An HTTP server where a Modbus device should be: a table of bad rows, and exit code 2."""
    profile = tmp_path / "incubator.toml"
    text = (ROOT / "drivers" / "co2-incubator.toml").read_text()
    profile.write_text(text.replace("timeout_s = 1.0", "timeout_s = 0.2"))
    with _http_server() as port:
        code, out, err = await run_cli("read", "-p", str(profile), f"tcp://127.0.0.1:{port}")
    assert code == 2, out + err
    assert "chamber_temperature" in out and "bad" in out and "good" not in out
    assert "error:" in err and "none of its 15 signals could be read" in err
    assert "no answer within 0.2 s" in err
    assert "0x" not in out + err  # no pymodbus hex dumps
    assert "Traceback" not in err


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def _http_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _QuietHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="http-server")
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

"""Finding the daemon: its runtime file, then $LABDEVICES_BROKER, then --broker; a clear error
within 5 s naming the three ways when no daemon answers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from labdevices.cli._reach import DEFAULT_BROKER, resolve_target
from labdevices.daemon import find_daemons, write_runtime_file
from labdevices.daemon._runtime import runtime_file
from labdevices.sim.printer import SimPrinterConfig, SimulatedPrinter
from labdevices.testing._auth import TEST_PASSWORD, add_test_user, issue_session
from labdevices.testing._mqtt import MosquittoBroker

from .test_cli import _cli

THREE_WAYS = ("labdevices daemon -c CONFIG", "LABDEVICES_BROKER=", "--broker")


async def start_daemon(config: Path) -> tuple[asyncio.subprocess.Process, str]:
    """``labdevices daemon -c CONFIG`` in a subprocess; returns it and its ready line."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "labdevices",
        "daemon",
        "-c",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
    )
    assert proc.stdout is not None
    seen = []
    async with asyncio.timeout(60):
        while True:
            raw = await proc.stdout.readline()
            assert raw, f"the daemon ended before it was ready: {b''.join(seen)!r}"
            seen.append(raw)
            if raw.startswith(b"labdevices daemon ready"):
                return proc, raw.decode()


async def stop_daemon(proc: asyncio.subprocess.Process) -> str:
    """SIGTERM, then whatever it printed until it ended."""
    assert proc.stdout is not None
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    out = await asyncio.wait_for(proc.stdout.read(), 30)
    await asyncio.wait_for(proc.wait(), 30)
    return out.decode(errors="replace")


async def test_commands_find_a_daemon_with_an_embedded_broker_without_flags(
    site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    add_test_user(db, "dave", ["operator"], password=TEST_PASSWORD)
    home = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim:
        config = tmp_path / "daemon.toml"
        config.write_text(
            f'site = "{site}"\n[store]\npath = "{db}"\n'
            f'[devices.printer]\nprofile = "marlin-pneumatic"\naddress = "{sim.port}"\n'
        )
        proc, ready = await start_daemon(config)
        try:
            announced = find_daemons()
            assert [(d.site, d.pid) for d in announced] == [(site, proc.pid)]
            # the embedded broker's port is random, and no secret is in the file
            assert announced[0].broker.startswith("mqtt://127.0.0.1:")
            assert announced[0].broker in ready and "@" not in announced[0].broker
            assert announced[0].path == runtime_file(site, "daemon")  # the config's name
            assert oct(announced[0].path.stat().st_mode & 0o777) == oct(0o600)
            code, out = await _cli("login", "--user", "dave", stdin=TEST_PASSWORD + "\n", env=home)
            assert code == 0 and f"logged in as dave (operator) on site '{site}'" in out, out
            code, out = await _cli("whoami", env=home)
            assert code == 0 and "dave (Dave), roles operator" in out, out
        finally:
            tail = await stop_daemon(proc)
        assert "labdevices daemon stopped" in tail, tail
    # gone with the daemon: a command now says there is none, and how to point it at one
    assert find_daemons() == [] and not runtime_file(site, "daemon").exists()
    # a command gives up rather than hang (its budget is REACH_BUDGET_S; the bound here
    # only catches a hang, as timings belong in benchmarks/)
    code, out = await _cli("whoami", "--site", site, env=home, timeout=30)
    assert code == 2, out
    # (whether something listens on the default port of this machine or not)
    assert "no daemon" in out and f"{DEFAULT_BROKER} (the default" in out, out
    flat = " ".join(out.split())
    assert all(way in flat for way in THREE_WAYS), out
    assert str(runtime_file(site, "*")) in flat, out


async def test_a_broker_without_a_daemon_is_named(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    session = tmp_path / "session.json"
    issue_session(tmp_path / "lab.db", "dave", site=site).save(session)
    code, out = await _cli(
        "alarms",
        "--broker",
        mqtt_broker.url,
        "--site",
        site,
        "--session-file",
        str(session),
        timeout=30,
    )
    flat = " ".join(out.split())
    assert code == 2, out
    assert f"no daemon of site '{site}' at {mqtt_broker.url} (from --broker)" in flat, out
    assert all(way in flat for way in THREE_WAYS), out


async def test_the_broker_comes_from_the_flag_then_the_environment_then_the_runtime_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("LABDEVICES_BROKER", raising=False)
    assert resolve_target(None, None).source == "default"
    path = write_runtime_file("mqtt://labdevices:s3cret@127.0.0.1:40111", "north")
    assert "s3cret" not in path.read_text()
    found = resolve_target(None, None)
    assert (found.broker, found.site, found.source) == (
        "mqtt://127.0.0.1:40111",
        "north",
        str(path),
    )
    # the environment, then the flag, win over the file (typer fills the option from either)
    monkeypatch.setenv("LABDEVICES_BROKER", "mqtt://10.0.0.7:1883")
    env = resolve_target("mqtt://10.0.0.7:1883", None)
    assert (env.source, env.site) == ("$LABDEVICES_BROKER", "demo")
    flag = resolve_target("mqtt://127.0.0.1:40111", None)
    assert (flag.source, flag.site) == ("--broker", "north")
    # a file left by a daemon that died is ignored
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await proc.wait()
    stale = runtime_file("south")
    stale.write_text(json.dumps({"broker": "mqtt://127.0.0.1:1", "site": "south", "pid": proc.pid}))
    assert [d.site for d in find_daemons()] == ["north"]
    assert resolve_target(None, "south").source == "default"

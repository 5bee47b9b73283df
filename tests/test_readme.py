"""The README runs as written: its daemon section, command by command, on a copy of a fresh
clone (the daemon found without flags), and its client snippet as a script."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
from pathlib import Path

from labdevices.testing._auth import TEST_PASSWORD

ROOT = Path(__file__).resolve().parents[1]


def _section(title: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


async def _run(cmd: str, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        cmd,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        # passwords, as a person would type them when asked (at most three per command)
        async with asyncio.timeout(180):
            out, _ = await proc.communicate(f"{TEST_PASSWORD}\n".encode() * 3)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def test_the_daemon_section_and_the_client_snippet_run_as_written(tmp_path: Path) -> None:
    section = _section("Running the daemon against a lab")
    [commands] = _blocks(section, "sh")
    [snippet] = _blocks(section, "python")
    clone = tmp_path / "clone"
    for folder in ("config", "examples"):
        shutil.copytree(ROOT / folder, clone / folder, ignore=shutil.ignore_patterns("*.db*"))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "XDG_CONFIG_HOME": str(tmp_path / "home-config"),
        "COLUMNS": "120",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("LABDEVICES_BROKER", None)
    env.pop("LABDEVICES_SITE", None)
    prefix = ""
    daemon: asyncio.subprocess.Process | None = None
    outputs: dict[str, str] = {}
    try:
        for line in commands.splitlines():
            cmd = line.split("  #", 1)[0].strip()
            if not cmd:
                continue
            if re.fullmatch(r"\w+=\S+", cmd):
                prefix += f"{cmd}; "
                continue
            if cmd.endswith("&"):  # the daemon, in the background
                daemon = await asyncio.create_subprocess_exec(
                    "bash",
                    "-c",
                    f"{prefix}exec {cmd.removesuffix('&').strip()}",
                    cwd=clone,
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                )
                assert daemon.stdout is not None
                async with asyncio.timeout(120):
                    while True:
                        raw = await daemon.stdout.readline()
                        assert raw, "the daemon ended before it was ready"
                        if raw.startswith(b"labdevices daemon ready"):
                            break
                continue
            if cmd == "kill %1":
                # the client snippet first, while the daemon runs
                script = tmp_path / "snippet.py"
                script.write_text(snippet)
                code, out = await _run(f"{sys.executable} {script}", clone, env)
                assert code == 0, out
                assert "Reading(device='incubator', signal='chamber_temperature'" in out, out
                assert "state='completed'" in out, out
                assert daemon is not None
                daemon.send_signal(signal.SIGTERM)
                async with asyncio.timeout(60):
                    tail = (await daemon.communicate())[0].decode(errors="replace")
                assert daemon.returncode == 0 and "labdevices daemon stopped" in tail, tail
                continue
            code, out = await _run(prefix + cmd, clone, env)
            assert code == 0, f"{cmd}\n{out}"
            outputs[cmd.split()[1]] = out
    finally:
        if daemon is not None and daemon.returncode is None:
            daemon.kill()
            await daemon.wait()
    assert "logged in as alice (operator) on site 'demo'" in outputs["login"]
    assert "printer" in outputs["status"] and "incubator" in outputs["status"]
    assert "completed" in outputs["submit"] and "DEMO-0001" in outputs["submit"]
    assert "verified" in outputs["audit"]

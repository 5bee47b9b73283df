"""``labdevices sim sensorhub`` as a user runs it: prints the endpoint, serves the profile."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

from asyncua import Client


async def test_sim_sensorhub_prints_a_working_endpoint() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "labdevices",
        "sim",
        "sensorhub",
        "--seed",
        "3",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"COLUMNS": "200", "PATH": ""},
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(60):
            line = (await proc.stdout.readline()).decode()
        match = re.search(r"listening at (opc\.tcp://\S+)", line)
        assert match, line
        async with Client(match.group(1), timeout=5) as client:
            ns = await client.get_namespace_index("urn:labdevices:sensor-hub")
            ph = await client.get_node(f"ns={ns};s=SensorHub.pH").read_value()
            assert 6.0 < ph < 8.0
    finally:
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            await proc.communicate()
    assert proc.returncode == 0

"""``labdevices sim sensorhub`` as a user runs it: prints the endpoint, serves the profile."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import pytest
from asyncua import Client

from labdevices.devices.opcua import OpcUaDevice
from labdevices.errors import DeviceConnectionError
from labdevices.profiles import OpcUaProfile, load_profile
from labdevices.sim._opcua_certs import CertificateFiles, write_certificate


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


async def test_sim_sensorhub_secure_trusts_the_certificates_given(tmp_path: Path) -> None:
    trusted = write_certificate(tmp_path, "trusted", "urn:labdevices:test:trusted")
    stranger = write_certificate(tmp_path, "stranger", "urn:labdevices:test:stranger")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "labdevices", "sim", "sensorhub", "--secure",
        "--trust", str(trusted.certificate),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"COLUMNS": "200", "PATH": ""},
    )  # fmt: skip
    assert proc.stdout is not None
    profile = load_profile("opcua-sensor-hub")
    assert isinstance(profile, OpcUaProfile)

    def device(cert: CertificateFiles) -> OpcUaDevice:
        return OpcUaDevice(
            "hub",
            profile,
            endpoint,
            policy="Basic256Sha256",
            mode="Sign",
            certificate=str(cert.certificate),
            private_key=str(cert.private_key),
        )

    try:
        async with asyncio.timeout(60):
            line = (await proc.stdout.readline()).decode()
            match = re.search(r"listening at (opc\.tcp://\S+)", line)
            assert match, line
            endpoint = match.group(1)
            lines = [(await proc.stdout.readline()).decode() for _ in range(2)]
        assert "trusted client certificates: 1" in lines[1]
        async with device(trusted) as dev:
            assert (await dev.read("ph")).quality == "good"
        with pytest.raises(DeviceConnectionError, match=r"BadCertificateUntrusted"):
            async with device(stranger):
                pass
    finally:
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            await proc.communicate()
    assert proc.returncode == 0

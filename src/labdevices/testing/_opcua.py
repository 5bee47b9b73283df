"""Fixtures that start a simulated OPC UA sensor hub on a free port, plain or secured.

- ``opcua_sensor_hub``: a hub on the test's own event loop (function scope), for
  tests that stop, restart or otherwise disturb it.
- ``opcua_sensor_hub_shared``: one hub per test module, on its own thread and
  event loop (``SensorHubThread``), so any test — async or not — can talk to it
  without paying for a server start each time.
- ``opcua_secure_sensor_hub``: a module-wide hub offering only Basic256Sha256
  Sign and SignAndEncrypt endpoints and a user login, with a client certificate
  generated for the test run and on the hub's trust list (``SecureSensorHub`` has
  every path and secret).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ._asyncio import async_fixture

if TYPE_CHECKING:
    # asyncua is imported when a fixture is used, not when pytest loads the plugin.
    from ..sim._opcua_hub import OpcUaSensorHub, SensorHubThread

__all__ = [
    "SecureSensorHub",
    "opcua_secure_sensor_hub",
    "opcua_sensor_hub",
    "opcua_sensor_hub_shared",
]

#: simulated seconds per wall second in the fixtures: an hour of culture per second
FIXTURE_TIME_SCALE = 3600.0


@async_fixture
async def opcua_sensor_hub() -> AsyncIterator[OpcUaSensorHub]:
    """A simulated sensor hub (profile ``opcua-sensor-hub``) at ``hub.endpoint``, security None."""
    from ..sim._opcua_hub import OpcUaSensorHub

    async with OpcUaSensorHub(seed=0, time_scale=FIXTURE_TIME_SCALE) as hub:
        yield hub


@pytest.fixture(scope="module")
def opcua_sensor_hub_shared() -> Iterator[SensorHubThread]:
    """One hub per module on its own thread; ``.endpoint``, ``.hub``, ``await .acall(fn)``."""
    from ..sim._opcua_hub import OpcUaSensorHub, SensorHubThread

    with SensorHubThread(lambda: OpcUaSensorHub(seed=0, time_scale=FIXTURE_TIME_SCALE)) as t:
        yield t


@dataclass(frozen=True)
class SecureSensorHub:
    """A secured hub and what a client needs to log in to it."""

    thread: SensorHubThread
    endpoint: str
    certificate: Path
    private_key: Path
    server_certificate: Path
    username: str
    password: str

    @property
    def hub(self) -> OpcUaSensorHub:
        return self.thread.hub


@pytest.fixture(scope="module")
def opcua_secure_sensor_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureSensorHub]:
    """A hub with Basic256Sha256 Sign / SignAndEncrypt only, user ``operator``, no anonymous login."""
    from ..sim._opcua_certs import write_certificate
    from ..sim._opcua_hub import OpcUaSensorHub, SensorHubThread

    folder = tmp_path_factory.mktemp("opcua-pki")
    client = write_certificate(folder, "client", "urn:labdevices:test-client")
    password = secrets.token_urlsafe(12)

    def make() -> OpcUaSensorHub:
        return OpcUaSensorHub(
            seed=1,
            time_scale=FIXTURE_TIME_SCALE,
            security=("Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"),
            users={"operator": password},
            trusted_certificates=[client.certificate],
        )

    with SensorHubThread(make) as thread:
        server_cert = folder / "server.der"
        assert thread.hub.server_certificate_der is not None
        server_cert.write_bytes(thread.hub.server_certificate_der)
        yield SecureSensorHub(
            thread=thread,
            endpoint=thread.endpoint,
            certificate=client.certificate,
            private_key=client.private_key,
            server_certificate=server_cert,
            username="operator",
            password=password,
        )

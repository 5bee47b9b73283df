"""Fixtures of the site tests: several daemons sharing one broker and one store.

The store's location comes from ``site_store`` alone, so that the PostgreSQL store can be
added by parametrising that one fixture.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labdevices.daemon import (
    BusConfig,
    DaemonConfig,
    DeviceConfig,
    LoadedConfig,
    StoreConfig,
    check_config,
)
from labdevices.testing._mqtt import MosquittoBroker

from ..daemon.conftest import site

__all__ = ["room", "site"]

#: short leases (a crashed daemon's run out within a test), long enough for a loaded machine
LEASE_S = 3.0


@pytest.fixture
def site_store(tmp_path: Path) -> Path:
    """The one store every daemon of the test's site writes to (SQLite, WAL)."""
    return tmp_path / "site.db"


def room(
    site: str,
    broker: MosquittoBroker,
    store: Path,
    daemon: str,
    printers: dict[str, str],
) -> LoadedConfig:
    """A daemon of ``site`` named ``daemon`` with the given printers (name → address)."""
    config = DaemonConfig(
        site=site,
        daemon=daemon,
        devices={
            name: DeviceConfig(profile="marlin-pneumatic", address=address, poll_interval_s=0.2)
            for name, address in printers.items()
        },
        bus=BusConfig(url=broker.url, client_id=f"daemon-{site}-{daemon}"),
        store=StoreConfig(path=store, flush_interval_s=0.1),
        device_retry_min_s=0.05,
        device_retry_max_s=0.5,
    )
    return check_config(config, f"{daemon}.toml")

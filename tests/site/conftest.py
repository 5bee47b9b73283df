"""Fixtures of the site tests: several daemons sharing one broker and one store.

The store's location comes from ``site_store`` alone: every test runs on an SQLite file
and on a PostgreSQL database (the store several daemons of a site share in production).
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

__all__ = ["Location", "room", "site"]

#: short leases (a crashed daemon's run out within a test), long enough for a loaded machine
LEASE_S = 3.0


#: a store's location: an SQLite file's path or a PostgreSQL URL
Location = str | Path


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PostgreSQL store's default key and witness live in the data folder: the test's own."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


@pytest.fixture(params=["sqlite", "postgresql"])
def site_store(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    """The one store every daemon of the test's site writes to: an SQLite file (WAL) or a
    fresh PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "site.db"
    return str(request.getfixturevalue("postgres_url"))


def room(
    site: str,
    broker: MosquittoBroker,
    store: Location,
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
        store=(
            StoreConfig(url=store, flush_interval_s=0.1)
            if isinstance(store, str)
            else StoreConfig(path=store, flush_interval_s=0.1)
        ),
        device_retry_min_s=0.05,
        device_retry_max_s=0.5,
    )
    return check_config(config, f"{daemon}.toml")

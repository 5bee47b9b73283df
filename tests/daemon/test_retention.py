"""The daemon runs telemetry retention on its own; a bad [retention] section is refused clearly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from labdevices.daemon import Daemon, RetentionConfig, StoreConfig, load_config
from labdevices.devices import Sample
from labdevices.errors import ConfigurationError
from labdevices.sim.printer import SimPrinterConfig, SimulatedPrinter
from labdevices.store import (
    RetentionPolicy,
    StoreError,
    default_key_path,
    default_witness_path,
    load_public_key,
    run_retention,
    verify_store,
)
from labdevices.testing._mqtt import MosquittoBroker

from .conftest import deadline, make_config


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_the_daemon_rolls_up_old_telemetry_while_it_runs(
    mqtt_broker: MosquittoBroker,
    site: str,
    tmp_path: Path,
    backend: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # a URL store's key goes there
    db: Path | str = tmp_path / "lab.db"
    if backend == "postgresql":
        db = str(request.getfixturevalue("postgres_url"))
    async with deadline(60), SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim:
        assert sim.port is not None
        loaded = make_config(site, mqtt_broker, tmp_path / "lab.db", sim.port)
        if isinstance(db, str):
            store = StoreConfig(url=db, flush_interval_s=0.1)
            loaded.config = loaded.config.model_copy(update={"store": store})
        # raw samples kept ~1 minute, retention every 50 ms
        loaded.config = loaded.config.model_copy(
            update={"retention": RetentionConfig(raw_days=1 / 1440, interval_minutes=1 / 1200)}
        )
        async with Daemon(loaded) as daemon:
            old = time.time() // 60 * 60 - 3600  # the start of a minute an hour ago
            await daemon.store.insert_telemetry(
                [
                    Sample("printer", "nozzle_temp", 20 + i / 10, "degC", t=old + i)
                    for i in range(300)
                ]
            )
            await daemon.store.checkpoint()
            while daemon.last_retention is None or daemon.last_retention.samples == 0:
                daemon.retention_ran.clear()
                await daemon.retention_ran.wait()
            done = daemon.last_retention
            assert done.samples == 300 and done.rollups == 5 and done.archive is not None
            points = await daemon.store.query_telemetry("printer", "nozzle_temp", end=old + 400)
            assert [p.quality for p in points] == ["rollup"] * 5
    key = default_key_path(db)
    public = load_public_key(key.with_name(key.name + ".pub"))
    report = verify_store(db, public_key=public, witness=default_witness_path(db))
    assert report.problems == [] and report.exit_code == 0
    # the archive: an SQLite file beside the key (for a URL, in the data folder)
    assert Path(done.archive).parent == key.with_name(key.name.removesuffix(".key") + ".archive")
    assert verify_store(done.archive, public_key=public, archive=True).ok


def test_a_bad_retention_section_names_every_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        """
site = "lab"
[devices.incubator]
profile = "co2-incubator"
address = "tcp://127.0.0.1:1502"
[retention]
raw_days = 0
interval_minutes = -1
[retention.devices]
freezer = 30
incubator = 0
[retention.signals]
"incubator/door_open" = 90
"incubator/ph" = 90
"nodevice" = 3
"""
    )
    with pytest.raises(ConfigurationError) as caught:
        load_config(path)
    text = "\n".join(caught.value.problems)
    assert "retention.raw_days" in text and "greater than 0" in text
    assert "retention.interval_minutes" in text
    assert "retention.devices: Value error, incubator: days must be > 0" in text
    # the cross-checks run once the section validates
    path.write_text(path.read_text().replace("raw_days = 0", "raw_days = 30").replace(
        "interval_minutes = -1", "").replace("incubator = 0", "incubator = 60"))  # fmt: skip
    with pytest.raises(ConfigurationError) as caught:
        load_config(path)
    text = "\n".join(caught.value.problems)
    assert "retention.devices.freezer: unknown device 'freezer' (devices: incubator)" in text
    assert "retention.signals.\"incubator/ph\": device 'incubator' has no signal 'ph'" in text
    assert 'retention.signals."nodevice": name a signal as "device/signal"' in text
    assert '"incubator/door_open"' not in text


def test_retention_on_a_postgresql_store_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(
        """
site = "lab"
[store]
url = "postgresql://lab@db.example/site"
[devices.incubator]
profile = "co2-incubator"
address = "tcp://127.0.0.1:1502"
[retention]
raw_days = 30
"""
    )
    loaded = load_config(path)
    assert loaded.config.retention is not None and loaded.config.retention.raw_days == 30
    # an unreachable server: the run fails naming the store, its password hidden
    with pytest.raises(StoreError, match=r"postgresql://lab:\*\*\*@127\.0\.0\.1:1/site") as caught:
        run_retention("postgresql://lab:secret@127.0.0.1:1/site", RetentionPolicy(raw_days=30))
    assert "secret" not in str(caught.value)

"""Fixtures of the daemon tests: a real Mosquitto, a simulated printer, daemon configs and jobs."""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from labdevices.daemon import (
    BusConfig,
    DaemonConfig,
    DeviceConfig,
    InterlockConfig,
    LoadedConfig,
    StoreConfig,
    check_config,
)
from labdevices.testing._mqtt import MosquittoBroker
from labdevices.toolpath import load_job

__all__ = [
    "deadline",
    "long_job",
    "make_config",
    "scaffold_spec",
    "site",
]

ROOT = Path(__file__).resolve().parents[2]
#: what the driver itself sends beside a job's lines (handshake, reports)
DRIVER_COMMANDS = {"M105", "M110", "M115", "M155"}


@pytest.fixture
def site() -> str:
    """A site per test, so retained messages of other tests stay out of its topics."""
    return f"lab-{uuid.uuid4().hex[:8]}"


def make_config(
    site: str,
    broker: MosquittoBroker | None,
    db: Path,
    printer: str,
    *,
    interlocks: list[InterlockConfig] = (),  # type: ignore[assignment]
    poll_interval_s: float = 0.2,
    **devices: DeviceConfig,
) -> LoadedConfig:
    config = DaemonConfig(
        site=site,
        devices={
            "printer": DeviceConfig(
                profile="marlin-pneumatic", address=printer, poll_interval_s=poll_interval_s
            ),
            **devices,
        },
        bus=BusConfig(url=broker.url if broker else None, client_id=f"daemon-{site}"),
        store=StoreConfig(path=db, flush_interval_s=0.1),
        interlocks=list(interlocks),
        device_retry_min_s=0.05,
        device_retry_max_s=0.5,
    )
    return check_config(config, "test-config")


def scaffold_spec(layers: int = 2) -> dict[str, Any]:
    """The example scaffold job, for the pneumatic Marlin printer the tests simulate."""
    spec = load_job(ROOT / "examples" / "jobs" / "scaffold.toml").model_dump(mode="json")
    spec["printer"] = "marlin-pneumatic"
    spec["object"]["layers"] = layers
    return spec


def long_job(moves: int = 400) -> str:
    """G-code that keeps a simulated printer busy for a while: short moves back and forth."""
    return "\n".join(["G28", *(f"G1 X{10 + 10 * (i % 2)} Y10 F600" for i in range(moves))])


@contextlib.asynccontextmanager
async def deadline(seconds: float) -> AsyncIterator[None]:
    """Fail (showing where every task waits) instead of hanging, if the block takes too long."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        out = io.StringIO()
        for task in asyncio.all_tasks():
            task.print_stack(file=out)
        pytest.fail(f"timed out after {seconds} s; tasks:\n{out.getvalue()}")


def job_lines(executed: list[str]) -> list[str]:
    """What a simulated printer executed, without the driver's own commands."""
    return [c for c in executed if c.split()[0] not in DRIVER_COMMANDS]

"""``jobs/submit`` refuses what ``labdevices print`` refuses: one loader, one set of checks (issue #10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labdevices.client import LabClient
from labdevices.daemon import Daemon
from labdevices.errors import JobRejected
from labdevices.sim.printer import SimPrinterConfig, SimulatedPrinter
from labdevices.testing._auth import issue_session
from labdevices.testing._mqtt import MosquittoBroker

from .conftest import make_config


async def test_submit_refuses_harmful_jobs_with_line_numbers(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.0)) as sim:
        assert sim.port is not None
        async with (
            Daemon(make_config(site, mqtt_broker, db, sim.port)) as daemon,
            LabClient(
                mqtt_broker.url, site=site, session=issue_session(db, "alice", site=site)
            ) as lab,
        ):
            await daemon.slots["printer"].wait_ready()
            with pytest.raises(JobRejected) as forbidden:
                await lab.submit(printer="printer", gcode="G28\nG1 X10\nM112\nM0 wait\n")
            assert "line 3: M112 may not be in a job" in str(forbidden.value)
            assert "line 4: M0 waits for an operator" in str(forbidden.value)
            with pytest.raises(JobRejected, match=r"line 2: X = -200 mm is outside"):
                await lab.submit(printer="printer", gcode="G28\nG1 X-200\nG1 X300\n")
            with pytest.raises(JobRejected, match=r"planned for printer profile 'cellink-biox'"):
                await lab.submit(
                    printer="printer", gcode="; printer profile: cellink-biox\nG28\nM750 T0\n"
                )
            with pytest.raises(JobRejected, match=r"control byte 0x00"):
                await lab.submit(printer="printer", gcode="G28\nG1 X1\x00\n")
            with pytest.raises(JobRejected, match=r"no G-code commands"):
                await lab.submit(printer="printer", gcode="; nothing\n")
            assert await lab.jobs() == []
        assert not [c for c in sim.executed if c.startswith(("G1", "M112"))]

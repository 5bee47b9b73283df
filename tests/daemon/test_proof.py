"""The daemon signs its audit chain: a checkpoint at every job end, published retained on the bus,
copied by a separate witness; the store verifies against the public key and that witness."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

import labdevices.cli._proof  # noqa: F401  (registers the commands)
from labdevices.cli import app
from labdevices.cli._proof import run_witness
from labdevices.client import JobInfo, LabClient
from labdevices.daemon import Daemon
from labdevices.sim.printer import SimPrinterConfig, SimulatedPrinter
from labdevices.store import CheckpointSigner, SqliteDatabase, load_verifier
from labdevices.testing._auth import issue_session
from labdevices.testing._mqtt import MosquittoBroker

from .conftest import deadline, make_config

runner = CliRunner()


async def test_job_end_is_checkpointed_published_and_witnessed(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    db = tmp_path / "lab.db"
    witness_file = tmp_path / "witness-host" / "checkpoints.jsonl"
    seen: list[tuple[int, int]] = []
    grew = asyncio.Event()

    def accepted(number: int, size: int) -> None:
        seen.append((number, size))
        grew.set()

    async with deadline(60), SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim:
        assert sim.port is not None
        async with Daemon(make_config(site, mqtt_broker, db, sim.port)) as daemon:
            public = load_verifier(tmp_path / "lab.db.key.pub")
            stop = asyncio.Event()
            ignored: asyncio.Queue[str] = asyncio.Queue()
            witness = asyncio.create_task(
                run_witness(
                    mqtt_broker.url,
                    site,
                    witness_file,
                    public,
                    on_accept=accepted,
                    on_ignored=ignored.put_nowait,
                    stop=stop,
                )
            )
            try:
                await grew.wait()  # the retained "open" checkpoint
                # A checkpoint signed by another key, published by someone on the broker:
                # ignored (not copied), and the witness keeps going.
                mallory = CheckpointSigner(Ed25519PrivateKey.generate(), f"labdevices/{site}")
                forged = mallory.sign(
                    size=10**6, head="ab" * 32, time="t", prev="0" * 64, state="running"
                )
                await daemon.bus.publish(
                    daemon.bus.topics.audit_checkpoint(), {"n": 99, "note": forged.note}
                )
                assert "not signed by the given key" in await ignored.get()
                session = issue_session(db, "alice", site=site)
                async with LabClient(mqtt_broker.url, site=site, session=session) as lab:
                    info = None
                    async with contextlib.aclosing(
                        lab.run(printer="printer", gcode="G28\nG1 X10 Y10 F600\nM400\n")
                    ) as stream:
                        async for item in stream:
                            if isinstance(item, JobInfo):
                                info = item
                    assert info is not None
                    final = await lab.job(info.job_id)
                assert final.state == "completed"
                ended = max(
                    r.seq for r in await daemon.store.audit_records(object=f"job/{info.job_id}")
                )
                while not seen or seen[-1][1] < ended:  # the job's end reaches the witness
                    grew.clear()
                    await grew.wait()
            finally:
                stop.set()
                await witness
    # The daemon closed its store with a final checkpoint; the witness copy (another machine's)
    # and the public key (from the validation file) prove the whole record.
    key = tmp_path / "validated.pub"
    shutil.copy(tmp_path / "lab.db.key.pub", key)
    result = runner.invoke(
        app, ["audit", "verify", "--db", str(db), "--key", str(key), "--witness", str(witness_file)]
    )
    assert result.exit_code == 0, result.output
    assert "not yet anchored" not in result.output
    with SqliteDatabase(db, readonly=True) as store:
        states = [cp.state for _, cp in store.checkpoints()]
    assert states[0] == "open" and states[-1] == "closed"
    assert 99 not in {n for n, _ in seen}


def test_audit_witness_refuses_a_fork_loudly(
    mqtt_broker: MosquittoBroker, site: str, tmp_path: Path
) -> None:
    """The witness holds checkpoint 2; the broker then offers another checkpoint 2 signed by the
    same key (the log was rewritten and re-signed by whoever holds the key): exit 1, not copied."""
    from labdevices.bus import BusClient, Topics
    from labdevices.store import WitnessLog, load_or_create_signing_key

    signer = CheckpointSigner(load_or_create_signing_key(tmp_path / "d.key"), f"labdevices/{site}")
    one = signer.sign(size=1, head="aa" * 32, time="t1", prev="0" * 64, state="open")
    two = signer.sign(size=5, head="bb" * 32, time="t2", prev=one.sha256, state="running")
    other = signer.sign(size=5, head="cc" * 32, time="t2", prev=one.sha256, state="running")
    out = tmp_path / "witness.jsonl"
    held = WitnessLog(out, signer.public)
    held.accept(1, one.note)
    held.accept(2, two.note)

    async def offer() -> None:
        host, port = mqtt_broker.url.removeprefix("mqtt://").split(":")
        async with BusClient(host, int(port), site=site) as bus:
            await bus.publish(
                Topics(site).audit_checkpoint(), {"n": 2, "note": other.note}, retain=True
            )

    asyncio.run(offer())
    result = runner.invoke(
        app,
        [
            "audit",
            "witness",
            "--broker",
            mqtt_broker.url,
            "--site",
            site,
            "--key",
            signer.verifier_key,
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 1, result.output
    assert "REFUSED" in result.output and "FORK: checkpoint 2" in result.output
    assert [n for n, _ in WitnessLog(out, signer.public).held.items()] == [1, 2]
    assert WitnessLog(out, signer.public).held[2] == two.note

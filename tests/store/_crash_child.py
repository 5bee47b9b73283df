"""Child process for the crash test: writes jobs and audit records forever, reporting each commit.

Arguments: the store (file or URL), its witness file, and optionally a key file: with one it
signs checkpoints as the daemon does. Every line on
stdout is JSON, printed only after the write it describes has
returned, i.e. was committed. The parent SIGKILLs this process at some point.
"""

from __future__ import annotations

import asyncio
import json
import sys

from labdevices.store import CheckpointSigner, load_or_create_signing_key, open_store


def report(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def main(db: str, witness: str, key: str | None) -> None:
    signer = None
    if key is not None:  # as the daemon: signed checkpoints every 8 records, and a witness file
        signer = CheckpointSigner(load_or_create_signing_key(key), "labdevices/crash")
    async with open_store(db, signer=signer, witness=witness, checkpoint_every_records=8) as store:
        report(kind="ready")
        i = 0
        while True:
            job = await store.create_job(
                "printer1", actor="child", batch_id=f"B{i}", lines_total=100
            )
            report(kind="state", job=job.id, state="queued")
            await store.transition_job(job.id, "running", actor="child")
            report(kind="state", job=job.id, state="running")
            for line in (10, 20, 30):
                await store.record_progress(job.id, line)
                report(kind="line", job=job.id, line=line)
            rec = await store.audit("child", "command", f"printer1/step{i}", new={"i": i})
            report(kind="audit", seq=rec.seq, hash=rec.hash)
            await store.insert_telemetry(
                [
                    _Point("printer1", "head_temp", 37.0 + k / 10, "degC", i + k / 10)
                    for k in range(10)
                ]
            )
            if i % 2:
                await store.transition_job(job.id, "completed", actor="child")
                report(kind="state", job=job.id, state="completed")
            i += 1


class _Point:
    def __init__(self, device: str, signal: str, value: float, unit: str, t: float) -> None:
        self.device, self.signal, self.value, self.unit, self.t = device, signal, value, unit, t
        self.quality = "good"


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))

"""Run one simulated printer in its own process for the streaming benchmark.

argv[1]: SimPrinterConfig as JSON. Prints the pty path, then serves until stdin
closes. ``dump PATH`` writes the executed commands as JSON and answers ``done``;
``events PATH`` writes what the emergency parser acted on (``time.monotonic()``
seconds, word), the clock now and when the planned motion ends, then ``done``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from labdevices.sim.printer import SimPrinterConfig, SimulatedPrinter


async def main() -> None:
    config = SimPrinterConfig.model_validate(json.loads(sys.argv[1]))
    loop = asyncio.get_running_loop()
    async with SimulatedPrinter(config=config) as sim:
        print(sim.port, flush=True)
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            cmd, _, arg = line.strip().partition(" ")
            if cmd == "dump":
                await asyncio.to_thread(Path(arg).write_text, json.dumps(sim.executed))
                print("done", flush=True)
            elif cmd == "events":
                fw = sim.firmware
                assert fw is not None
                state = {
                    "emergency": sim.emergency,
                    "now": loop.time(),  # time.monotonic(): comparable across processes
                    "motion_ends": max(fw._planner_end, loop.time()),
                    "executed": len(sim.executed),
                }
                await asyncio.to_thread(Path(arg).write_text, json.dumps(state))
                print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main())

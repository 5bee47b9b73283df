"""Dashboard benchmark: 50 simulated devices at 10 samples/s each, the daemon serving the web;
first load of the lab page, sample → DOM update latency, and the daemon's CPU with 5 open
dashboards against none, measured side by side in one run.

Three processes as in ``benchmarks/telemetry`` (whose simulated Modbus devices and config this
reuses): the devices, the daemon (``labdevices daemon`` with ``[web]``), and this one, which
drives Debian's Chromium with Playwright. The latency is from each sample's timestamp (taken by
the driver when the reading arrived) to the moment the page's script has written it into the DOM
(``window.labdevicesLatency``, same machine clock).

    .venv/bin/python benchmarks/web/run.py [--devices 50] [--seconds 20] [--dashboards 5]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from playwright.async_api import Browser, Page, async_playwright

from labdevices.testing._auth import TEST_PASSWORD, add_test_user
from labdevices.testing._mqtt import MosquittoBroker

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location(
    "telemetry_bench", HERE.parent / "telemetry" / "run.py"
)
assert _spec is not None and _spec.loader is not None
telemetry = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(telemetry)

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def cpu_share(process: psutil.Process, seconds: float) -> float:
    """The daemon's CPU over ``seconds`` of wall time, in cores."""
    c0, t0 = cpu_seconds(process), time.monotonic()
    await asyncio.sleep(seconds)
    return (cpu_seconds(process) - c0) / (time.monotonic() - t0)


async def open_dashboard(browser: Browser, url: str) -> tuple[Page, float, float]:
    """A logged-in lab page: (page, ms to its load event, ms to the first live value)."""
    context = await browser.new_context(viewport={"width": 1024, "height": 768})
    page = await context.new_page()
    await page.goto(f"{url}login")
    await page.get_by_label("User").fill("bench")
    await page.get_by_label("Password").fill(TEST_PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(url)
    # the first load proper: the lab page again, logged in, as a user's next visit
    t0 = time.perf_counter()
    await page.goto(url, wait_until="load")
    loaded = (time.perf_counter() - t0) * 1000
    await page.wait_for_function("window.labdevicesLatency && window.labdevicesLatency.length > 0")
    first_value = (time.perf_counter() - t0) * 1000
    return page, loaded, first_value


async def measure(process: psutil.Process, url: str, seconds: float, dashboards: int) -> dict:
    idle = await cpu_share(process, seconds)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            opened = [await open_dashboard(browser, url) for _ in range(dashboards)]
            for page, _, _ in opened:
                await page.evaluate("window.labdevicesLatency.length = 0")
            busy = await cpu_share(process, seconds)
            latencies: list[float] = []
            for page, _, _ in opened:
                latencies += await page.evaluate("window.labdevicesLatency")
        finally:
            await browser.close()
    loads = [loaded for _, loaded, _ in opened]
    firsts = [first for _, _, first in opened]
    ms = [x * 1000 for x in latencies]
    return {
        "idle_cores": idle,
        "busy_cores": busy,
        "load_ms": loads,
        "first_value_ms": firsts,
        "updates": len(ms),
        "p50_ms": telemetry.percentile(ms, 0.5),
        "p99_ms": telemetry.percentile(ms, 0.99),
        "max_ms": max(ms) if ms else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--dashboards", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="labdevices-bench-web-") as tmp:
        work = Path(tmp)
        broker = MosquittoBroker(work)
        broker.start()
        sims = subprocess.Popen(
            [
                sys.executable,
                str(HERE.parent / "telemetry" / "run.py"),
                "--serve",
                f"--devices={args.devices}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        daemon = None
        try:
            assert sims.stdout is not None
            ports = json.loads(sims.stdout.readline())
            config = work / "daemon.toml"
            db = work / "bench.db"
            telemetry.write_config(config, broker, ports, db)
            with config.open("a") as f:
                f.write('[web]\nlisten = "127.0.0.1:0"\n')
            add_test_user(db, "bench", ["viewer"], password=TEST_PASSWORD)
            daemon = subprocess.Popen(
                [sys.executable, "-m", "labdevices", "daemon", "-c", str(config)],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            assert daemon.stdout is not None
            ready = daemon.stdout.readline()
            found = re.search(r"dashboard (http://\S+);", ready)
            assert found, ready
            result = asyncio.run(
                measure(psutil.Process(daemon.pid), found.group(1), args.seconds, args.dashboards)
            )
        finally:
            if daemon is not None:
                daemon.terminate()
                daemon.wait(timeout=30)
            assert sims.stdin is not None
            sims.stdin.close()
            sims.wait(timeout=10)
            broker.stop()
    load = os.getloadavg()
    print(f"{os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f}")
    print(f"{args.devices} devices x 10 samples/s, {args.seconds:g} s per phase")
    print(
        "lab page first load (ms, to the load event): "
        + ", ".join(f"{x:.0f}" for x in result["load_ms"])
        + "; to the first live value: "
        + ", ".join(f"{x:.0f}" for x in result["first_value_ms"])
    )
    print(
        f"sample -> DOM: {result['updates']:,} updates in {args.dashboards} dashboards, "
        f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, max {result['max_ms']:.0f} ms"
    )
    print(
        f"daemon CPU: no dashboard {result['idle_cores'] * 100:.0f}% of one core, "
        f"{args.dashboards} dashboards {result['busy_cores'] * 100:.0f}%"
    )


if __name__ == "__main__":
    main()

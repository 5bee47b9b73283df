"""Fixtures of the dashboard tests: the real daemon (with a simulated printer and a real
Mosquitto) serving the web on a free port, users of each role, and Debian's Chromium."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, async_playwright

from labdevices.daemon import (
    BusConfig,
    Daemon,
    DaemonConfig,
    DeviceConfig,
    InterlockConfig,
    StoreConfig,
    WebConfig,
    check_config,
)
from labdevices.sim.printer import SimPrinterConfig, SimulatedPrinter
from labdevices.testing._auth import TEST_PASSWORD, add_test_user
from labdevices.testing._mqtt import MosquittoBroker

#: where the tests leave a screenshot of each page: docs/screenshots (the pictures the README
#: shows) when LABDEVICES_SCREENSHOTS=1 asks to refresh them, else a temporary folder, so that
#: a test run leaves the work tree as it was
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    if os.environ.get("LABDEVICES_SCREENSHOTS") == "1"
    else Path(tempfile.mkdtemp(prefix="labdevices-screenshots-"))
)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HAVE_CHROMIUM = Path(CHROMIUM).exists()
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: user → roles; every one logs in with TEST_PASSWORD
USERS = {
    "olivia": ("operator",),
    "sam": ("supervisor",),
    "vera": ("viewer",),
}
#: a warm bed raises an alarm (and only that): what the tests acknowledge
BED_ALARM = InterlockConfig(
    name="bed-warm",
    device="printer",
    signal="bed_temperature",
    condition="above",
    value=30.0,
    action="alarm",
    severity="warning",
)


@dataclass
class WebLab:
    daemon: Daemon
    sim: SimulatedPrinter
    db: Path
    site: str
    broker: MosquittoBroker

    @property
    def url(self) -> str:
        assert self.daemon.web_url is not None
        return self.daemon.web_url


@pytest.fixture
async def web_lab(mqtt_broker: MosquittoBroker, tmp_path: Path) -> AsyncIterator[WebLab]:
    async with start_web_lab(mqtt_broker, tmp_path) as lab:
        yield lab


@pytest.fixture
async def gmp_web_lab(mqtt_broker: MosquittoBroker, tmp_path: Path) -> AsyncIterator[WebLab]:
    """The same lab in GMP mode: a job waits, held, for a supervisor's release signature."""
    async with start_web_lab(mqtt_broker, tmp_path, require_release=True) as lab:
        yield lab


@contextlib.asynccontextmanager
async def start_web_lab(
    mqtt_broker: MosquittoBroker, tmp_path: Path, *, require_release: bool = False
) -> AsyncIterator[WebLab]:
    site = f"web-{uuid.uuid4().hex[:8]}"
    db = tmp_path / "lab.db"
    for user, roles in USERS.items():
        add_test_user(db, user, roles, password=TEST_PASSWORD)
    async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.02)) as sim:
        assert sim.port is not None
        config = DaemonConfig(
            site=site,
            devices={
                "printer": DeviceConfig(
                    profile="marlin-pneumatic",
                    address=sim.port,
                    poll_interval_s=0.2,
                    require_release=require_release,
                )
            },
            bus=BusConfig(url=mqtt_broker.url, client_id=f"daemon-{site}"),
            store=StoreConfig(path=db, flush_interval_s=0.1),
            interlocks=[BED_ALARM],
            web=WebConfig(listen="127.0.0.1:0"),
            device_retry_min_s=0.05,
            device_retry_max_s=0.5,
        )
        async with Daemon(check_config(config, "web-test-config")) as daemon:
            yield WebLab(daemon, sim, db, site, mqtt_broker)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not HAVE_CHROMIUM:
        pytest.fail("chromium is not installed: run scripts/ensure-chromium.sh (make test does)")
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def log_in(browser: Browser, lab: WebLab, user: str) -> Page:
    """A new browser context (its own cookies) logged in as ``user`` through the form."""
    context = await browser.new_context(viewport={"width": 1024, "height": 768})
    page = await context.new_page()
    await page.goto(lab.url)
    await page.get_by_label("User").fill(user)
    await page.get_by_label("Password").fill(TEST_PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(lab.url)
    return page


async def http_login(http: httpx.AsyncClient, user: str) -> httpx.Response:
    """Log ``user`` in as a browser does: the form (its CSRF token and cookie), then the POST."""
    form = await http.get("/login")
    csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
    return await http.post("/login", data={"user": user, "password": TEST_PASSWORD, "csrf": csrf})


async def check_page(page: Page, name: str, *, full_page: bool = False) -> None:
    """The page as it is now, in this Chromium: no serious or critical violation found by
    axe-core (the copy the axe-playwright-python package ships; WCAG 2 A/AA rules, colour
    contrast included), nothing wider than the bench tablet's 1024 px, and its screenshot."""
    results = await Axe().run(
        page,
        options={
            "resultTypes": ["violations"],
            "runOnly": {
                "type": "tag",
                "values": ["wcag2a", "wcag2aa", "wcag21aa", "best-practice"],
            },
        },
    )
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(str(n["target"]) for n in v["nodes"][:3])
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, f"{name}: " + "; ".join(bad)
    assert page.viewport_size == {"width": 1024, "height": 768}
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1024, f"{name}: {width} px wide, wider than the 1024 px tablet"
    await page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=full_page)

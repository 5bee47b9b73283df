"""The culture page in a real Chromium, against the whole simulated lab (incubator and
bioreactor on Modbus, sensors on OPC UA): charts from the store over a chosen window, limits
shown, a setpoint changed with a reason; out of limits and a viewer's change refused."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from labdevices.daemon import Daemon, load_config
from labdevices.sim.lab import SimulatedLab
from labdevices.testing._auth import TEST_PASSWORD, add_test_user
from labdevices.testing._mqtt import MosquittoBroker

from .conftest import USERS, WebLab, check_page, log_in

ROOT = Path(__file__).resolve().parents[2]
TEMPERATURE = 'tr[data-signal="incubator/chamber_temperature"]'

POST = """async ([path, body]) => {
    const csrf = document.querySelector('meta[name=csrf-token]').content;
    const r = await fetch(path, {method: 'POST', body: body + '&csrf=' + csrf,
        headers: {'Content-Type': 'application/x-www-form-urlencoded',
                  Accept: 'application/json'}});
    return [r.status, await r.json()];
}"""


@pytest.fixture
async def culture_lab(
    mqtt_broker: MosquittoBroker, sim_lab: SimulatedLab, tmp_path: Path
) -> AsyncIterator[WebLab]:
    site = f"web-{uuid.uuid4().hex[:8]}"
    db = tmp_path / "lab.db"
    for user, roles in USERS.items():
        add_test_user(db, user, roles, password=TEST_PASSWORD)
    loaded = load_config(
        ROOT / "config" / "demo.toml",
        overrides={
            "site": site,
            "bus": {"url": mqtt_broker.url, "client_id": f"daemon-{site}"},
            "store": {"path": str(db), "flush_interval_s": 0.1},
            "web": {"listen": "127.0.0.1:0"},
        },
    ).with_addresses(sim_lab.addresses)
    async with Daemon(loaded) as daemon:
        yield WebLab(daemon, None, db, site, mqtt_broker)  # type: ignore[arg-type]


async def test_charts_limits_and_a_setpoint_change_with_a_reason(
    culture_lab: WebLab, browser: Browser
) -> None:
    lab = culture_lab
    page = await log_in(browser, lab, "olivia")
    await page.get_by_role("link", name="Culture").click()
    await expect(page.get_by_role("heading", name="incubator")).to_be_visible()
    # live values arrive; once stored, the chart over the last five minutes shows them
    await expect(page.locator(f"{TEMPERATURE} .value")).not_to_have_text("—")
    await lab.daemon.pipeline.flush_store()
    await page.get_by_label("Window", exact=True).select_option("300")
    await page.get_by_role("button", name="Show").click()
    chart = page.locator('[data-chart="incubator/chamber_temperature"] polyline')
    await expect(chart).to_have_attribute("points", re.compile(r"^\d"))  # at least one point
    setpoint = page.locator('[data-chart="incubator/temperature_setpoint"]')
    await expect(setpoint).to_contain_text("limits 25.00 – 42.00")

    await setpoint.get_by_label("New temperature_setpoint").fill("36.5")
    await setpoint.get_by_label("Reason").fill("protocol step 3")
    await setpoint.get_by_role("button", name="Set").click()
    await expect(page).to_have_url(f"{lab.url}culture?window=300")
    await check_page(page, "culture")

    # beyond the limits: the server refuses (the browser's own check is bypassed here)
    status, body = await page.evaluate(
        POST, ["/culture/incubator/setpoint", "signal=temperature_setpoint&value=60&reason=x"]
    )
    assert status == 409 and body["error"]["code"] == "limit", body

    viewer = await log_in(browser, lab, "vera")
    await viewer.goto(f"{lab.url}culture")
    status, body = await viewer.evaluate(
        POST, ["/culture/incubator/setpoint", "signal=temperature_setpoint&value=30&reason=x"]
    )
    assert status == 403 and body["error"]["code"] == "forbidden", body

    records = await lab.daemon.store.audit_records()
    writes = [(r.actor, r.new, r.reason) for r in records if r.action == "setpoint.write"]
    assert writes == [("olivia", "36.5", "protocol step 3")]
    await page.context.close()
    await viewer.context.close()

"""The lab page in a real Chromium: log in, live values, the alarm banner and its
acknowledgement, a viewer refused by the server, the e-stop, CSRF and sessions."""

from __future__ import annotations

import asyncio

import httpx
from playwright.async_api import Browser, expect

from labdevices.client import LabClient
from labdevices.store import SqliteDatabase
from labdevices.testing._auth import TEST_PASSWORD, issue_session

from .conftest import WebLab, check_page, http_login, log_in

BED_VALUE = 'tr[data-signal="printer/bed_temperature"] .value'


def long_job(moves: int = 2000) -> str:
    return "\n".join(["G28", *(f"G1 X{10 + 10 * (i % 2)} Y10 F600" for i in range(moves))])


async def test_log_in_see_live_values_and_acknowledge_an_alarm(
    web_lab: WebLab, browser: Browser
) -> None:
    context = await browser.new_context(viewport={"width": 1024, "height": 768})
    page = await context.new_page()
    await page.goto(web_lab.url)
    await expect(page).to_have_url(f"{web_lab.url}login?next=/")
    await page.get_by_label("User").fill("olivia")
    await page.get_by_label("Password").fill("not her password")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_be_visible()
    await page.get_by_label("Password").fill(TEST_PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("heading", name="printer")).to_be_visible()
    await expect(page.locator("#live-status")).to_have_text("live")
    await expect(page.locator(BED_VALUE)).not_to_have_text("—")

    # An operator heats the bed over MQTT: the page follows, and the bed-warm alarm shows.
    session = issue_session(web_lab.db, "olivia", site=web_lab.site)
    async with LabClient(web_lab.broker.url, site=web_lab.site, session=session) as lab:
        await lab.write("printer", "bed_temperature_setpoint", 45.0)
        await page.wait_for_function(
            f"parseFloat(document.querySelector('{BED_VALUE}').textContent) > 30"
        )
        banner = page.locator("#alarm-banner")
        await expect(banner).to_contain_text("printer: bed-warm")
        await expect(page.locator('[data-alarms-for="printer"]')).to_contain_text("bed-warm")
        # the samples reached the page promptly (sample time → DOM update, in this browser)
        latencies = await page.evaluate("window.labdevicesLatency")
        assert latencies and sorted(latencies)[len(latencies) // 2] < 1.0

        await page.wait_for_function(
            "document.querySelector('tr[data-signal=\"printer/bed_temperature\"] polyline')"
            ".getAttribute('points').length > 0"
        )
        await check_page(page, "lab")
        await banner.get_by_label("Reason").fill("bed warmed on purpose for the test")
        await banner.get_by_role("button", name="Acknowledge").click()
        await expect(banner).to_contain_text("acknowledged by olivia")
        [alarm] = await lab.alarms(active_only=True)
        assert alarm.acknowledged_by == "olivia"
        records = await web_lab.daemon.store.audit_records()
        ack = [r for r in records if r.action == "alarm.acknowledge"]
        assert [(r.actor, r.reason) for r in ack] == [
            ("olivia", "bed warmed on purpose for the test")
        ], [r.action for r in records]
        # the samples reached the page promptly
    await context.close()


async def test_a_viewer_is_refused_by_the_server_not_only_by_the_page(
    web_lab: WebLab, browser: Browser
) -> None:
    session = issue_session(web_lab.db, "olivia", site=web_lab.site)
    async with LabClient(web_lab.broker.url, site=web_lab.site, session=session) as lab:
        await lab.write("printer", "bed_temperature_setpoint", 45.0)
        page = await log_in(browser, web_lab, "vera")
        banner = page.locator("#alarm-banner")
        await expect(banner).to_contain_text("printer: bed-warm")
        # the page offers her no control she may not use: only the e-stop (anyone may stop)
        await expect(banner.get_by_role("button", name="Acknowledge")).to_have_count(0)
        await page.goto(f"{web_lab.url}printers/printer")
        await expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
        for name in ("Pause", "Resume", "Cancel", "Submit", "Plan and preview"):
            await expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
        await expect(page.get_by_label("G-code file")).to_have_count(0)
        await expect(page.get_by_test_id("estop-printer")).to_be_visible()
        await expect(page.get_by_role("button", name="Log out")).to_be_visible()
        [alarm] = await lab.alarms(active_only=True)
        # The page is a viewer's, but the request is forged with her own valid CSRF token.
        for path, body in [
            (f"/alarms/{alarm.alarm_id}/ack", "reason=I+may+not"),
            ("/devices/printer/pause", "reason=I+may+not"),
        ]:
            reply = await page.evaluate(
                """async ([path, body]) => {
                    const csrf = document.querySelector('meta[name=csrf-token]').content;
                    const r = await fetch(path, {method: 'POST', body: body + '&csrf=' + csrf,
                        headers: {'Content-Type': 'application/x-www-form-urlencoded',
                                  Accept: 'application/json'}});
                    return [r.status, await r.json()];
                }""",
                [path, body],
            )
            assert reply[0] == 403, reply
            assert reply[1]["error"]["code"] == "forbidden"
            assert "viewer" in reply[1]["error"]["message"]
        [still] = await lab.alarms(active_only=True)
        assert still.acknowledged_by is None
    records = await web_lab.daemon.store.audit_records()
    refused = [r for r in records if r.action == "request.refused" and r.actor == "vera"]
    assert len(refused) == 2
    assert all('"via": "web"' in (r.new or "") or "web" in str(r.new) for r in refused)
    assert {r.object for r in refused} == {"daemon", "device/printer"}
    await page.context.close()


async def test_the_e_stop_stops_a_running_print(web_lab: WebLab, browser: Browser) -> None:
    page = await log_in(browser, web_lab, "vera")  # anyone logged in may stop everything
    state = page.locator('.card[data-device="printer"] [data-state]')
    await expect(state).to_have_text("idle")
    session = issue_session(web_lab.db, "olivia", site=web_lab.site)
    async with LabClient(web_lab.broker.url, site=web_lab.site, session=session) as lab:
        job = await lab.submit(printer="printer", gcode=long_job())
        await expect(state).to_have_text("busy")
        await page.get_by_test_id("estop-printer").click()
        await web_lab.sim.wait_until(lambda s: s.state.halted)
        await expect(state).to_have_text("fault")
        ended = await lab.job(job.job_id)
        assert ended.state != "running"
        assert ended.line < ended.lines_total
    records = await web_lab.daemon.store.audit_records()
    [estop] = [r for r in records if r.action == "device.estop"]
    assert estop.actor == "vera"
    await page.context.close()


async def test_sessions_csrf_and_logout(web_lab: WebLab) -> None:
    async with httpx.AsyncClient(base_url=web_lab.url) as http:
        page = await http.get("/")
        assert (page.status_code, page.headers["location"]) == (303, "/login?next=/")
        anonymous = await http.post("/alarms/1/ack", data={"reason": "x"})
        assert anonymous.status_code == 401
        login = await http_login(http, "olivia")
        assert login.status_code == 303
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        no_token = await http.post("/devices/printer/pause", data={"reason": "x"})
        assert no_token.status_code == 403 and "CSRF" in no_token.text
        forged = await http.post("/devices/printer/pause", data={"csrf": "0" * 64})
        assert forged.status_code == 403
        lab = await http.get("/")
        assert lab.status_code == 200
        csrf = lab.text.split('name="csrf-token" content="')[1].split('"')[0]
        out = await http.post("/logout", data={"csrf": csrf})
        assert (out.status_code, out.headers["location"]) == (303, "/login")
        # the session itself is revoked: the old cookie opens nothing any more
        http.cookies.set("labdevices_session", cookie.split(";")[0].split("=", 1)[1])
        assert (await http.get("/")).status_code == 303


async def test_a_live_stream_ends_when_its_session_is_revoked(web_lab: WebLab) -> None:
    async with (
        httpx.AsyncClient(base_url=web_lab.url) as http,
        asyncio.timeout(30),
    ):
        login = await http_login(http, "olivia")
        assert login.status_code == 303
        (cookie,) = http.cookies.values()
        session_id = cookie.partition(".")[0]
        async with http.stream("GET", "/events") as events:
            assert events.status_code == 200
            lines = events.aiter_lines()
            while not (await anext(lines)).startswith("data:"):
                pass  # the stream is live
            with SqliteDatabase(web_lab.db) as store:
                store.revoke_session(session_id, by="admin", reason="lost tablet")
            # the telemetry keeps coming, but no more of it reaches the revoked session
            async for _ in lines:
                pass


async def test_a_login_posted_from_another_site_is_refused(
    web_lab: WebLab, browser: Browser
) -> None:
    async with httpx.AsyncClient(base_url=web_lab.url) as http:
        # no login cookie, no token: what a forged cross-site form sends
        forged = await http.post("/login", data={"user": "olivia", "password": TEST_PASSWORD})
        assert forged.status_code == 403 and "CSRF" in forged.text
        assert "labdevices_session" not in forged.headers.get("set-cookie", "")
        # the cookie of a real form, but a token made up
        await http.get("/login")
        guessed = await http.post(
            "/login", data={"user": "olivia", "password": TEST_PASSWORD, "csrf": "0" * 64}
        )
        assert guessed.status_code == 403
        assert "labdevices_session" not in guessed.headers.get("set-cookie", "")
        assert (await http_login(http, "olivia")).status_code == 303

    # In Chromium: a page of another site posts a login form to the dashboard. Even a token
    # copied from a real form does not help: the browser sends no SameSite=Strict cookie.
    context = await browser.new_context(viewport={"width": 1024, "height": 768})
    page = await context.new_page()
    await page.goto(f"{web_lab.url}login")
    token = await page.locator("input[name=csrf]").get_attribute("value")
    evil = "http://attacker.invalid/"
    await page.route(
        evil,
        lambda route: route.fulfill(
            content_type="text/html",
            body=f"""<form method="post" action="{web_lab.url}login">
                <input name="user" value="olivia"><input name="password" value="{TEST_PASSWORD}">
                <input name="csrf" value="{token}"></form>
                <script>document.forms[0].submit()</script>""",
        ),
    )
    async with page.expect_response(f"{web_lab.url}login") as reply:
        await page.goto(evil)
    assert (await reply.value).status == 403
    await expect(page.get_by_role("alert")).to_contain_text("CSRF")
    assert not [c for c in await context.cookies() if c["name"] == "labdevices_session"]
    await context.close()


async def test_keyboard_only_log_in_acknowledge_and_e_stop(
    web_lab: WebLab, browser: Browser
) -> None:
    context = await browser.new_context(viewport={"width": 1024, "height": 768})
    page = await context.new_page()
    await page.goto(web_lab.url)
    await check_page(page, "login")
    # the login form: user is focused first, Tab to the password, Enter logs in
    await expect(page.get_by_label("User")).to_be_focused()
    await page.keyboard.type("olivia")
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Password")).to_be_focused()
    await page.keyboard.type(TEST_PASSWORD)
    await page.keyboard.press("Enter")
    await page.wait_for_url(web_lab.url)
    session = issue_session(web_lab.db, "olivia", site=web_lab.site)
    async with LabClient(web_lab.broker.url, site=web_lab.site, session=session) as lab:
        await lab.write("printer", "bed_temperature_setpoint", 45.0)
        banner = page.locator("#alarm-banner")
        await expect(banner).to_contain_text("printer: bed-warm")
        # the alarm's reason and its button, by keyboard
        await banner.get_by_label("Reason").focus()
        await page.keyboard.type("seen, by keyboard")
        await page.keyboard.press("Tab")
        await expect(banner.get_by_role("button", name="Acknowledge")).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(banner).to_contain_text("acknowledged by olivia")

        # the e-stop: reached with Tab from the top of the page (after the skip link, the
        # pages and the log-out), pressed with Enter
        job = await lab.submit(printer="printer", gcode=long_job())
        state = page.locator('.card[data-device="printer"] [data-state]')
        await expect(state).to_have_text("busy")
        await page.locator("body").focus()
        estop = page.get_by_test_id("estop-printer")
        for _ in range(12):
            await page.keyboard.press("Tab")
            if await estop.evaluate("b => b === document.activeElement"):
                break
        await expect(estop).to_be_focused()
        await page.keyboard.press("Enter")
        await web_lab.sim.wait_until(lambda s: s.state.halted)
        await expect(state).to_have_text("fault")
        assert (await lab.job(job.job_id)).state != "running"
    await context.close()


async def test_a_refusal_page_is_accessible(web_lab: WebLab, browser: Browser) -> None:
    page = await log_in(browser, web_lab, "vera")
    await page.goto(f"{web_lab.url}printers/nosuch")
    await expect(page.get_by_role("alert")).to_contain_text("no printer 'nosuch'")
    await check_page(page, "refused")
    await page.context.close()

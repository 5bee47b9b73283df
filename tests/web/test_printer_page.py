"""The printer page in a real Chromium: an operator uploads G-code, the job is held (GMP), a
supervisor releases it with a signature (password re-entered), it runs to completion; the
operator pauses, resumes and cancels another."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path

import httpx
from playwright.async_api import Browser, Page, expect

from labdevices.client import LabClient
from labdevices.profiles import load_profile
from labdevices.testing._auth import TEST_PASSWORD, issue_session
from labdevices.toolpath import ToolpathResult, load_job, plan_job

from .conftest import WebLab, check_page, http_login, log_in

ROOT = Path(__file__).resolve().parents[2]
DEMO_JOB = ROOT / "examples" / "jobs" / "demo-scaffold.toml"
POST = """async ([path, body]) => {
    const csrf = document.querySelector('meta[name=csrf-token]').content;
    const r = await fetch(path, {method: 'POST', body: body + '&csrf=' + csrf,
        headers: {'Content-Type': 'application/x-www-form-urlencoded',
                  Accept: 'application/json'}});
    return [r.status, await r.json()];
}"""


def moves(n: int) -> bytes:
    return "\n".join(["G28", *(f"G1 X{10 + 10 * (i % 2)} Y10 F600" for i in range(n))]).encode()


async def submit(page: Page, lab: WebLab, gcode: bytes, batch: str) -> None:
    await page.goto(f"{lab.url}printers/printer")
    await page.get_by_label("G-code file").set_input_files(
        files=[{"name": "lines.gcode", "mimeType": "text/plain", "buffer": gcode}]
    )
    await page.get_by_label("Batch").fill(batch)
    await page.get_by_role("button", name="Submit").click()


async def release(page: Page, lab: WebLab, user: str, job_id: int) -> None:
    await page.goto(f"{lab.url}printers/printer")
    job = page.locator(f'[data-job="{job_id}"]')
    await job.get_by_label("User").fill(user)
    await job.get_by_label("Password").fill(TEST_PASSWORD)
    await job.get_by_role("button", name="Sign and release").click()


async def test_submit_release_by_signature_and_watch_it_complete(
    gmp_web_lab: WebLab, browser: Browser
) -> None:
    lab = gmp_web_lab
    olivia = await log_in(browser, lab, "olivia")
    await submit(olivia, lab, moves(40), "B-2026-001")
    queue = olivia.locator("#queue")
    await expect(queue).to_contain_text("held")
    await expect(queue).to_contain_text("B-2026-001")
    job_id = int(await queue.locator("[data-job]").first.get_attribute("data-job") or 0)

    # The operator cannot release her own job: no signature form for her, and the server
    # refuses the request forged with her own CSRF token (she is no supervisor).
    held = olivia.locator(f'[data-job="{job_id}"]')
    await expect(held).to_contain_text("Waiting for a release signature")
    await expect(held.get_by_role("button", name="Sign and release")).to_have_count(0)
    status, body = await olivia.evaluate(
        POST, [f"/jobs/{job_id}/sign", f"user=olivia&password={TEST_PASSWORD}"]
    )
    assert status == 403 and "record.sign" in body["error"]["message"], body

    sam = await log_in(browser, lab, "sam")
    # A wrong password is refused and the job stays held.
    await sam.goto(f"{lab.url}printers/printer")
    held = sam.locator(f'[data-job="{job_id}"]')
    await held.get_by_label("User").fill("sam")
    await held.get_by_label("Password").fill("wrong password")
    await check_page(sam, "printer")
    await held.get_by_role("button", name="Sign and release").click()
    await expect(sam.get_by_role("alert")).to_be_visible()
    await release(sam, lab, "sam", job_id)
    # the page follows the job live until it is done
    await expect(sam.locator("#queue")).to_contain_text("No job queued or running", timeout=30_000)

    session = issue_session(lab.db, "olivia", site=lab.site)
    async with LabClient(lab.broker.url, site=lab.site, session=session) as client:
        job = await client.job(job_id)
    assert job.state == "completed" and job.line == job.lines_total
    assert [(s.user_id, s.meaning) for s in job.signatures] == [("sam", "approved for printing")]
    await sam.goto(f"{lab.url}printers/printer")
    await expect(sam.get_by_role("row", name=f"{job_id} lines.gcode")).to_contain_text("completed")

    # Its record: timeline, the signature's manifestation, the verified audit, the PDF.
    await sam.get_by_role("link", name=str(job_id), exact=True).click()
    await expect(sam.get_by_role("heading", level=1)).to_contain_text(f"Job {job_id}")
    await expect(sam.get_by_test_id("verification")).to_contain_text("Audit chain verified")
    await expect(sam.locator(".signature")).to_contain_text("approved for printing")
    await expect(sam.locator(".signature")).to_contain_text("Sam")
    await expect(sam.get_by_role("region", name="Timeline")).to_contain_text("completed")
    await check_page(sam, "job", full_page=True)
    pdf = await sam.request.get(f"{lab.url}jobs/{job_id}/record.pdf")
    assert pdf.ok and pdf.headers["content-type"] == "application/pdf"
    assert (await pdf.body()).startswith(b"%PDF")

    # The audit trail, searched by actor.
    await sam.get_by_role("link", name="Audit").click()
    await expect(sam.get_by_test_id("verification")).to_contain_text("Audit chain verified")
    await sam.get_by_label("Actor").fill("sam")
    await sam.get_by_role("button", name="Search").click()
    rows = sam.locator("table.trail tbody tr")
    await expect(rows.first).to_contain_text("sam")
    actors = await rows.locator("td:nth-child(3)").all_text_contents()
    assert actors and set(actors) == {"sam"}
    await expect(sam.locator("table.trail")).to_contain_text("signature")
    await sam.get_by_label("Actor").fill("")
    await sam.get_by_role("button", name="Search").click()
    await check_page(sam, "audit")
    await olivia.context.close()
    await sam.context.close()


def layered(layers: int, per_layer: int) -> bytes:
    """Moves in layers marked as Cura marks them (``;LAYER:n``)."""
    lines = ["G28"]
    for k in range(layers):
        lines.append(f";LAYER:{k}")
        lines += [f"G1 X{10 + 10 * (i % 2)} Y10 F600" for i in range(per_layer)]
    return "\n".join(lines).encode()


async def test_pause_resume_and_cancel_from_the_page(web_lab: WebLab, browser: Browser) -> None:
    lab = web_lab
    olivia = await log_in(browser, lab, "olivia")
    await submit(olivia, lab, layered(6, 300), "B-2026-002")
    queue = olivia.locator("#queue")
    await expect(queue).to_contain_text("running")
    # into its second layer at least (its ETA shown meanwhile)
    await olivia.wait_for_function("document.querySelector('#queue progress')?.value > 400")
    await expect(queue).to_contain_text("ETA")
    controls = olivia.get_by_role("form", name="Job control")
    await controls.get_by_label("Reason").fill("checking the nozzle")
    # by keyboard: from the reason to the Pause button
    await controls.get_by_label("Reason").press("Tab")
    await expect(controls.get_by_role("button", name="Pause")).to_be_focused()
    await olivia.keyboard.press("Enter")
    await expect(olivia.locator("#queue")).to_contain_text("paused")
    # the current layer beside the progress: the layer whose mark the acknowledged lines passed
    text = await olivia.locator("#queue .progress").inner_text()
    found = re.search(r"\((\d+)/(\d+) lines\) · layer (\d+) of (\d+)", text)
    assert found, text
    line, total, layer, layers = map(int, found.groups())
    assert (total, layers) == (1801, 6)
    starts = [1 + 300 * k for k in range(6)]  # commands before each mark: G28, then 300 a layer
    assert layer >= 2
    assert layer == max(1, sum(s <= line for s in starts)), text
    await (
        olivia.get_by_role("form", name="Job control").get_by_role("button", name="Resume").click()
    )
    await expect(olivia.locator("#queue")).to_contain_text("running")
    await (
        olivia.get_by_role("form", name="Job control").get_by_role("button", name="Cancel").click()
    )
    await expect(olivia.locator("#queue")).to_contain_text("No job queued or running")
    records = await lab.daemon.store.audit_records()
    moved = [r.new for r in records if r.actor == "olivia" and r.action == "job.transition"]
    for state in ("paused", "running", "cancelled"):
        assert any(state in (new or "") for new in moved), moved
    await olivia.context.close()


async def planned(path: Path) -> ToolpathResult:
    """What the toolpath core plans for the job file on the test lab's printer."""
    profile = load_profile("marlin-pneumatic")
    return await asyncio.to_thread(lambda: plan_job(load_job(path), profile))


async def plan(page: Page, lab: WebLab, name: str, data: bytes) -> None:
    await page.goto(f"{lab.url}printers/printer")
    await page.get_by_label("Job file (TOML)").set_input_files(
        files=[{"name": name, "mimeType": "application/toml", "buffer": data}]
    )
    await page.get_by_role("button", name="Plan and preview").click()


async def test_a_job_file_is_planned_shown_then_submitted_as_planned(
    web_lab: WebLab, browser: Browser
) -> None:
    lab = web_lab
    expected = await planned(DEMO_JOB)
    olivia = await log_in(browser, lab, "olivia")
    await plan(olivia, lab, "demo-scaffold.toml", DEMO_JOB.read_bytes())
    shown = olivia.get_by_test_id("plan")
    await expect(shown).to_contain_text("demo-lattice")
    # the deposition summary, before anything is submitted
    await expect(shown.locator('[data-fact="layers"]')).to_have_text(str(len(expected.layers)))
    strands = sum(lp.n_paths for lp in expected.layers)
    await expect(shown.locator('[data-fact="strands"]')).to_have_text(str(strands))
    await expect(shown.locator('[data-fact="volume"]')).to_have_text(f"{expected.volume_ul:.2f} µL")
    pressure = expected.totals[0].pressure_kpa
    assert pressure is not None
    await expect(shown.locator('[data-fact="pressure"]')).to_have_text(f"{pressure:.1f} kPa")
    await expect(shown.locator('[data-fact="time"]')).not_to_be_empty()
    for note in expected.notes:
        await expect(shown).to_contain_text(note)
    # the preview: the top layer and all layers, drawn from the planned segments
    previews = shown.get_by_role("img")
    await expect(previews).to_have_count(2)
    await expect(previews.first).to_have_attribute(
        "aria-label", f"layer {len(expected.layers)} of {len(expected.layers)} from above"
    )
    assert await shown.locator("svg path").count() >= 2
    await expect(olivia.locator("#queue")).to_contain_text("No job queued or running")
    assert await lab.daemon.store.list_jobs() == []
    await check_page(olivia, "printer-plan", full_page=True)
    sha = await shown.locator("input[name=gcode_sha256]").get_attribute("value")
    await expect(shown).to_contain_text(f"SHA-256 {sha}")

    await shown.get_by_role("button", name="Submit this plan").click()
    await expect(olivia).to_have_url(f"{lab.url}printers/printer")
    await expect(olivia.get_by_test_id("plan")).to_have_count(0)
    [job] = await lab.daemon.store.list_jobs()
    # exactly the G-code the page showed (a plan made again differs: its header's time), with
    # the job file's batch and bioink
    gcode = await lab.daemon.store.job_gcode(job.id)
    assert gcode is not None and job.gcode_sha256 == sha
    assert hashlib.sha256(gcode.encode()).hexdigest() == sha

    def body(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("; generated")]

    assert body(gcode) == body(expected.gcode)
    assert (job.batch_id, job.patient_id, job.name) == ("DEMO-0001", "P-DEMO", "demo-lattice")
    assert [b["lot"] for b in job.bioinks] == ["ALG-DEMO-0117"]
    # it runs, its layer shown beside its progress
    queue = olivia.locator(f'#queue [data-job="{job.id}"]')
    await expect(queue).to_contain_text("running")
    await expect(queue).to_contain_text(re.compile(r"layer [1-4] of 4"))
    await (
        olivia.get_by_role("form", name="Job control").get_by_role("button", name="Cancel").click()
    )
    await expect(olivia.locator("#queue")).to_contain_text("No job queued or running")
    await olivia.context.close()


BAD_JOB = DEMO_JOB.read_text().replace("strand_width_mm = 0.45", "strand_width_mm = -0.45")


async def test_a_bad_job_file_is_refused_on_the_page_naming_the_field(
    web_lab: WebLab, browser: Browser
) -> None:
    lab = web_lab
    olivia = await log_in(browser, lab, "olivia")
    cases = [
        ("bad.toml", BAD_JOB.encode(), "bad.toml: printheads[0].strand_width_mm"),
        ("broken.toml", b"name = 'x'\nlayer_height_mm = = 0.3\n", "broken.toml"),
        # planned for another printer profile: refused before anything is planned
        ("biox.toml", (ROOT / "examples/jobs/scaffold.toml").read_bytes(), "biox.toml: printer"),
        ("job.gcode", b"G28\n", "job.gcode: a job file is TOML"),
    ]
    for name, data, message in cases:
        await plan(olivia, lab, name, data)
        alert = olivia.get_by_role("alert")
        await expect(alert).to_contain_text(message)
        await expect(olivia.get_by_test_id("plan")).to_have_count(0)
        if name == "bad.toml":
            await check_page(olivia, "printer-plan-error")
    assert await lab.daemon.store.list_jobs() == []
    await olivia.context.close()


async def test_a_plan_is_submitted_once_unchanged_by_the_session_that_made_it(
    web_lab: WebLab,
) -> None:
    lab = web_lab

    async def make_plan(http: httpx.AsyncClient, csrf: str) -> tuple[str, str]:
        page = await http.post(
            "/printers/printer/plan",
            data={"csrf": csrf},
            files={"job": ("demo.toml", DEMO_JOB.read_bytes(), "application/toml")},
        )
        assert page.status_code == 200, page.text
        token = page.text.split('name="plan" value="')[1].split('"')[0]
        sha = page.text.split('name="gcode_sha256" value="')[1].split('"')[0]
        return token, sha

    def csrf_of(html: str) -> str:
        return html.split('name="csrf-token" content="')[1].split('"')[0]

    async with (
        httpx.AsyncClient(base_url=lab.url) as olivia,
        httpx.AsyncClient(base_url=lab.url) as sam,
        httpx.AsyncClient(base_url=lab.url) as vera,
    ):
        for http, user in ((olivia, "olivia"), (sam, "sam"), (vera, "vera")):
            assert (await http_login(http, user)).status_code == 303
        csrf = {
            name: csrf_of((await http.get("/printers/printer")).text)
            for name, http in (("olivia", olivia), ("sam", sam), ("vera", vera))
        }
        # a viewer may not even plan (the server refuses; audited)
        refused = await vera.post(
            "/printers/printer/plan",
            data={"csrf": csrf["vera"]},
            files={"job": ("demo.toml", DEMO_JOB.read_bytes(), "application/toml")},
            headers={"Accept": "application/json"},
        )
        assert refused.status_code == 403, refused.text

        token, sha = await make_plan(olivia, csrf["olivia"])
        confirm = {"csrf": csrf["olivia"], "plan": token, "gcode_sha256": sha}
        # another session cannot submit it, even with its own valid token
        other = await sam.post(
            "/printers/printer/submit",
            data={**confirm, "csrf": csrf["sam"]},
            headers={"Accept": "application/json"},
        )
        assert other.status_code == 403, other.text
        # the G-code confirmed must be the one planned
        changed = await olivia.post(
            "/printers/printer/submit",
            data={**confirm, "gcode_sha256": "0" * 64},
            headers={"Accept": "application/json"},
        )
        assert changed.status_code == 400, changed.text
        token, sha = await make_plan(olivia, csrf["olivia"])
        confirm = {"csrf": csrf["olivia"], "plan": token, "gcode_sha256": sha}
        done = await olivia.post("/printers/printer/submit", data=confirm)
        assert done.status_code == 303, done.text
        again = await olivia.post(
            "/printers/printer/submit", data=confirm, headers={"Accept": "application/json"}
        )
        assert again.status_code == 403 and "already submitted" in again.text
    jobs = await lab.daemon.store.list_jobs()
    assert [j.submitted_by for j in jobs] == ["olivia"]
    records = await lab.daemon.store.audit_records()
    assert [r.object for r in records if r.action == "request.refused" and r.actor == "vera"] == [
        "jobs"
    ]


async def test_temperatures_and_pressures_charted_from_the_store_then_live(
    web_lab: WebLab, browser: Browser
) -> None:
    lab = web_lab
    olivia = await log_in(browser, lab, "olivia")
    await expect(olivia.locator("#live-status")).to_have_text("live")
    await lab.daemon.pipeline.flush_store()
    await olivia.goto(f"{lab.url}printers/printer")
    # on load: the last minutes from the store, in the page for its script
    data = await olivia.evaluate("JSON.parse(document.getElementById('chart-data').textContent)")
    titles = [c["title"] for c in data["charts"]]
    assert titles == ["Temperatures", "Pressures"], titles
    series = {s["signal"]: s["points"] for c in data["charts"] for s in c["series"]}
    assert series["bed_temperature"], data
    assert "printhead0_pressure_setpoint" in series
    temperatures = olivia.locator('[data-chart="0"]')
    # each signal's line and legend entry alike (its colour): the bed is the second
    assert [s["signal"] for s in data["charts"][0]["series"]][1] == "bed_temperature"
    bed = temperatures.locator("polyline.series-1")
    await expect(bed).to_have_attribute("points", re.compile(r"^\d"))
    await expect(temperatures.locator("li.series-1")).to_contain_text("bed_temperature:")
    # then live: the bed heats, the chart's legend follows
    session = issue_session(lab.db, "olivia", site=lab.site)
    async with LabClient(lab.broker.url, site=lab.site, session=session) as client:
        await client.write("printer", "bed_temperature_setpoint", 45.0)
        await olivia.wait_for_function(
            "parseFloat(document.querySelector('[data-legend=\"printer/bed_temperature\"]')"
            ".textContent) > 30"
        )
        # drawn in the right line: the bed, now warmer than the nozzle, ends above it
        await olivia.wait_for_function(
            """() => {
                const last = (k) => parseFloat(document.querySelector(
                    `[data-chart="0"] polyline.series-${k}`).getAttribute("points")
                    .trim().split(" ").pop().split(",")[1]);
                return last(1) < last(0);
            }"""
        )
    await expect(temperatures.locator(".range")).not_to_be_empty()
    await olivia.context.close()

"""The printer page in a real Chromium: an operator uploads G-code, the job is held (GMP), a
supervisor releases it with a signature (password re-entered), it runs to completion; the
operator pauses, resumes and cancels another."""

from __future__ import annotations

from playwright.async_api import Browser, Page, expect

from labdevices.client import LabClient
from labdevices.testing._auth import TEST_PASSWORD, issue_session

from .conftest import SCREENSHOTS, WebLab, log_in


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

    # The operator cannot release her own job: the server refuses (she is no supervisor).
    await release(olivia, lab, "olivia", job_id)
    await expect(olivia.get_by_role("alert")).to_contain_text("record.sign")

    sam = await log_in(browser, lab, "sam")
    # A wrong password is refused and the job stays held.
    await sam.goto(f"{lab.url}printers/printer")
    held = sam.locator(f'[data-job="{job_id}"]')
    await held.get_by_label("User").fill("sam")
    await held.get_by_label("Password").fill("wrong password")
    await sam.screenshot(path=SCREENSHOTS / "printer.png")
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
    await sam.screenshot(path=SCREENSHOTS / "job.png", full_page=True)
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
    await sam.screenshot(path=SCREENSHOTS / "audit.png")
    await olivia.context.close()
    await sam.context.close()


async def test_pause_resume_and_cancel_from_the_page(web_lab: WebLab, browser: Browser) -> None:
    lab = web_lab
    olivia = await log_in(browser, lab, "olivia")
    await submit(olivia, lab, moves(3000), "B-2026-002")
    queue = olivia.locator("#queue")
    await expect(queue).to_contain_text("running")
    controls = olivia.get_by_role("form", name="Job control")
    await controls.get_by_label("Reason").fill("checking the nozzle")
    await controls.get_by_role("button", name="Pause").click()
    await expect(olivia.locator("#queue")).to_contain_text("paused")
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

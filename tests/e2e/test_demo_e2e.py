"""Issue 15 item 13 in Chromium: `make demo`'s script as a newcomer meets it, at any hour.

scripts/demo.sh runs for real (its own SQLite directory, the sandbox in demo mode, OpenVisit
serve with the MLLP listener) on free ports. Every row of every practitioner's schedule is
started from the sandbox's schedule page and must land on the clinician's visit page, whatever
the time of day, and the clinician's joining must show on the sandbox's chart page (write-back
on, its worker running); "Send booking (SIU)" must put the patient's SMS into OpenVisit's
outbox with a join link that opens the patient's page; "Reset demo" must give a fresh round
of rows.

The demo is the embedded default by definition (SQLite + in-process bus), so it runs in the
SQLite pass only.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright

from tests.e2e.support import screenshot_dir
from tests.peers.fixtures import free_port
from tests.support.backend import BACKEND, REPO
from tests.support.procs import wait_for

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(BACKEND != "sqlite", reason="the demo is the SQLite embedded default"),
]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
SHOTS = screenshot_dir(Path(tempfile.gettempdir()) / "openvisit-screenshots")
PRACTITIONERS = ("prac-1", "prac-2", "prac-3")
PASSWORD = "openvisit-demo-password"


@dataclass
class Demo:
    openvisit: str
    sandbox: str
    output: Path
    popen: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.output.read_text(errors="replace")[-4000:]


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    ov_port, sb_port, mllp_port = free_port(), free_port(), free_port()
    # The script runs `$OPENVISIT_BIN`; ours is this interpreter on this checkout.
    binary = tmp_path / "openvisit"
    binary.write_text(f"#!/bin/sh\nexec {sys.executable} -m openvisit \"$@\"\n")
    binary.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENVISIT_")}
    env.update(OPENVISIT_BIN=str(binary), PYTHONPATH=str(REPO))
    output = tmp_path / "demo.out"
    with output.open("wb") as out:
        popen = subprocess.Popen(
            ["bash", str(REPO / "scripts" / "demo.sh"), str(tmp_path / "demo"), str(ov_port),
             str(sb_port), str(mllp_port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    running = Demo(openvisit=f"http://127.0.0.1:{ov_port}",
                   sandbox=f"http://127.0.0.1:{sb_port}", output=output, popen=popen)
    try:
        wait_for(lambda: _up(f"{running.openvisit}/readyz") or popen.poll() is not None,
                 timeout=60, what="the demo")
        assert popen.poll() is None, running.log()
        yield running
    finally:
        if popen.poll() is None:
            os.killpg(popen.pid, signal.SIGTERM)
            try:
                popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(popen.pid, signal.SIGKILL)


def _start_row(page: Page, demo: Demo, practitioner: str, appointment: str) -> None:
    page.goto(f"{demo.sandbox}/ehr/schedule?practitioner={practitioner}")
    page.click(f"button[data-appointment='{appointment}']")
    page.wait_for_url(re.compile(r".*/(auth/authorize|v/).*"))
    if "/auth/authorize" in page.url:
        page.click("text=Allow and continue")
    page.wait_for_url(f"{demo.openvisit}/v/**", timeout=20_000)
    # The clinician's room, not an error page ("not open yet", "ended").
    page.wait_for_selector("[data-step=call]", state="attached")
    assert page.locator("[data-action=end]").count() == 1, page.content()[:2000]


def _rows(page: Page, demo: Demo, practitioner: str) -> list[str]:
    page.goto(f"{demo.sandbox}/ehr/schedule?practitioner={practitioner}")
    return page.eval_on_selector_all("button[data-appointment]",
                                     "els => els.map(e => e.dataset.appointment)")


def test_it_starts_every_schedule_row_and_sends_a_booking_sms(demo: Demo) -> None:
    out = demo.log()
    assert f"{demo.openvisit}/portal " in out and f"{demo.openvisit}/ops/outbox" in out, out
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            started = 0
            for practitioner in PRACTITIONERS:
                for appointment in _rows(page, demo, practitioner):
                    _start_row(page, demo, practitioner, appointment)
                    started += 1
            assert started == 21  # 20 slots + the drop-in

            # The loop closes: the clinician who just joined is on the sandbox's chart of that
            # appointment, written back by OpenVisit's worker with a backend-services token
            # (the chart reloads itself when the sandbox's store changes).
            chart = browser.new_page(viewport={"width": 1280, "height": 800})
            chart.goto(f"{demo.sandbox}/ehr/chart/{appointment}")
            chart.wait_for_selector("[data-event=connected]", timeout=30_000)
            assert "Clinician connected" in chart.inner_text(".timeline"), demo.log()
            chart.screenshot(path=str(SHOTS / "demo-chart-1280.png"), full_page=True)
            chart.close()

            # The clinician's page shows the patient's link, and it opens the patient's page.
            link = page.locator("[data-patient-link]").first.input_value()
            assert link.startswith(f"{demo.openvisit}/v/")
            patient = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
            patient.goto(link)
            patient.wait_for_selector("[data-step]", state="attached")
            assert patient.locator("[data-action=end]").count() == 0

            # The SMS path: a booking for the first office-hours row of prac-2.
            page.goto(f"{demo.sandbox}/ehr/schedule?practitioner=prac-2")
            booked = page.locator("button[data-siu]").nth(3).get_attribute("data-siu")
            page.click(f"button[data-siu='{booked}']")
            page.wait_for_selector(".notice")
            assert "Booking sent" in page.inner_text(".notice"), page.inner_text(".notice")
            page.screenshot(path=str(SHOTS / "demo-schedule-1280.png"))

            page.goto(f"{demo.openvisit}/portal/signin?next=/ops/outbox")
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.goto(f"{demo.openvisit}/ops/outbox")
            wait_for(lambda: "/v/" in (page.reload() and page.content()), timeout=20,
                     what="the booking SMS in the outbox")
            text = page.inner_text("main")
            assert "Sandbox Family Clinic" in text, text[:2000]
            sms_link = re.search(rf"{re.escape(demo.openvisit)}/v/[\w.-]+", text)
            assert sms_link, text[:2000]
            patient.goto(sms_link.group(0))
            patient.wait_for_selector("[data-step]", state="attached")
            assert "410" not in patient.title()

            # Reset demo: a fresh round, every row new again.
            before = set(_rows(page, demo, "prac-1"))
            page.click("[data-action=reset-demo]")
            page.wait_for_selector(".notice")
            after = set(_rows(page, demo, "prac-1"))
            assert before and after and not before & after
            _start_row(page, demo, "prac-1", sorted(after)[0])
        finally:
            browser.close()

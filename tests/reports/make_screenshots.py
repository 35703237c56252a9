"""Screenshots of the five reports (issue 14; device tests: issue 15 item 11) at 1280×800
and 390×844 (``-phone``).

Run: ``.venv/bin/python -m tests.reports.make_screenshots [OUTDIR]`` from the repository root
(default OUTDIR docs/screenshots). A fresh SQLite database gets the March clinic of
``tests/reports/conftest.py`` (built through the real services), the app is served by
uvicorn on loopback and Debian's Chromium is driven by Playwright, signed in as the clinic's
org admin (who also sees the patient-reference switch).
"""

from __future__ import annotations

import asyncio
import socket
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import time_machine
import uvicorn
from playwright.async_api import async_playwright

from openvisit.app import create_app
from openvisit.context import AppContext
from openvisit.db import Database
from openvisit.migrate import upgrade_async
from openvisit.notify import providers
from tests.portal.conftest import PASSWORD
from tests.reports.conftest import build_march
from tests.support.backend import make_settings

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
SIZES = {"": (1280, 800), "-phone": (390, 844)}
QUERY = "since=2030-03-01&until=2030-03-31"


async def _device_tests(ctx: AppContext, web: Any, endpoint_id: Any) -> None:
    """Three device tests in March, through the device-test page's own endpoint."""
    from tests.reports.test_devicetests import CALL, _link

    value = await _link(ctx, endpoint_id)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web),
                                 base_url="http://t") as patient:
        for day, camera, call, lang in ((12, "passed", CALL, "cs"),
                                        (14, "failed", {"status": "failed"}, "en"),
                                        (20, "passed", {**CALL, "candidate_type": "relay",
                                                        "rtt_ms": 120.0}, "es")):
            with time_machine.travel(datetime(2030, 3, day, 9, 0, tzinfo=UTC), tick=False):
                await patient.post("/api/devicetest/results", json={
                    "ctx": value, "camera": camera, "microphone": "passed",
                    "speaker": "skipped", "call": call, "language": lang})


async def main(outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/shots.db"
        db = Database(url)
        await upgrade_async(db)
        await db.dispose()
        ctx = AppContext.create(make_settings(url, environment="development", public_url=base))
        await ctx.start()
        web = create_app(ctx=ctx)
        march = await build_march(ctx, web)
        await _device_tests(ctx, web, march.site.endpoint_id)
        server = uvicorn.Server(uvicorn.Config(web, host="127.0.0.1", port=port,
                                               lifespan="off", log_config=None))
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path="/usr/bin/chromium",
                                                   args=ARGS)
                for suffix, (width, height) in SIZES.items():
                    phone = suffix == "-phone"
                    context = await browser.new_context(
                        viewport={"width": width, "height": height}, is_mobile=phone,
                        has_touch=phone)
                    page = await context.new_page()
                    await page.goto(f"{base}/portal/signin?next=%2Fportal%2Freports")
                    await page.fill("input[name=username]", "ada")
                    await page.fill("input[name=password]", PASSWORD)
                    await page.click("form[action='/portal/signin'] button[type=submit]")
                    await page.wait_for_load_state()
                    for name in ("usage", "quality", "messages", "funnel", "devicetests"):
                        await page.goto(f"{base}/portal/reports/{name}?{QUERY}")
                        await page.screenshot(path=str(outdir / f"reports-{name}{suffix}.png"),
                                              full_page=True)
                    await context.close()
                await browser.close()
        finally:
            server.should_exit = True
            await serving
            await providers.close_all(ctx)
            await ctx.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/screenshots")))

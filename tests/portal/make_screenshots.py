"""Screenshots of the pages issue 10 changed: the outbox (development and production), the
staff page with the operator role, the sign-in page refusing a password, the organisation's
EHR frame origins (refused, then saved), a refused retention period (issue 18) and the
self-hosted API docs.

Run: ``.venv/bin/python -m tests.portal.make_screenshots [OUTDIR]`` from the repository root;
writes ``portal-outbox-{dev,production}``, ``portal-staff-operator`` and
``portal-signin-failed`` at 1280×800 and 390×844 (``-phone``), default OUTDIR
docs/screenshots. One process: a fresh SQLite database seeded with the notification test
helpers (two outbox messages of the demo clinic, one of another organisation), the app served
by uvicorn on loopback, Debian's Chromium driven by Playwright.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import uvicorn
from playwright.async_api import Page, async_playwright

from openvisit.app import create_app
from openvisit.context import AppContext
from openvisit.db import Database
from openvisit.migrate import upgrade_async
from openvisit.models import StaffAccount, utcnow
from openvisit.portal.signin.service import get_or_create_organisation
from tests.notify.support import make_appointment, make_site, run_jobs
from tests.portal.conftest import PASSWORD, password_hash
from tests.support.backend import make_settings

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
SIZES = {"": (1280, 800), "-phone": (390, 844)}


async def _seed(ctx: AppContext) -> None:
    clinic = await make_site(ctx, slug="default", name="Sandbox Family Clinic", offsets=[])
    other = await make_site(ctx, slug="elsewhere", name="Other Hospital", offsets=[])
    soon = utcnow() + timedelta(days=2)
    await make_appointment(ctx, clinic, start_at=soon, mobile="+12025550142")
    await make_appointment(ctx, clinic, start_at=soon + timedelta(hours=3), mobile=None,
                           email="pat.example@example.org", department="Dermatology")
    await make_appointment(ctx, other, start_at=soon, mobile="+12025550199")
    await run_jobs(ctx)
    async with ctx.transaction() as session:
        org = await get_or_create_organisation(session, "default")
        for name, roles in (("admin", ["org_admin"]), ("night-operator", ["operator"]),
                            ("auditor", ["reporter"]), ("analyst", ["approver", "reporter"])):
            session.add(StaffAccount(organisation_id=org.id, username=name,
                                     password_hash=password_hash(), roles=roles))


async def _sign_in(page: Page, base: str, username: str, password: str = PASSWORD) -> None:
    await page.goto(f"{base}/portal/signin?next=%2Fops%2Foutbox")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.click("form[action='/portal/signin'] button[type=submit]")
    await page.wait_for_load_state()


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
        await _seed(ctx)
        server = uvicorn.Server(uvicorn.Config(create_app(ctx=ctx), host="127.0.0.1", port=port,
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
                    context = await browser.new_context(viewport={"width": width,
                                                                  "height": height},
                                                        is_mobile=phone, has_touch=phone)
                    page = await context.new_page()
                    await _sign_in(page, base, "admin", "not the password at all")
                    await page.screenshot(path=str(outdir / f"portal-signin-failed{suffix}.png"),
                                          full_page=True)
                    ctx.settings = make_settings(url, environment="development", public_url=base)
                    await _sign_in(page, base, "admin")
                    assert page.url.endswith("/ops/outbox"), page.url
                    await page.screenshot(path=str(outdir / f"portal-outbox-dev{suffix}.png"),
                                          full_page=True)
                    await page.goto(f"{base}/portal/staff")
                    await page.screenshot(path=str(outdir / f"portal-staff-operator{suffix}.png"),
                                          full_page=True)
                    # The EHR origins that may frame the visit pages: a wrong one, then saved.
                    await page.goto(f"{base}/portal/organisation")
                    await page.fill("#f-frame_ancestors", "https://ehr.hospital.example/path")
                    await page.click("form[action='/portal/organisation'] button[type=submit]")
                    await page.wait_for_load_state()
                    await page.screenshot(
                        path=str(outdir / f"portal-organisation-frame-error{suffix}.png"),
                        full_page=True)
                    await page.fill("#f-frame_ancestors",
                                    "https://ehr.hospital.example\nhttps://*.epic.example")
                    await page.click("form[action='/portal/organisation'] button[type=submit]")
                    await page.wait_for_load_state()
                    await page.screenshot(
                        path=str(outdir / f"portal-organisation-frames{suffix}.png"),
                        full_page=True)
                    # How long records are kept (issue 18): a refused value, shown in place.
                    await page.fill("#f-retention_audit_days", "7")
                    await page.click("form[action='/portal/organisation'] button[type=submit]")
                    await page.wait_for_load_state()
                    await page.locator("#f-retention_audit_days").scroll_into_view_if_needed()
                    await page.screenshot(
                        path=str(outdir / f"portal-organisation-retention-error{suffix}.png"))
                    await page.goto(f"{base}/api/docs")
                    await page.wait_for_selector(".swagger-ui .info", timeout=15_000)
                    await page.screenshot(path=str(outdir / f"api-docs{suffix}.png"))
                    await context.clear_cookies()
                    ctx.settings = make_settings(url, environment="production", public_url=base)
                    await _sign_in(page, base, "night-operator")
                    await page.screenshot(
                        path=str(outdir / f"portal-outbox-production{suffix}.png"),
                        full_page=True)
                    await context.close()
                await browser.close()
        finally:
            server.should_exit = True
            await serving
            await ctx.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/screenshots")))

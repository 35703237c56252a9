"""Screenshots of an endpoint's write-back page (issue 13 item 5): with sent, retrying,
failed and blocked write-backs, and with the settings refused; and of the organisation page
with its clinician label mode and department names (issue 15 item 14).

Run: ``.venv/bin/python -m tests.portal.make_writeback_screenshots [OUTDIR]`` from the
repository root; writes ``portal-writeback``, ``portal-writeback-error`` and
``portal-organisation-departments``, ``portal-records-feed-off`` (top of the page) at
1280×800 and
390×844 (``-phone``), default OUTDIR docs/screenshots. The rows are planted in a fresh SQLite
database (the EHR's messages as Medplum words them); the app is served by uvicorn on
loopback and Debian's Chromium is driven by Playwright.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

from openvisit.context import AppContext
from openvisit.models import EhrEndpoint, StaffAccount, Writeback, utcnow
from openvisit.notify import departments
from openvisit.portal.signin.service import get_or_create_organisation
from tests.portal.conftest import PASSWORD, password_hash
from tests.support.screenshots import SIZES, served

ROWS = [  # what, event kind, state, attempts, http status, error, server ref
    ("audit", "joined", "sent", 1, None, None, "AuditEvent/7d1c0b9e"),
    ("audit", "started", "sent", 1, None, None, "AuditEvent/2f90aa41"),
    ("encounter", "started", "failed", 1, 404,
     "HTTP 404: Not found (Encounter/enc-4471 does not exist)", None),
    ("audit", "admitted", "blocked", 0, None,
     "Waits for write-back 3 of the same visit, which failed.", None),
    ("audit", "joined", "retrying", 4, 503, "HTTP 503: Service unavailable", None),
    ("message", "reminder", "sent", 1, None, None, "Communication/51be02c3"),
]


async def _seed(ctx: AppContext) -> str:
    async with ctx.transaction() as session:
        org = await get_or_create_organisation(session, "default")
        session.add(StaffAccount(organisation_id=org.id, username="admin",
                                 password_hash=password_hash(), roles=["org_admin"]))
        endpoint = EhrEndpoint(organisation_id=org.id, name="Epic test (POC)", vendor="epic",
                               environment="test",
                               fhir_base="https://fhir.hospital.example/api/FHIR/R4",
                               client_id="openvisit", state="approved",
                               options={"writeback": {"enabled": True, "patient_arrived": True,
                                                      "appointment_status": True}})
        session.add(endpoint)
        await session.flush()
        for code, lang, name in (("10501", "", "Family medicine"),
                                 ("10501", "es", "Medicina familiar"),
                                 ("CARD-OUTPT-TELEHEALTH", "", "Cardiology video clinic")):
            await departments.set_name(session, organisation_id=org.id, code=code,
                                       language=lang, name=name, actor="shots")
        start = utcnow() - timedelta(minutes=30)
        for i, (what, kind, state, attempts, status, error, ref) in enumerate(ROWS):
            session.add(Writeback(endpoint_id=endpoint.id, order_key="v1", key=f"shot.{i}",
                                  what=what, event_kind=kind, state=state, attempts=attempts,
                                  http_status=status, error=error, server_ref=ref,
                                  created_at=start + timedelta(minutes=i),
                                  sent_at=start + timedelta(minutes=i, seconds=1) if ref
                                  else None))
        return str(endpoint.id)


async def main(outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    async with served(_seed) as run:
        base, endpoint = run.base, run.seeded
        for suffix, (width, height) in SIZES.items():
            phone = suffix == "-phone"
            context = await run.browser.new_context(viewport={"width": width, "height": height},
                                                    is_mobile=phone, has_touch=phone)
            page = await context.new_page()
            await page.goto(f"{base}/portal/signin?next=%2Fportal")
            await page.fill("input[name=username]", "admin")
            await page.fill("input[name=password]", PASSWORD)
            await page.click("form[action='/portal/signin'] button[type=submit]")
            await page.wait_for_load_state()
            await page.goto(f"{base}/portal/endpoints/{endpoint}/writeback")
            await page.screenshot(path=str(outdir / f"portal-writeback{suffix}.png"),
                                  full_page=True)
            width_used = await page.evaluate("document.documentElement.scrollWidth")
            assert width_used <= width, f"{width_used}px wide at {width}"
            await page.fill("#f-webhook_url", "https://paging.hospital.example/ov")
            await page.fill("#f-webhook_secret", "too-short")
            await page.click(f"form[action='/portal/endpoints/{endpoint}/writeback'] "
                             "button[type=submit]")
            await page.wait_for_load_state()
            await page.screenshot(path=str(outdir / f"portal-writeback-error{suffix}.png"),
                                  full_page=True)
            await page.goto(f"{base}/portal/endpoints/{endpoint}/records")
            await page.screenshot(path=str(outdir / f"portal-records-feed-off{suffix}.png"))
            await page.goto(f"{base}/portal/organisation")
            await page.screenshot(
                path=str(outdir / f"portal-organisation-departments{suffix}.png"),
                full_page=True)
            width_used = await page.evaluate("document.documentElement.scrollWidth")
            assert width_used <= width, f"organisation {width_used}px wide at {width}"
            await context.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/screenshots")))

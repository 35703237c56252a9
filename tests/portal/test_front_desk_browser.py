"""The front desk's queue in Chromium: a patient starts waiting and the page says so by itself
(Server-Sent Events over the bus, then a refetch), by department; axe finds nothing serious.

Screenshots (``portal-queue-front-desk*``) are kept when ``OPENVISIT_E2E_SCREENSHOTS`` names
a directory."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from playwright.async_api import expect

from openvisit.context import AppContext
from openvisit.models import DepartmentName, EhrEndpoint, StaffAccount, utcnow
from openvisit.models.visit import Appointment
from openvisit.portal.signin.service import get_or_create_organisation
from openvisit.visits import lobby
from openvisit.visits import service as visits
from tests.e2e.axe import violations
from tests.portal.conftest import PASSWORD, password_hash
from tests.support.screenshots import SIZES, served
from tests.visits.support import Links


async def _seed(ctx: AppContext) -> list[str]:
    async with ctx.transaction() as session:
        org = await get_or_create_organisation(session, "acme", display_name="Acme clinic")
        org.timezone = "UTC"
        session.add(StaffAccount(organisation_id=org.id, username="desk",
                                 password_hash=password_hash(), roles=["front_desk"]))
        session.add(DepartmentName(organisation_id=org.id, code="10501", language="",
                                   name="Family medicine"))
        links = []
        for n, department in enumerate(("10501", "10501", "20777")):
            endpoint = EhrEndpoint(organisation_id=org.id, client_id="openvisit",
                                   fhir_base=f"https://acme.test/fhir/{n}")
            session.add(endpoint)
            await session.flush()
            appt = Appointment(organisation_id=org.id, endpoint_id=endpoint.id,
                               ehr_appointment_id=f"acme-{n}", department=department,
                               start_at=min(utcnow() + timedelta(minutes=10 + 15 * n),
                                            utcnow().replace(hour=23, minute=50)),
                               **ctx.refs.columns(f"Patient/{n}"))
            session.add(appt)
            await session.flush()
            visit = await visits.open_visit(session, app=ctx, appointment=appt)
            links.append(await visits.seat_link(session, app=ctx, visit=visit,
                                                role="patient", patient_ref=f"Patient/{n}"))
    return links


async def _join(ctx: AppContext, link: str) -> None:
    async with ctx.transaction() as session:
        await lobby.join(session, app=ctx, token=Links.token(link), connection_id="p.1")


async def test_the_front_desk_sees_a_patient_start_waiting_without_reloading() -> None:
    keep = os.environ.get("OPENVISIT_E2E_SCREENSHOTS")
    async with served(_seed) as app:
        links: list[str] = app.seeded
        for suffix, (width, height) in SIZES.items():
            phone = suffix == "-phone"
            context = await app.browser.new_context(viewport={"width": width, "height": height},
                                                    is_mobile=phone, has_touch=phone)
            page: Any = await context.new_page()
            await page.goto(f"{app.base}/portal/signin?next=/portal/queue")
            await page.fill("input[name=username]", "desk")
            await page.fill("input[name=password]", PASSWORD)
            await page.click("form[action='/portal/signin'] button[type=submit]")
            await page.wait_for_url("**/portal/queue")
            summary = page.locator("#queue-summary")
            if not phone:
                assert (await summary.inner_text()).strip() == "Nobody is waiting"
                # The event stream is open (its "ready" made the page refetch and say so).
                await expect(page.locator("[data-queue-status]")).to_contain_text("Updated")
                await _join(app.ctx, links[0])
                await expect(summary).to_contain_text("1 patient waiting", timeout=15_000)
                assert await page.locator("[data-seat-state=waiting]").count() == 1
                assert await page.locator("[data-open-visit]").count() == 0
                assert "(1)" in await page.title()
                assert await violations(page) == []
            # One department: the dermatology visit only, nobody waiting there.
            await page.select_option("#q-department", "20777")
            await page.click(".queue-filter button[type=submit]")
            await page.wait_for_url("**department=20777**")
            assert (await summary.inner_text()).strip() == "Nobody is waiting"
            assert await page.locator("[data-queue-row]").count() == 1
            await page.select_option("#q-department", "10501")
            await page.click(".queue-filter button[type=submit]")
            await page.wait_for_url("**department=10501**")
            assert await page.locator("[data-queue-row]").count() == 2
            assert await page.locator("[data-seat-state=waiting]").count() == 1
            if keep:
                await page.screenshot(
                    path=str(Path(keep) / f"portal-queue-front-desk{suffix}.png"),
                    full_page=True)
            await context.close()

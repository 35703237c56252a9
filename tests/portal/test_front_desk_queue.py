"""The front desk's clinic queue in the portal (issue 15 item 3, "and of a department for
front-desk staff"): a role an org admin grants, today's visits of the organisation or one
department, who is waiting; nothing to open (admitting is a clinician's)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from openvisit.context import AppContext
from openvisit.models import DepartmentName, EhrEndpoint, Organisation, StaffAccount, utcnow
from openvisit.models.visit import Appointment
from openvisit.visits import lobby
from openvisit.visits import service as visits
from tests.portal.conftest import Browser, password_hash, sign_in
from tests.visits.support import Links

BrowserFactory = Callable[[str], Awaitable[Browser]]


async def _day(ctx: AppContext) -> None:
    """Two visits of acme today (family medicine, with a patient waiting; dermatology) and
    one of another organisation (waiting too: it must not show)."""
    async with ctx.transaction() as session:
        orgs = {o.slug: o for o in await session.scalars(select(Organisation))}
        acme = orgs["acme"]
        acme.timezone = "UTC"
        session.add(StaffAccount(organisation_id=acme.id, username="desk",
                                 password_hash=password_hash(), roles=["front_desk"]))
        session.add(DepartmentName(organisation_id=acme.id, code="10501", language="",
                                   name="Family medicine"))
        links = []
        for org, department in ((acme, "10501"), (acme, "20777"), (orgs["other"], "10501")):
            endpoint = EhrEndpoint(organisation_id=org.id, fhir_base=f"https://{org.slug}.test/fhir/{department}",
                                   client_id="openvisit")
            session.add(endpoint)
            await session.flush()
            appt = Appointment(organisation_id=org.id, endpoint_id=endpoint.id,
                               ehr_appointment_id=f"{org.slug}-{department}",
                               start_at=min(utcnow() + timedelta(minutes=10),
                                            utcnow().replace(hour=23, minute=50)),
                               department=department, **ctx.refs.columns("Patient/1"))
            session.add(appt)
            await session.flush()
            visit = await visits.open_visit(session, app=ctx, appointment=appt)
            links.append(await visits.seat_link(session, app=ctx, visit=visit, role="patient",
                                                patient_ref="Patient/1"))
    for link in (links[0], links[2]):
        async with ctx.transaction() as session:
            await lobby.join(session, app=ctx, token=Links.token(link), connection_id="p")


async def test_it_shows_the_front_desk_who_is_waiting_by_department(
        app: FastAPI, ctx: AppContext, browser: BrowserFactory) -> None:
    await _day(ctx)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://testserver") as desk:
        assert (await sign_in(desk, "desk")).status_code == 303
        portal = await desk.get("/portal")
        assert 'href="/portal/queue"' in portal.text
        page = await desk.get("/portal/queue")
        assert page.status_code == 200
        text = page.text
        assert "1 patient waiting" in text and "Family medicine" in text and "20777" in text
        assert text.count("data-queue-row=") == 2  # acme's two, not the other clinic's
        assert "Open visit" not in text and "/queue/visits/" not in text
        assert '"eventsUrl": "/portal/queue/events"' in text
        one = await desk.get("/portal/queue/rows", params={"department": "20777"})
        assert one.status_code == 200
        assert "Nobody is waiting" in one.text and one.text.count("data-queue-row=") == 1
        chosen = await desk.get("/portal/queue", params={"department": "10501"})
        assert '<option value="10501" selected>Family medicine</option>' in chosen.text
        assert "/portal/queue/rows?lang=en&amp;department=10501" in chosen.text \
            or "department=10501" in chosen.text.split('"rowsUrl"', 1)[1][:80]

    reporter = await browser("reporter")
    for url in ("/portal/queue", "/portal/queue/rows", "/portal/queue/events"):
        refused = await reporter.get(url)
        assert refused.status_code == 403, (url, refused.status_code)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://testserver") as anonymous:
        away = await anonymous.get("/portal/queue")
        assert away.status_code == 303 and "/portal/signin" in away.headers["location"]
        assert (await anonymous.get("/portal/queue/rows")).status_code == 303


async def test_an_org_admin_can_grant_the_front_desk_role(
        ctx: AppContext, browser: BrowserFactory) -> None:
    admin = await browser("admin")
    staff = await admin.get("/portal/staff")
    assert 'value="front_desk"' in staff.text and "Front desk" in staff.text

"""Issue 15 item 3: the clinic queue of a signed-in clinician.

Three personas: the clinician (Practitioner/7), another clinician of the same organisation
(Practitioner/8), and the patient. The queue opens only from a clinician's link, shows only
that clinician's visits of today, and updates live over the bus.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import datetime, timedelta

import httpx
import time_machine
from sqlalchemy import select

from openvisit.context import AppContext
from openvisit.models import Appointment, AuditLog
from openvisit.models.base import utcnow
from openvisit.models.visit import Participant
from openvisit.visits import lobby, service
from tests.visits.support import Links, Seeded, seed_org, serve


async def _visit(ctx: AppContext, seeded: Seeded, *, clinician: str | None,
                 provider_ref: str | None = None, start_at: datetime | None = None,
                 department: str | None = "10501") -> dict[str, str]:
    """A visit (appointment in 10 minutes unless ``start_at``) with a patient seat, and a
    seat for ``clinician`` if given; its links and id."""
    async with ctx.transaction() as session:
        appt = Appointment(
            organisation_id=seeded.organisation.id, endpoint_id=seeded.endpoint.id,
            ehr_appointment_id=f"appt-{uuid.uuid4().hex[:8]}", **ctx.refs.columns("Patient/1"),
            provider_ehr_id=provider_ref, department=department,
            start_at=start_at or utcnow() + timedelta(minutes=10))
        session.add(appt)
        await session.flush()
        visit = await service.open_visit(session, app=ctx, appointment=appt)
        out = {"visit_id": str(visit.id),
               "patient": await service.seat_link(session, app=ctx, visit=visit,
                                                  role="patient", patient_ref="Patient/1")}
        if clinician:
            out["provider"] = await service.seat_link(session, app=ctx, visit=visit,
                                                      role="provider", ehr_user_id=clinician)
    return out


def _queue(url: str, tail: str = "") -> str:
    return "/v/" + Links.token(url) + "/queue" + tail


def _rows(html: str) -> list[str]:
    return re.findall(r'data-queue-row="([0-9a-f-]+)"', html)


async def test_it_shows_only_this_clinicians_visits_of_today(
    client: httpx.AsyncClient, ctx: AppContext,
) -> None:
    seeded = await seed_org(ctx, timezone="Europe/Prague")
    mine = await _visit(ctx, seeded, clinician="Practitioner/7")
    booked_for_me = await _visit(ctx, seeded, clinician=None, provider_ref="Practitioner/7",
                                 start_at=utcnow() + timedelta(minutes=40))
    theirs = await _visit(ctx, seeded, clinician="Practitioner/8",
                          provider_ref="Practitioner/8")
    tomorrow = await _visit(ctx, seeded, clinician="Practitioner/7",
                            start_at=utcnow() + timedelta(days=1, hours=1))
    other_org = await _visit(ctx, await seed_org(ctx), clinician="Practitioner/7")

    page = await client.get(_queue(mine["provider"]) + "?lang=en")
    assert page.status_code == 200 and "no-store" in page.headers["cache-control"]
    assert "Today's visits" in page.text and "Nobody is waiting" in page.text
    assert _rows(page.text) == [mine["visit_id"], booked_for_me["visit_id"]]
    for absent in (theirs, tomorrow, other_org):
        assert absent["visit_id"] not in page.text
    assert "Patient/1" not in page.text and "10501" in page.text  # a reference, never shown
    # The other clinician's queue has their visit only, never mine.
    their_page = await client.get(_queue(theirs["provider"]) + "?lang=en")
    assert _rows(their_page.text) == [theirs["visit_id"]]

    # Opening a visit of the queue: my own seat of it (made for the appointment's provider).
    opened = await client.post(_queue(mine["provider"], f"/visits/{booked_for_me['visit_id']}"))
    assert opened.status_code == 303
    token = opened.headers["location"].rsplit("/v/", 1)[1]
    async with ctx.transaction() as session:
        seat = await session.get(Participant, service.participant_id_of(token))
        assert seat is not None and seat.role == "provider"
        assert seat.ehr_user_id == "Practitioner/7"
        assert str(seat.visit_id) == booked_for_me["visit_id"]
        audited = (await session.execute(select(AuditLog).where(
            AuditLog.action == "visit.open_from_queue"))).scalars().all()
    assert [a.actor for a in audited] == ["Practitioner/7"]
    again = await client.post(_queue(mine["provider"], f"/visits/{booked_for_me['visit_id']}"))
    assert again.headers["location"] == opened.headers["location"]  # the same seat
    # Another clinician's visit never opens from my queue.
    refused = await client.post(_queue(mine["provider"], f"/visits/{theirs['visit_id']}"),
                                headers={"Accept": "application/json"})
    assert refused.status_code == 404


async def test_it_never_opens_for_a_patient_token(
    client: httpx.AsyncClient, ctx: AppContext,
) -> None:
    seeded = await seed_org(ctx)
    visit = await _visit(ctx, seeded, clinician="Practitioner/7")
    async with ctx.transaction() as session:
        row = await service.repo.visit_by_id(session, uuid.UUID(visit["visit_id"]))
        assert row is not None
        guest = await service.seat_link(session, app=ctx, visit=row, role="guest")
    for url in (visit["patient"], guest):
        for tail in ("", "/rows", "/events"):
            page = await client.get(_queue(url, tail) + "?lang=en")
            assert page.status_code == 403, (url, tail)
            assert visit["visit_id"] not in page.text
        post = await client.post(_queue(url, f"/visits/{visit['visit_id']}"))
        assert post.status_code == 403
    bogus = await client.get("/v/AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/queue")
    assert bogus.status_code == 404


async def test_it_shows_who_is_waiting_and_since_when(
    client: httpx.AsyncClient, ctx: AppContext,
) -> None:
    seeded = await seed_org(ctx)
    visit = await _visit(ctx, seeded, clinician="Practitioner/7")
    async with ctx.transaction() as session:
        _visit_row, seat = await lobby.join(session, app=ctx,
                                            token=Links.token(visit["patient"]),
                                            connection_id="p.1")
        since = seat.waiting_since
    assert since is not None
    # From the seat's own waiting_since: a slow machine between join and read changes nothing.
    with time_machine.travel(since + timedelta(minutes=2, seconds=5.5), tick=False):
        rows = await client.get(_queue(visit["provider"], "/rows") + "?lang=en")
        spanish = await client.get(_queue(visit["provider"], "/rows") + "?lang=es")
    assert rows.status_code == 200
    assert 'data-waiting-total="1"' in rows.text and "1 patient waiting" in rows.text
    assert 'data-seat-state="waiting"' in rows.text and "Waiting 2:05" in rows.text
    assert "data-waiting-since=" in rows.text
    assert "1 paciente esperando" in spanish.text and "Esperando 2:05" in spanish.text


async def test_it_stops_opening_the_queue_a_working_day_after_the_links_visit(
    client: httpx.AsyncClient, ctx: AppContext,
) -> None:
    seeded = await seed_org(ctx)
    visit = await _visit(ctx, seeded, clinician="Practitioner/7")
    async with ctx.transaction() as session:
        row = await service.repo.visit_by_id(session, uuid.UUID(visit["visit_id"]))
        assert row is not None and row.window_end is not None
        closed = row.window_end
    hours = ctx.settings.queue_link_hours
    with time_machine.travel(closed + timedelta(hours=hours) - timedelta(minutes=1)):
        assert (await client.get(_queue(visit["provider"]))).status_code == 200
    with time_machine.travel(closed + timedelta(hours=hours, minutes=1)):
        late = await client.get(_queue(visit["provider"]) + "?lang=en")
    assert late.status_code == 410 and "no longer opens the clinic queue" in late.text


async def test_it_nudges_the_queue_page_when_a_patient_starts_waiting(
    ctx: AppContext,
) -> None:
    """The stream says "update" after the patient's join commits (over Redis on the
    PostgreSQL pass), and the rows then show the patient waiting."""
    seeded = await seed_org(ctx)
    visit = await _visit(ctx, seeded, clinician="Practitioner/7")
    async with serve(ctx) as host, httpx.AsyncClient(base_url=f"http://{host}") as http:
        async with http.stream("GET", _queue(visit["provider"], "/events")) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()
            seen: list[str] = []

            async def until(event: str) -> None:
                while f"event: {event}" not in seen:
                    seen.append(await asyncio.wait_for(anext(lines), timeout=10))

            await until("ready")
            async with ctx.transaction() as session:
                await lobby.join(session, app=ctx, token=Links.token(visit["patient"]),
                                 connection_id="p.1")
            await until("update")
        rows = await http.get(_queue(visit["provider"], "/rows") + "?lang=en")
    assert 'data-seat-state="waiting"' in rows.text and "1 patient waiting" in rows.text

"""Issue 15 item 1: the join window binds patients, not clinicians.

A clinician opens the room early; a clinician reopens a visit ended by mistake within
``visit_reopen_minutes`` (10 here, not the default 30: the setting is what counts).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
import time_machine
from sqlalchemy import select

from openvisit.config import Settings
from openvisit.context import AppContext
from openvisit.errors import Gone, PermissionDenied
from openvisit.models import AuditLog
from openvisit.models.base import utcnow
from openvisit.models.visit import Visit, VisitEvent
from openvisit.visits import lobby, opening, service
from tests.support.backend import make_settings
from tests.visits.support import Links, make_appointment, seed_org


@pytest.fixture
def settings(db_url: str) -> Settings:
    return make_settings(db_url, visit_reopen_minutes=10)


async def _visit(ctx: AppContext, *, hours: float = 3) -> Links:
    """A visit whose appointment starts ``hours`` from now: its clinician and patient links."""
    seeded = await seed_org(ctx, timezone="Europe/Rome")
    appt = await make_appointment(ctx, seeded, start_at=utcnow() + timedelta(hours=hours))
    async with ctx.transaction() as session:
        visit = await service.open_visit(session, app=ctx, appointment=appt)
        provider = await service.seat_link(session, app=ctx, visit=visit, role="provider",
                                           ehr_user_id="Practitioner/7")
        patient = await service.seat_link(session, app=ctx, visit=visit, role="patient",
                                          patient_ref="Patient/1")
    return Links(visit.id, provider, patient, {})


def _path(url: str, tail: str = "") -> str:
    return "/v/" + Links.token(url) + tail


async def _events(ctx: AppContext, visit_id: uuid.UUID, kind: str) -> list[VisitEvent]:
    async with ctx.transaction() as session:
        return list((await session.execute(select(VisitEvent).where(
            VisitEvent.visit_id == visit_id, VisitEvent.kind == kind))).scalars())


async def _audits(ctx: AppContext, action: str) -> list[AuditLog]:
    async with ctx.transaction() as session:
        return list((await session.execute(select(AuditLog).where(
            AuditLog.action == action))).scalars())


async def test_it_lets_a_clinician_open_the_room_early_and_keeps_patients_waiting(
    client: httpx.AsyncClient, ctx: AppContext,
) -> None:
    links = await _visit(ctx, hours=3)
    early = await client.get(_path(links.provider) + "?lang=en")
    # The clinician's own wording and a way in, not the patient's "come back then".
    assert early.status_code == 200 and 'data-staff-unavailable="visit_not_open_yet"' in early.text
    assert "The visit is not open yet" in early.text and "Open the room now" in early.text
    assert "Patients can join from" in early.text and "come back then" not in early.text
    assert f'action="{_path(links.provider, "/open-early")}"' in early.text
    # A patient's link cannot open the room, neither by the form nor by the service.
    refused = await client.post(_path(links.patient, "/open-early"),
                                headers={"Accept": "application/json"})
    assert refused.status_code == 403
    async with ctx.transaction() as session:
        with pytest.raises(PermissionDenied):
            await opening.open_early(session, app=ctx, token=Links.token(links.patient))

    opened = await client.post(_path(links.provider, "/open-early"))
    assert opened.status_code == 303 and opened.headers["location"] == _path(links.provider)
    again = await client.post(_path(links.provider, "/open-early"))  # idempotent
    assert again.status_code == 303
    room = await client.get(_path(links.provider))
    assert room.status_code == 200 and "data-roster" in room.text  # the clinician's room
    # The clinician's socket gets in; the patient still has their window and wording.
    async with ctx.transaction() as session:
        _visit_row, seat = await lobby.join(session, app=ctx, token=Links.token(links.provider),
                                            connection_id="page.1")
    assert seat.lobby_state == "admitted"
    async with ctx.transaction() as session:
        with pytest.raises(Gone) as gone:
            await lobby.join(session, app=ctx, token=Links.token(links.patient),
                             connection_id="page.2")
    assert gone.value.code == "visit_not_open_yet"
    patient = await client.get(_path(links.patient) + "?lang=en")
    assert patient.status_code == 200 and "It is a little early" in patient.text
    assert "Please come back then" in patient.text

    events = await _events(ctx, links.visit_id, "opened_early")
    assert len(events) == 1 and events[0].data["early_s"] > 2 * 3600
    audits = await _audits(ctx, "visit.open_early")
    assert [a.actor for a in audits] == ["Practitioner/7"]
    # Once the patients' window opens, the patient joins the lobby as usual.
    with time_machine.travel(utcnow() + timedelta(hours=2, minutes=45)):
        async with ctx.transaction() as session:
            _v, patient_seat = await lobby.join(session, app=ctx,
                                                token=Links.token(links.patient),
                                                connection_id="page.3")
    assert patient_seat.lobby_state == "waiting"


async def test_it_reopens_a_visit_ended_by_mistake_within_the_configured_time(
    client: httpx.AsyncClient, ctx: AppContext,
) -> None:
    links = await _visit(ctx, hours=0.05)
    bearer = {"Authorization": f"Bearer {Links.token(links.provider)}"}
    async with ctx.transaction() as session:
        await lobby.join(session, app=ctx, token=Links.token(links.patient),
                         connection_id="p.1")
    patient_id = service.participant_id_of(Links.token(links.patient))
    admitted = await client.post(
        f"/api/visits/{links.visit_id}/participants/{patient_id}/admit", headers=bearer)
    assert admitted.json()["state"] == "admitted"
    ended = await client.post(f"/api/visits/{links.visit_id}/end", headers=bearer)
    assert ended.json()["status"] == "ended"

    page = await client.get(_path(links.provider) + "?lang=en")
    assert page.status_code == 200 and 'data-staff-unavailable="visit_ended"' in page.text
    assert "Reopen the visit" in page.text and "you can reopen it until" in page.text
    patient_page = await client.get(_path(links.patient) + "?lang=en")
    assert 'data-unavailable="visit_ended"' in patient_page.text  # the patient's own page
    assert "Reopen" not in patient_page.text
    assert (await client.post(_path(links.patient, "/reopen"),
                              headers={"Accept": "application/json"})).status_code == 403

    with time_machine.travel(utcnow() + timedelta(minutes=9)):
        reopened = await client.post(_path(links.provider, "/reopen"))
        assert reopened.status_code == 303
        async with ctx.transaction() as session:
            visit = await session.get(Visit, links.visit_id)
            assert visit is not None and visit.status == "active" and visit.ended_at is None
            # The patient of the reopened visit can join again, with the same link, and
            # waits to be admitted anew although they were in the call when it ended.
            _v, seat = await lobby.join(session, app=ctx, token=Links.token(links.patient),
                                        connection_id="p.2")
        assert seat.lobby_state == "waiting"
        room = await client.get(_path(links.patient) + "?lang=en")
        assert room.status_code == 200 and 'data-step="prejoin"' in room.text
        assert (await client.get(_path(links.provider))).status_code == 200
    events = await _events(ctx, links.visit_id, "reopened")
    assert len(events) == 1 and 9 * 60 <= events[0].data["after_s"] < 10 * 60
    assert [a.actor for a in await _audits(ctx, "visit.reopen")] == ["Practitioner/7"]


async def test_it_refuses_to_reopen_once_the_configured_time_has_passed(
    client: httpx.AsyncClient, ctx: AppContext,
) -> None:
    links = await _visit(ctx, hours=0.05)
    bearer = {"Authorization": f"Bearer {Links.token(links.provider)}"}
    await client.post(f"/api/visits/{links.visit_id}/end", headers=bearer)
    with time_machine.travel(utcnow() + timedelta(minutes=11)):
        page = await client.get(_path(links.provider) + "?lang=en")
        late = await client.post(_path(links.provider, "/reopen"),
                                 headers={"Accept": "application/json"})
    assert page.status_code == 200 and "Reopen the visit" not in page.text
    assert "was ended, so nobody can join it any more" in page.text
    assert late.status_code == 409 and late.json()["error"]["code"] == "reopen_too_late"
    async with ctx.transaction() as session:
        visit = await session.get(Visit, links.visit_id)
        assert visit is not None and visit.status == "ended"
    assert await _events(ctx, links.visit_id, "reopened") == []
    patient = await client.get(_path(links.patient) + "?lang=en")
    assert 'data-unavailable="visit_ended"' in patient.text

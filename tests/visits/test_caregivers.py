"""A patient brings a family member or caregiver (issue 15 item 7): their own guest link,
waiting in the lobby marked "invited by the patient" until the clinician admits them."""

from __future__ import annotations

import subprocess
import sys
import uuid

import httpx
import pytest
from sqlalchemy import select

from openvisit.context import AppContext
from openvisit.errors import InvalidInput
from openvisit.models import AuditLog, Organisation
from openvisit.models.visit import Participant, Visit
from openvisit.visits import caregivers, lobby
from openvisit.visits.roster import Seat, VisitFacts, view_for
from tests.support.backend import subprocess_env
from tests.visits.support import Links, make_visit, seed_org

pytestmark = pytest.mark.backend


def bearer(link: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {Links.token(link)}"}


async def test_it_gives_the_patients_caregiver_a_guest_link_that_waits_for_the_clinician(
    client: httpx.AsyncClient, ctx: AppContext,
) -> None:
    seeded = await seed_org(ctx)
    links = await make_visit(ctx, seeded)
    made = await client.post(f"/api/visits/{links.visit_id}/caregivers",
                             headers=bearer(links.patient))
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["participant"]["role"] == "guest" and body["participant"]["state"] == "invited"
    # The caregiver's link opens a guest's pre-join page; from it they wait in the lobby.
    page = await client.get("/v/" + Links.token(body["url"]))
    assert page.status_code == 200 and '"role": "guest"' in page.text
    assert "data-caregiver" not in page.text  # a caregiver cannot invite anyone in turn
    patient_page = await client.get("/v/" + Links.token(links.patient) + "?lang=es")
    assert "Traer a un familiar o cuidador" in patient_page.text
    async with ctx.transaction() as session:
        seat = await session.get(Participant, uuid.UUID(body["participant"]["id"]))
        assert seat is not None and seat.invited_by == "patient"
        visit = await session.get(Visit, links.visit_id)
        assert visit is not None
        seats = {str(s.id): Seat.of(s) for s in await session.scalars(
            select(Participant).where(Participant.visit_id == visit.id))}
        audit = (await session.scalars(select(AuditLog).where(
            AuditLog.action == "visit.invite_caregiver"))).all()
        assert len(audit) == 1 and audit[0].actor.startswith("seat:")
    # The clinician's roster marks them; the patient's own view shows nobody else.
    provider = next(s for s in seats.values() if s.role == "provider")
    patient = next(s for s in seats.values() if s.role == "patient")
    roster = view_for(provider, seats, VisitFacts.of(visit))["roster"]
    assert [r["by_patient"] for r in roster if r["role"] == "guest"] == [True]
    assert all(not r["by_patient"] for r in roster if r["role"] != "guest")
    assert "roster" not in view_for(patient, seats, VisitFacts.of(visit))
    assert Seat.from_dict(seats[body["participant"]["id"]].to_dict()).by_patient is True


async def test_it_keeps_to_the_organisations_limit_and_only_for_the_patient(
    client: httpx.AsyncClient, ctx: AppContext,
) -> None:
    seeded = await seed_org(ctx)
    links = await make_visit(ctx, seeded, interpreters=1)
    url = f"/api/visits/{links.visit_id}/caregivers"
    for _n in range(2):  # the default: two
        assert (await client.post(url, headers=bearer(links.patient))).status_code == 201
    full = await client.post(url, headers=bearer(links.patient))
    assert full.status_code == 409 and full.json()["error"]["code"] == "caregivers_full"
    assert "the most this clinic allows" in full.json()["error"]["message"]
    # Removing one frees a place.
    async with ctx.transaction() as session:
        seat = await session.scalar(select(Participant).where(
            Participant.visit_id == links.visit_id, Participant.invited_by == "patient"))
        assert seat is not None
        removed = seat.id
    staff = await client.post(f"/api/visits/{links.visit_id}/participants/{removed}/remove",
                              headers=bearer(links.provider))
    assert staff.status_code == 200
    assert (await client.post(url, headers=bearer(links.patient))).status_code == 201
    # Not the clinician, not an interpreter, not the caregiver, not another visit's patient.
    for other in (links.provider, links.extra["interpreter1"]):
        refused = await client.post(url, headers=bearer(other))
        assert refused.status_code == 403, other
    elsewhere = await make_visit(ctx, seeded)
    assert (await client.post(url, headers=bearer(elsewhere.patient))).status_code == 403
    assert (await client.post(url)).status_code == 401


async def test_it_lets_the_clinic_turn_it_off_from_the_command_line(
    client: httpx.AsyncClient, ctx: AppContext, db_url: str,
) -> None:
    seeded = await seed_org(ctx)
    links = await make_visit(ctx, seeded)
    done = subprocess.run([sys.executable, "-m", "openvisit", "org", "patient-guests", "0",
                           "--org", seeded.organisation.slug], env=subprocess_env(db_url),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "patients may invite 0 people" in done.stdout
    async with ctx.transaction() as session:
        with pytest.raises(InvalidInput, match="from 0"):
            await caregivers.set_limit(session, slug=seeded.organisation.slug, most=11,
                                       actor="test")
    refused = await client.post(f"/api/visits/{links.visit_id}/caregivers",
                                headers=bearer(links.patient))
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "caregivers_off"
    page = await client.get("/v/" + Links.token(links.patient))
    assert "data-caregiver" not in page.text
    async with ctx.transaction() as session:
        org = await session.get(Organisation, seeded.organisation.id)
        assert org is not None and org.patient_guests_max == 0
        audit = (await session.scalars(select(AuditLog).where(
            AuditLog.action == "organisation.patient_guests"))).all()
        assert [a.actor for a in audit] == ["cli"]
    assert lobby.INVITABLE_ROLES == ("interpreter", "guest")

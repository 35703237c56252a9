"""Epic's legacy encrypted context link: one key per link kind, GCM unless opted out.

Legacy CBC links are made by the `openssl` command line (an implementation independent of
OpenVisit's); GCM links by `cryptography`'s AESGCM directly, since `openssl enc` cannot do AEAD.
"""

from __future__ import annotations

import base64
import os
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx
import pytest
import time_machine
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select

from openvisit.context import AppContext
from openvisit.ehr_endpoints.service import add_endpoint
from openvisit.launch.epic_config import save_link_key
from openvisit.models import Appointment, AuditLog, EhrEndpoint, Participant, Visit
from openvisit.portal.signin.service import get_or_create_organisation

PATIENT_KEY = os.urandom(32)
PROVIDER_KEY = os.urandom(32)
INVALID = "This Epic visit link could not be read."


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def openssl_link(plain: str, *, key: bytes = PATIENT_KEY) -> str:
    """AES-256-CBC, zero IV, PKCS#7 — encrypted by openssl, not by OpenVisit."""
    out = subprocess.run(
        ["openssl", "enc", "-aes-256-cbc", "-K", key.hex(), "-iv", "00" * 16, "-base64", "-A"],
        input=plain.encode(),
        capture_output=True,
        check=True,
    )
    return out.stdout.decode().strip()


def gcm_link(plain: str, *, key: bytes) -> str:
    """AES-256-GCM, 12-byte nonce prepended (the layout OpenVisit expects), URL-safe base64."""
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, plain.encode(), None)
    return base64.urlsafe_b64encode(nonce + sealed).decode()


async def make_epic_endpoint(
    ctx: AppContext, *, mode: str = "gcm", legacy: bool = False, approved: bool = True,
    slug: str = "epic-clinic",
) -> str:
    """An approved Epic endpoint with a provider key and a different patient key."""
    async with ctx.transaction() as session:
        org = await get_or_create_organisation(session, slug)
        endpoint = await add_endpoint(
            session, app=ctx, organisation=org, fhir_base=f"https://{slug}.example.org/api/FHIR/R4",
            environment="test", vendor="epic", client_id="epic-client", approved=approved,
            actor="test",
        )
        for kind, key in (("provider", PROVIDER_KEY), ("patient", PATIENT_KEY)):
            await save_link_key(session, app=ctx, endpoint=endpoint, kind=kind, secret=b64(key),
                                key_format="base64", mode=mode, allow_legacy_modes=legacy,
                                actor="test")
        return str(endpoint.id)


@pytest.fixture
async def epic_endpoint(ctx: AppContext) -> str:
    """Legacy CBC links (openssl-made), opted in, one key per kind."""
    return await make_epic_endpoint(ctx, mode="cbc-zero-iv", legacy=True)


@pytest.fixture
async def gcm_endpoint(ctx: AppContext) -> str:
    return await make_epic_endpoint(ctx, slug="epic-gcm")


def _context(
    *, timestamp: int, validity: int = 15, conference: str = "", external: str = "PAT-42"
) -> str:
    return (
        f"SessionID=CSN-7788&ConferenceID={conference}&ExternalID={external}"
        f"&ExternalIDType=MRN&FirstName=Alex&LastName=Sample&Timestamp={timestamp}"
        f"&LinkValidityPeriod={validity}&CustomData1=Cardiology"
    )


async def _participants(ctx: AppContext) -> list[Participant]:
    async with ctx.transaction() as session:
        return list((await session.scalars(select(Participant))).all())


async def test_it_lands_a_patient_from_an_encrypted_link_and_keeps_no_names(
    client: httpx.AsyncClient,
    ctx: AppContext,
    epic_endpoint: str,
) -> None:
    link = openssl_link(_context(timestamp=int(time.time())))
    response = await client.get(f"/launch/epic/{epic_endpoint}/patient?data={quote(link)}")
    assert response.status_code == 303
    assert response.headers["location"].startswith(f"{ctx.settings.public_url}/v/")
    again = await client.get(f"/launch/epic/{epic_endpoint}/patient?data={quote(link)}")
    assert again.headers["location"] == response.headers["location"]
    async with ctx.transaction() as session:
        appointment = (await session.scalars(select(Appointment))).one()
        assert appointment.ehr_appointment_id == "CSN/CSN-7788"
        assert appointment.department == "Cardiology"
        assert appointment.source == "epic-link"
        assert len((await session.scalars(select(Participant))).all()) == 1
        stored = (
            " ".join(
                str(v)
                for row in (await session.scalars(select(AuditLog))).all()
                for v in (row.after or {}).values()
            )
            + appointment.ehr_appointment_id
            + str(appointment.patient_ref_hash) + str(appointment.patient_ref_enc)
        )
        assert "Alex" not in stored and "Sample" not in stored


async def test_it_keys_group_visits_on_the_conference_id(
    client: httpx.AsyncClient,
    ctx: AppContext,
    epic_endpoint: str,
) -> None:
    link = openssl_link(_context(timestamp=int(time.time()), conference="CONF-1"))
    assert (
        await client.get(f"/launch/epic/{epic_endpoint}/patient?data={quote(link)}")
    ).status_code == 303
    async with ctx.transaction() as session:
        appointment = (await session.scalars(select(Appointment))).one()
        assert appointment.ehr_appointment_id == "Conference/CONF-1"


async def test_it_refuses_an_expired_link_with_a_clear_page(
    client: httpx.AsyncClient,
    epic_endpoint: str,
) -> None:
    link = openssl_link(_context(timestamp=int(time.time()) - 3600, validity=15))
    page = await client.get(
        f"/launch/epic/{epic_endpoint}/patient?data={quote(link)}", headers={"Accept": "text/html"}
    )
    assert page.status_code == 410
    assert "expired" in page.text.lower()


async def test_it_refuses_a_link_encrypted_with_another_key(
    client: httpx.AsyncClient,
    epic_endpoint: str,
) -> None:
    link = openssl_link(_context(timestamp=int(time.time())), key=os.urandom(32))
    page = await client.get(
        f"/launch/epic/{epic_endpoint}/patient?data={quote(link)}",
        headers={"Accept": "application/json"},
    )
    assert page.status_code == 422
    assert page.json()["error"]["message"]


# --- a patient link never becomes a clinician seat (issue 10, item 1) -----------------------


@pytest.mark.parametrize("mode", ["gcm", "cbc-zero-iv"])
async def test_it_gives_no_seat_to_a_patient_link_sent_to_the_provider_route_in_a_group_visit(
    client: httpx.AsyncClient, ctx: AppContext, mode: str,
) -> None:
    endpoint = await make_epic_endpoint(ctx, mode=mode, legacy=mode != "gcm")
    plain = _context(timestamp=int(time.time()), conference="GROUP-1")
    link = openssl_link(plain) if mode != "gcm" else gcm_link(plain, key=PATIENT_KEY)
    seated = await client.get(f"/launch/epic/{endpoint}/patient?data={quote(link)}")
    assert seated.status_code == 303  # the link is a good patient link

    crossed = await client.get(f"/launch/epic/{endpoint}/provider?data={quote(link)}",
                               headers={"Accept": "application/json"})
    assert crossed.status_code == 422
    assert crossed.json()["error"]["code"] == "epic_link_invalid"
    assert "location" not in crossed.headers and "/v/" not in crossed.text
    page = await client.get(f"/launch/epic/{endpoint}/provider?data={quote(link)}",
                            headers={"Accept": "text/html"})
    assert page.status_code == 422
    assert "data-roster" not in page.text and "/v/" not in page.text
    assert [p.role for p in await _participants(ctx)] == ["patient"]


async def test_it_gives_two_patients_of_a_group_visit_two_distinct_seats(
    client: httpx.AsyncClient, ctx: AppContext, gcm_endpoint: str,
) -> None:
    now = int(time.time())
    first = gcm_link(_context(timestamp=now, conference="GROUP-2", external="PAT-1"),
                     key=PATIENT_KEY)
    second = gcm_link(_context(timestamp=now, conference="GROUP-2", external="PAT-2"),
                      key=PATIENT_KEY)
    a = await client.get(f"/launch/epic/{gcm_endpoint}/patient?data={quote(first)}")
    b = await client.get(f"/launch/epic/{gcm_endpoint}/patient?data={quote(second)}")
    assert a.status_code == b.status_code == 303
    assert a.headers["location"] != b.headers["location"]
    seats = await _participants(ctx)
    assert sorted((p.role, ctx.refs.read(p)) for p in seats) == [
        ("patient", "MRN/PAT-1"), ("patient", "MRN/PAT-2")]
    assert len({p.visit_id for p in seats}) == 1


async def test_it_answers_every_unreadable_link_with_the_same_message(
    client: httpx.AsyncClient, gcm_endpoint: str,
) -> None:
    """No oracle: the other kind's link, another key, a flipped bit and garbage look alike."""
    plain = _context(timestamp=int(time.time()))
    good_patient = gcm_link(plain, key=PATIENT_KEY)
    raw = bytearray(base64.urlsafe_b64decode(gcm_link(plain, key=PROVIDER_KEY)))
    raw[20] ^= 1
    cases = {
        "patient link on the provider route": ("provider", good_patient),
        "provider link on the patient route": ("patient", gcm_link(plain, key=PROVIDER_KEY)),
        "another key": ("provider", gcm_link(plain, key=os.urandom(32))),
        "tampered": ("provider", base64.urlsafe_b64encode(bytes(raw)).decode()),
        "cbc link to a gcm key": ("patient", openssl_link(plain)),
        "garbage": ("provider", "bm90IGEgbGluaw"),
    }
    answers = set()
    for kind, link in cases.values():
        response = await client.get(f"/launch/epic/{gcm_endpoint}/{kind}?data={quote(link)}",
                                    headers={"Accept": "application/json"})
        error = response.json()["error"]
        answers.add((response.status_code, error["code"], error["message"]))
    assert len(answers) == 1, answers
    status, code, message = answers.pop()
    assert (status, code) == (422, "epic_link_invalid") and message.startswith(INVALID)


async def test_it_refuses_the_old_single_key_layout(
    client: httpx.AsyncClient, ctx: AppContext, gcm_endpoint: str,
) -> None:
    async with ctx.transaction() as session:
        endpoint = await session.get(EhrEndpoint, uuid.UUID(gcm_endpoint))
        assert endpoint is not None
        endpoint.options = {**(endpoint.options or {}), "epic_link": {
            "key_enc": ctx.cipher.encrypt(b64(PATIENT_KEY)), "key_format": "base64",
            "mode": "cbc-zero-iv", "param": "data"}}
    link = openssl_link(_context(timestamp=int(time.time())))
    for kind in ("patient", "provider"):
        page = await client.get(f"/launch/epic/{gcm_endpoint}/{kind}?data={quote(link)}",
                                headers={"Accept": "application/json"})
        assert page.status_code == 403
        assert "separate patient key" in page.json()["error"]["message"]
    assert await _participants(ctx) == []


async def test_it_refuses_a_legacy_mode_without_the_opt_in_at_launch_time(
    client: httpx.AsyncClient, ctx: AppContext, epic_endpoint: str,
) -> None:
    async with ctx.transaction() as session:
        endpoint = await session.get(EhrEndpoint, uuid.UUID(epic_endpoint))
        assert endpoint is not None
        options = dict(endpoint.options or {})
        options["epic_link"] = {**options["epic_link"], "allow_legacy_modes": False}
        endpoint.options = options
    link = openssl_link(_context(timestamp=int(time.time())))
    page = await client.get(f"/launch/epic/{epic_endpoint}/patient?data={quote(link)}",
                            headers={"Accept": "application/json"})
    assert page.status_code == 403
    assert "unauthenticated" in page.json()["error"]["message"]
    assert await _participants(ctx) == []


async def test_it_refuses_links_of_an_endpoint_that_is_not_approved(
    client: httpx.AsyncClient, ctx: AppContext,
) -> None:
    endpoint = await make_epic_endpoint(ctx, approved=False, slug="epic-draft")
    link = gcm_link(_context(timestamp=int(time.time())), key=PATIENT_KEY)
    page = await client.get(f"/launch/epic/{endpoint}/patient?data={quote(link)}",
                            headers={"Accept": "application/json"})
    assert page.status_code == 403 and "not approved" in page.json()["error"]["message"]


# --- a join window for visits made from Epic links (issue 10, item 5) -----------------------


async def test_it_gives_an_epic_link_visit_the_join_window_of_its_link(
    client: httpx.AsyncClient, ctx: AppContext, gcm_endpoint: str,
) -> None:
    issued = int(time.time()) - 600
    link = gcm_link(_context(timestamp=issued, validity=20), key=PATIENT_KEY)
    seated = await client.get(f"/launch/epic/{gcm_endpoint}/patient?data={quote(link)}")
    assert seated.status_code == 303
    async with ctx.transaction() as session:
        visit = (await session.scalars(select(Visit))).one()
    before = timedelta(minutes=ctx.settings.join_window_before_minutes)
    after = timedelta(minutes=ctx.settings.join_window_after_minutes)
    start = datetime.fromtimestamp(issued, UTC)
    assert visit.window_start == start - before
    assert visit.window_end == start + timedelta(minutes=20) + after

    # A later link widens the window; an older one (still valid) never narrows it.
    later = gcm_link(_context(timestamp=issued + 600, validity=20), key=PATIENT_KEY)
    assert (await client.get(
        f"/launch/epic/{gcm_endpoint}/patient?data={quote(later)}")).status_code == 303
    assert (await client.get(
        f"/launch/epic/{gcm_endpoint}/patient?data={quote(link)}")).status_code == 303
    async with ctx.transaction() as session:
        visit = (await session.scalars(select(Visit))).one()
    assert visit.window_start == start - before
    assert visit.window_end == start + timedelta(minutes=30) + after

    # The patient's seat is refused once the window has closed, like any visit's.
    path = "/v/" + seated.headers["location"].rsplit("/v/", 1)[1]
    assert (await client.get(path)).status_code == 200
    with time_machine.travel(visit.window_end + timedelta(minutes=1), tick=False):
        over = await client.get(path + "?lang=en")
    # A normal page with a next step for the patient (issue 15 item 10), not an error.
    assert over.status_code == 200 and "This visit has ended" in over.text
    assert 'data-unavailable="visit_ended"' in over.text


async def test_it_uses_the_appointment_start_for_the_window_when_it_is_known(
    client: httpx.AsyncClient, ctx: AppContext, gcm_endpoint: str,
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    async with ctx.transaction() as session:
        endpoint = await session.get(EhrEndpoint, uuid.UUID(gcm_endpoint))
        assert endpoint is not None
        session.add(Appointment(
            organisation_id=endpoint.organisation_id, endpoint_id=endpoint.id,
            ehr_appointment_id="CSN/CSN-7788", source="hl7", status="booked", start_at=start,
            end_at=start + timedelta(minutes=20)))
    link = gcm_link(_context(timestamp=int(time.time())), key=PATIENT_KEY)
    seated = await client.get(f"/launch/epic/{gcm_endpoint}/patient?data={quote(link)}")
    assert seated.status_code == 303
    async with ctx.transaction() as session:
        visit = (await session.scalars(select(Visit))).one()
    assert visit.window_start == start - timedelta(minutes=ctx.settings.join_window_before_minutes)
    early = await client.get("/v/" + seated.headers["location"].rsplit("/v/", 1)[1] + "?lang=en")
    assert early.status_code == 200 and "It is a little early" in early.text
    assert 'data-unavailable="visit_not_open_yet"' in early.text

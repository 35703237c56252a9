"""Epic's legacy encrypted context link, with links made by the `openssl` command line."""

from __future__ import annotations

import base64
import os
import subprocess
import time
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select

from openvisit.context import AppContext
from openvisit.endpoints.service import add_endpoint
from openvisit.models import Appointment, AuditLog, Participant
from openvisit.portal.accounts import get_or_create_organisation

KEY = os.urandom(32)


def openssl_link(plain: str, *, key: bytes = KEY) -> str:
    """AES-256-CBC, zero IV, PKCS#7 — encrypted by openssl, not by OpenVisit."""
    out = subprocess.run(
        ["openssl", "enc", "-aes-256-cbc", "-K", key.hex(), "-iv", "00" * 16, "-base64", "-A"],
        input=plain.encode(),
        capture_output=True,
        check=True,
    )
    return out.stdout.decode().strip()


@pytest.fixture
async def epic_endpoint(ctx: AppContext) -> str:
    async with ctx.transaction() as session:
        org = await get_or_create_organisation(session, "epic-clinic")
        endpoint = await add_endpoint(
            session,
            app=ctx,
            organisation=org,
            fhir_base="https://epic.example.org/api/FHIR/R4",
            environment="test",
            vendor="epic",
            client_id="epic-client",
            approved=True,
            actor="test",
            options={
                "epic_link": {
                    "key_enc": ctx.cipher.encrypt(base64.b64encode(KEY).decode()),
                    "key_format": "base64",
                    "mode": "cbc-zero-iv",
                    "param": "data",
                }
            },
        )
        return str(endpoint.id)


def _context(*, timestamp: int, validity: int = 15, conference: str = "") -> str:
    return (
        f"SessionID=CSN-7788&ConferenceID={conference}&ExternalID=PAT-42"
        f"&ExternalIDType=MRN&FirstName=Alex&LastName=Sample&Timestamp={timestamp}"
        f"&LinkValidityPeriod={validity}&CustomData1=Cardiology"
    )


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
            + str(appointment.patient_ref)
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

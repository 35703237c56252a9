"""A SMART provider seat needs the EHR's validated id_token naming a Practitioner; the launch
``state`` is spent even by an ``error=`` callback (issue 10, item 1 and the low items).

The EHR is the in-process fake of tests/smart (independent JOSE and PKCE), mounted on
OpenVisit's outbound HTTP client; the browser is an httpx client on the in-process app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from openvisit import outbound
from openvisit.app import create_app
from openvisit.context import AppContext
from openvisit.ehr_endpoints.service import add_endpoint
from openvisit.models import Participant, SeenNonce
from openvisit.portal.signin.service import get_or_create_organisation
from tests.smart.fake_ehr import CLIENT_ID, FHIR_BASE, HOST, FakeEhr


@pytest.fixture
async def ehr(ctx: AppContext) -> AsyncIterator[FakeEhr]:
    fake = FakeEhr(client_jwks=lambda: {"keys": []})
    await ctx.http.aclose()
    ctx.http = httpx.AsyncClient(mounts={HOST: httpx.ASGITransport(app=fake.app)}, timeout=5.0)
    # The launch's requests to the EHR go through the outbound guard, to the same fake.
    ctx.services.portal_http = outbound.guarded_client(
        outbound.OutboundPolicy.from_settings(ctx.settings),
        mounts={HOST: httpx.ASGITransport(app=fake.app)},
    )
    async with ctx.transaction() as session:
        org = await get_or_create_organisation(session, "smart-clinic")
        await add_endpoint(
            session, app=ctx, organisation=org, fhir_base=FHIR_BASE, environment="test",
            vendor="generic", client_id=CLIENT_ID, client_secret=fake.client_secret,
            auth_method="client_secret_basic", approved=True, actor="test",
        )
    yield fake


@pytest.fixture
async def browser(ctx: AppContext, ehr: FakeEhr) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx=ctx)),
                                 base_url="http://testserver") as http:
        yield http


async def _callback_url(ctx: AppContext, browser: httpx.AsyncClient) -> str:
    """Launch from the EHR and let the fake EHR authorize: the callback URL with code+state."""
    started = await browser.get(f"/launch?iss={FHIR_BASE}&launch=launch-123")
    assert started.status_code == 303, started.text[:300]
    authorized = await ctx.http.get(started.headers["location"])
    assert authorized.status_code == 302
    return str(authorized.headers["location"])


def _path(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.path}?{parsed.query.decode()}"


async def _seats(ctx: AppContext) -> list[Participant]:
    async with ctx.transaction() as session:
        return list((await session.scalars(select(Participant))).all())


async def test_it_seats_a_practitioner_the_ehr_vouched_for(
    ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient,
) -> None:
    done = await browser.get(_path(await _callback_url(ctx, browser)))
    assert done.status_code == 303 and "/v/" in done.headers["location"]
    assert [(p.role, p.ehr_user_id) for p in await _seats(ctx)] == [
        ("provider", "Practitioner/prac-1")]


@pytest.mark.parametrize(
    "id_token_claims",
    [
        {"fhirUser": f"{FHIR_BASE}/Patient/pat-7"},
        {"fhirUser": f"{FHIR_BASE}/RelatedPerson/rp-1"},
        {"fhirUser": f"{FHIR_BASE}/PractitionerRole/role-1"},
        {"fhirUser": ""},
    ],
    ids=["patient", "related-person", "practitioner-role", "no-fhirUser"],
)
async def test_it_never_seats_a_provider_whose_id_token_names_no_practitioner(
    ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient, id_token_claims: dict[str, Any],
) -> None:
    ehr.id_token_claims = id_token_claims
    refused = await browser.get(_path(await _callback_url(ctx, browser)),
                                headers={"Accept": "application/json"})
    assert refused.status_code == 403, refused.text[:300]
    assert refused.json()["error"]["code"] == "launch_refused"
    assert await _seats(ctx) == []
    assert ehr.hits.get("appointment", 0) == 0  # refused before reading any FHIR data


async def test_it_never_seats_a_provider_whose_token_response_has_no_id_token(
    ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient,
) -> None:
    callback = await _callback_url(ctx, browser)
    ehr.next_answer = (200, {"access_token": "at-1", "token_type": "bearer", "expires_in": 300,
                             "scope": "launch user/Appointment.rs", "appointment": "apt-9",
                             "fhirUser": f"{FHIR_BASE}/Practitioner/prac-1"})
    refused = await browser.get(_path(callback), headers={"Accept": "application/json"})
    assert refused.status_code == 403
    assert "no id_token" in refused.json()["error"]["message"]
    assert await _seats(ctx) == []


async def test_it_spends_the_state_on_an_error_callback_so_a_replay_with_a_code_is_refused(
    ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient,
) -> None:
    callback = httpx.URL(await _callback_url(ctx, browser))
    state, code = callback.params["state"], callback.params["code"]
    denied = await browser.get(f"/launch/callback?state={state}&error=access_denied",
                               headers={"Accept": "application/json"})
    assert denied.status_code == 403
    replay = await browser.get(f"/launch/callback?state={state}&code={code}",
                               headers={"Accept": "application/json"})
    assert replay.status_code == 410
    assert replay.json()["error"]["code"] == "state_replayed"
    assert ehr.hits.get("token", 0) == 0 and await _seats(ctx) == []
    async with ctx.transaction() as session:
        row = (await session.scalars(select(SeenNonce).where(
            SeenNonce.scope == "smart_state"))).one()
    assert row.used_at is not None


async def test_it_spends_the_state_when_the_ehr_refuses_the_code(
    ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient,
) -> None:
    callback = httpx.URL(await _callback_url(ctx, browser))
    state = callback.params["state"]
    wrong = await browser.get(f"/launch/callback?state={state}&code=guessed",
                              headers={"Accept": "application/json"})
    assert wrong.status_code in (400, 403, 502)
    right = await browser.get(f"/launch/callback?state={state}&code={callback.params['code']}",
                              headers={"Accept": "application/json"})
    assert right.status_code == 410 and await _seats(ctx) == []

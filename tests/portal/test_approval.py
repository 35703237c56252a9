"""Approval by SMART sign-in to the sandbox EHR (in process; the EHR checks OpenVisit's
client authentication — secret or private_key_jwt against OpenVisit's JWKS — and PKCE)."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette

from openvisit.context import AppContext
from openvisit.models import AuditLog, EhrEndpoint
from tests.portal.conftest import EHR, FHIR, Browser, endpoint_body
from tests.sandbox.helpers import decision


def ehr_sign_in_url(start: httpx.Response) -> str:
    """Where the approval button's answer page sends the browser (a refresh, not a redirect:
    the portal's form-action allows only its own origin)."""
    assert start.status_code == 200, start.text[:400]
    found = re.search(r'http-equiv="refresh" content="0;url=([^"]+)"', start.text)
    assert found, start.text[:400]
    return html.unescape(found.group(1))

BrowserFactory = Callable[[str], Awaitable[Browser]]


@pytest.fixture
async def ehr_browser(sandbox_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The approver's browser on the EHR's side (its own cookies)."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sandbox_app), base_url=EHR
    ) as http:
        yield http


async def _endpoint(browser: BrowserFactory, **overrides: Any) -> str:
    admin = await browser("admin")
    response = await admin.api("POST", "/api/portal/endpoints", json=endpoint_body(**overrides))
    assert response.status_code == 201, response.text
    assert response.json()["state"] == "awaiting_approval"
    return str(response.json()["id"])


async def _sign_in_at_ehr(
    approver: Browser,
    ehr: httpx.AsyncClient,
    endpoint_id: str,
    *,
    user: str,
    action: str = "approve",
) -> httpx.Response:
    """Portal button → EHR authorize page → pick ``user`` → back at the portal's callback."""
    start = await approver.post(f"/portal/endpoints/{endpoint_id}/approve")
    authorize = ehr_sign_in_url(start)
    params = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
    assert authorize.startswith(f"{EHR}/")
    assert params["scope"] == "openid fhirUser" and params["aud"] == FHIR
    assert params["code_challenge_method"] == "S256"
    assert params["redirect_uri"].endswith("/portal/approval/callback")
    page = await ehr.get(authorize)
    assert page.status_code == 200, page.text[:400]
    decided = await ehr.post(
        "/auth/authorize/decision", data=decision(page.text, user=user, action=action)
    )
    assert decided.status_code in (302, 303)
    callback = decided.headers["location"]
    return await approver.get(callback.replace("http://127.0.0.1:8000", ""))


@pytest.mark.parametrize("auth", ["client_secret_basic", "private_key_jwt"])
async def test_it_approves_when_the_named_ehr_user_signs_in(
    browser: BrowserFactory,
    ehr_browser: httpx.AsyncClient,
    ctx: AppContext,
    auth: str,
) -> None:
    endpoint_id = await _endpoint(
        browser,
        auth_method=auth,
        client_secret=None if auth == "private_key_jwt" else endpoint_body()["client_secret"],
    )
    approver = await browser("approver")
    done = await _sign_in_at_ehr(approver, ehr_browser, endpoint_id, user="Practitioner/prac-1")
    assert done.status_code == 303
    assert done.headers["location"] == f"/portal/endpoints/{endpoint_id}/records?notice=approved"
    async with ctx.transaction() as session:
        endpoint = await session.get(EhrEndpoint, uuid.UUID(endpoint_id))
        assert endpoint is not None and endpoint.state == "approved"
        assert endpoint.approved_by == "Practitioner/prac-1"
        snapshot = endpoint.options["approved_snapshot"]
        assert snapshot["fhir_base"] == FHIR and snapshot["auth_method"] == auth
        entry = await session.scalar(select(AuditLog).where(AuditLog.action == "endpoint.approve"))
        assert entry is not None and entry.actor.startswith("staff:")
        assert entry.before["state"] == "awaiting_approval" and entry.after["state"] == "approved"


async def test_it_accepts_the_approver_written_as_an_absolute_url(
    browser: BrowserFactory,
    ehr_browser: httpx.AsyncClient,
) -> None:
    endpoint_id = await _endpoint(browser, approver_ehr_user=f"{FHIR}/Practitioner/prac-1")
    approver = await browser("approver")
    done = await _sign_in_at_ehr(approver, ehr_browser, endpoint_id, user="Practitioner/prac-1")
    assert done.status_code == 303


async def test_it_refuses_another_ehr_user_and_remembers_the_attempt(
    browser: BrowserFactory,
    ehr_browser: httpx.AsyncClient,
    ctx: AppContext,
) -> None:
    endpoint_id = await _endpoint(browser)
    approver = await browser("approver")
    refused = await _sign_in_at_ehr(approver, ehr_browser, endpoint_id, user="Practitioner/prac-2")
    assert refused.status_code == 403
    assert "Not the named approver" in refused.text
    assert "as Practitioner/prac-2, but this endpoint names Practitioner/prac-1" in refused.text
    assert 'href="/portal/approval"' in refused.text
    async with ctx.transaction() as session:
        endpoint = await session.get(EhrEndpoint, uuid.UUID(endpoint_id))
        assert endpoint is not None and endpoint.state == "awaiting_approval"
        entry = await session.scalar(
            select(AuditLog).where(AuditLog.action == "endpoint.approval_refused")
        )
        assert entry is not None and entry.after == {
            "signed_in_as": "Practitioner/prac-2",
            "approver": "Practitioner/prac-1",
        }


async def test_it_says_so_when_the_approver_declines_at_the_ehr(
    browser: BrowserFactory,
    ehr_browser: httpx.AsyncClient,
) -> None:
    endpoint_id = await _endpoint(browser)
    approver = await browser("approver")
    declined = await _sign_in_at_ehr(
        approver, ehr_browser, endpoint_id, user="Practitioner/prac-1", action="deny"
    )
    assert declined.status_code == 403
    assert "The test EHR did not sign you in: access_denied" in declined.text


async def test_it_refuses_a_replayed_or_foreign_callback(
    browser: BrowserFactory,
    ehr_browser: httpx.AsyncClient,
) -> None:
    endpoint_id = await _endpoint(browser)
    approver, admin = await browser("approver"), await browser("admin")
    start = await approver.post(f"/portal/endpoints/{endpoint_id}/approve")
    page = await ehr_browser.get(ehr_sign_in_url(start))
    decided = await ehr_browser.post(
        "/auth/authorize/decision", data=decision(page.text, user="Practitioner/prac-1")
    )
    callback = decided.headers["location"].replace("http://127.0.0.1:8000", "")
    # The admin is not an approver at all.
    assert (await admin.get(callback)).status_code == 403
    assert (await approver.get(callback)).status_code == 303
    replay = await approver.get(callback)
    assert replay.status_code == 410 and "already used" in replay.text
    forged = await approver.get("/portal/approval/callback?state=forged&code=x")
    assert forged.status_code == 422 and "state mismatch" in forged.text


async def test_it_refuses_when_the_endpoint_changed_during_sign_in(
    browser: BrowserFactory,
    ehr_browser: httpx.AsyncClient,
) -> None:
    endpoint_id = await _endpoint(browser)
    approver, admin = await browser("approver"), await browser("admin")
    start = await approver.post(f"/portal/endpoints/{endpoint_id}/approve")
    await admin.api("PATCH", f"/api/portal/endpoints/{endpoint_id}", json={"client_id": "other"})
    page = await ehr_browser.get(ehr_sign_in_url(start))
    decided = await ehr_browser.post(
        "/auth/authorize/decision", data=decision(page.text, user="Practitioner/prac-1")
    )
    changed = await approver.get(decided.headers["location"].replace("http://127.0.0.1:8000", ""))
    assert changed.status_code == 403 and "was changed while you were signing in" in changed.text


async def test_it_lets_only_approvers_start_an_approval_and_only_when_ready(
    browser: BrowserFactory,
    anonymous: httpx.AsyncClient,
) -> None:
    endpoint_id = await _endpoint(browser)
    for persona in ("admin", "reporter"):
        user = await browser(persona)
        refused = await user.post(f"/portal/endpoints/{endpoint_id}/approve")
        assert refused.status_code == 403 and "Only an approver can approve" in refused.text
    outsider = await browser("outsider")
    assert (await outsider.post(f"/portal/endpoints/{endpoint_id}/approve")).status_code == 403
    admin = await browser("admin")
    draft = (
        await admin.api(
            "POST",
            "/api/portal/endpoints",
            json=endpoint_body(
                fhir_base=FHIR + "/other",
                approver_ehr_user=None,
                client_id="x",
                save_failed_check=True,
            ),
        )
    ).json()
    approver = await browser("approver")
    not_ready = await approver.api("POST", f"/api/portal/endpoints/{draft['id']}/approval")
    assert not_ready.status_code == 422
    assert "names no approver yet" in not_ready.json()["error"]["message"]
    url = (await approver.api("POST", f"/api/portal/endpoints/{endpoint_id}/approval")).json()
    assert url["authorize_url"].startswith(f"{EHR}/auth/authorize?")
    token = (
        await admin.api(
            "POST", "/api/portal/api-tokens", json={"name": "ci", "roles": ["org_admin"]}
        )
    ).json()["token"]
    by_token = await anonymous.post(
        f"/api/portal/endpoints/{endpoint_id}/approval",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert by_token.status_code == 403


async def test_it_spends_the_state_of_a_refused_sign_in(
    browser: BrowserFactory,
    ehr_browser: httpx.AsyncClient,
) -> None:
    endpoint_id = await _endpoint(browser)
    approver = await browser("approver")
    start = await approver.post(f"/portal/endpoints/{endpoint_id}/approve")
    page = await ehr_browser.get(ehr_sign_in_url(start))
    decided = await ehr_browser.post(
        "/auth/authorize/decision", data=decision(page.text, user="Practitioner/prac-1")
    )
    callback = decided.headers["location"].replace("http://127.0.0.1:8000", "")
    state = parse_qs(urlsplit(callback).query)["state"][0]
    # An error answer for the same state first (an attacker, or the EHR on a second try)…
    refused = await approver.get(f"/portal/approval/callback?state={state}&error=access_denied")
    assert refused.status_code == 403
    # …and the real code can no longer be used with it.
    replay = await approver.get(callback)
    assert replay.status_code == 410 and "already used" in replay.text

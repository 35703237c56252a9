"""Staff sign-in through the organisation's IdP (npm oidc-provider), the audit log and the
JSON API's OpenAPI schema."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI

from openvisit.config import Settings
from tests.peers.fixtures import OidcIdp
from tests.portal.conftest import Browser, endpoint_body
from tests.support.backend import make_settings

BrowserFactory = Callable[[str], Awaitable[Browser]]
PUBLIC = "http://127.0.0.1:8000"


@pytest.fixture
def idp(start_oidc_idp: Callable[..., OidcIdp]) -> OidcIdp:
    return start_oidc_idp(
        [f"{PUBLIC}/portal/signin/callback"],
        client_id="portal-tests",
        client_secret="portal-tests-secret-" + "q" * 16,
    )


@pytest.fixture
def settings(db_url: str, idp: OidcIdp) -> Settings:
    return make_settings(
        db_url,
        public_url=PUBLIC,
        oidc_issuer=idp.issuer,
        oidc_client_id=idp.client_id,
        oidc_client_secret=idp.client_secret,
        portal_bootstrap_admin_subjects=["alice"],
    )


@pytest.fixture
async def fresh(app: FastAPI) -> AsyncIterator[Callable[[], httpx.AsyncClient]]:
    opened: list[httpx.AsyncClient] = []

    def make() -> httpx.AsyncClient:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC)
        opened.append(http)
        return http

    yield make
    for http in opened:
        await http.aclose()


async def _idp_sign_in(http: httpx.AsyncClient, idp: OidcIdp, login: str) -> httpx.Response:
    start = await http.get("/portal/signin/idp?next=/portal/sms")
    assert start.status_code == 303
    back = idp.dev_login(start.headers["location"], login)
    assert back.startswith(f"{PUBLIC}/portal/signin/callback?")
    parts = urlsplit(back)
    return await http.get(f"{parts.path}?{parts.query}")


async def test_it_signs_in_through_the_idp_and_bootstraps_the_first_admin(
    fresh: Callable[[], httpx.AsyncClient],
    idp: OidcIdp,
) -> None:
    http = fresh()
    done = await _idp_sign_in(http, idp, "alice")
    assert done.status_code == 303 and done.headers["location"] == "/portal/sms"
    me = (await http.get("/api/portal/me")).json()
    assert me["roles"] == ["org_admin"] and me["display"] == "alice"
    # The admin adds the EHR analyst by IdP subject; the analyst then signs in as approver.
    await http.post(
        "/portal/staff",
        data={
            "csrf_token": me["csrf_token"],
            "kind": "idp",
            "subject": "ehr-analyst",
            "roles": ["approver"],
        },
    )
    analyst = fresh()
    assert (await _idp_sign_in(analyst, idp, "ehr-analyst")).status_code == 303
    assert (await analyst.get("/api/portal/me")).json()["roles"] == ["approver"]


async def test_it_tells_an_unknown_idp_user_whom_to_ask(
    fresh: Callable[[], httpx.AsyncClient],
    idp: OidcIdp,
) -> None:
    refused = await _idp_sign_in(fresh(), idp, "mallory")
    assert refused.status_code == 403
    assert "no OpenVisit account is linked to that identity" in refused.text
    assert "&#39;mallory&#39;" in refused.text or "'mallory'" in refused.text


async def test_it_shows_a_failed_idp_sign_in_on_the_sign_in_page(
    fresh: Callable[[], httpx.AsyncClient],
    idp: OidcIdp,
) -> None:
    http = fresh()
    start = await http.get("/portal/signin/idp")
    state = dict(p.split("=", 1) for p in urlsplit(start.headers["location"]).query.split("&"))[
        "state"
    ]
    back = await http.get(f"/portal/signin/callback?state={state}&error=access_denied")
    assert back.status_code == 401
    assert "sign-in was not completed (access_denied)" in back.text


async def test_it_records_every_change_with_before_and_after(
    browser: BrowserFactory,
) -> None:
    admin = await browser("admin")
    created = (await admin.api("POST", "/api/portal/endpoints", json=endpoint_body())).json()
    await admin.api("PATCH", f"/api/portal/endpoints/{created['id']}", json={"name": "Renamed"})
    await admin.api("PATCH", "/api/portal/organisation", json={"allocation_limit": 500})
    log = (await admin.api("GET", "/api/portal/audit")).json()["entries"]
    actions = [e["action"] for e in log]
    for expected in (
        "endpoint.create",
        "endpoint.submit",
        "endpoint.update",
        "organisation.update",
        "staff.sign_in",
    ):
        assert expected in actions
    update = next(e for e in log if e["action"] == "endpoint.update")
    assert {"field": "name", "before": "Sandbox test", "after": "Renamed"} in update["changes"]
    assert update["actor_label"] == "admin" and update["actor"].startswith("staff:")
    assert "client_secret_enc" not in update["after"]  # secrets never reach the log
    org = next(e for e in log if e["action"] == "organisation.update")
    assert {"field": "allocation_limit", "before": None, "after": 500} in org["changes"]

    filtered = (await admin.api("GET", "/api/portal/audit?action=endpoint.*")).json()["entries"]
    assert {e["action"] for e in filtered} == {
        "endpoint.create",
        "endpoint.submit",
        "endpoint.update",
    }
    by_object = (await admin.api("GET", f"/api/portal/audit?object_id={created['id']}")).json()
    assert len(by_object["entries"]) == 3
    page = await admin.get("/portal/audit?action=endpoint.update")
    assert "Renamed" in page.text and "Sandbox test" in page.text
    bad = await admin.get("/portal/audit?since=yesterday")
    assert bad.status_code == 422 and "&#39;yesterday&#39; is not a date" in bad.text


async def test_it_lets_every_role_read_the_audit_log_of_its_own_organisation_only(
    browser: BrowserFactory,
) -> None:
    admin = await browser("admin")
    await admin.api("PATCH", "/api/portal/organisation", json={"display_name": "Acme Health"})
    for persona in ("approver", "reporter"):
        user = await browser(persona)
        entries = (await user.api("GET", "/api/portal/audit")).json()["entries"]
        assert any(e["action"] == "organisation.update" for e in entries)
    outsider = await browser("outsider")
    entries = (await outsider.api("GET", "/api/portal/audit")).json()["entries"]
    assert not any(e["action"] == "organisation.update" for e in entries)


async def test_it_validates_organisation_settings(browser: BrowserFactory) -> None:
    admin = await browser("admin")
    for body, message in (
        ({"region": "mars"}, "Unknown data region"),
        ({"allocation_limit": -1}, "whole number from 0"),
        ({"default_phone_region": "USA"}, "two-letter country code"),
        ({"timezone": "Nowhere/City"}, "is not a time zone"),
        ({"display_name": " "}, "1–200 characters"),
    ):
        response = await admin.api("PATCH", "/api/portal/organisation", json=body)
        assert response.status_code == 422 and message in response.json()["error"]["message"]
    ok = await admin.api(
        "PATCH", "/api/portal/organisation", json={"region": "eu", "unlimited": True}
    )
    assert ok.json()["region"] == "eu" and ok.json()["allocation_limit"] is None
    reporter = await browser("reporter")
    assert (
        await reporter.api("PATCH", "/api/portal/organisation", json={"region": "us"})
    ).status_code == 403


async def test_it_documents_the_json_api_in_openapi(anonymous: httpx.AsyncClient) -> None:
    schema = (await anonymous.get("/api/openapi.json")).json()
    paths = schema["paths"]
    for path in (
        "/api/portal/endpoints",
        "/api/portal/endpoints/{endpoint_id}",
        "/api/portal/endpoints/{endpoint_id}/approval",
        "/api/portal/endpoints/{endpoint_id}/records",
        "/api/portal/sms/consents",
        "/api/portal/numbers",
        "/api/portal/certificates",
        "/api/portal/audit",
        "/api/portal/staff",
        "/api/portal/api-tokens",
        "/api/portal/checks",
    ):
        assert path in paths, path
    assert not any(p.startswith("/portal") for p in paths)  # HTML pages stay out
    assert "EndpointIn" in schema["components"]["schemas"]

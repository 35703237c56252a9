"""Epic-link clinician seats need the organisation's IdP sign-in (npm oidc-provider) or the
short-lived proof it leaves in the same browser; never a bare link (issue 10, item 1)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import time_machine
from sqlalchemy import select

from openvisit.app import create_app
from openvisit.config import Settings
from openvisit.context import AppContext
from openvisit.models import AuditLog, Participant, ProviderLink
from tests.launch.test_epic_link import PROVIDER_KEY, gcm_link, make_epic_endpoint
from tests.peers.fixtures import OidcIdp
from tests.support.backend import make_settings

IDP_CLIENT = "openvisit-epic"
IDP_SECRET = "idp-secret-" + "e" * 24


def _idp(start_oidc_idp: Callable[..., OidcIdp], public_url: str) -> OidcIdp:
    return start_oidc_idp([f"{public_url}/launch/idp/callback"], client_id=IDP_CLIENT,
                          client_secret=IDP_SECRET)


@pytest.fixture
def settings(db_url: str, request: pytest.FixtureRequest,
             start_oidc_idp: Callable[..., OidcIdp]) -> Settings:
    """IdP configured (default), or ``{"idp": False, ...settings}`` via indirect parametrize."""
    wanted: dict[str, Any] = dict(getattr(request, "param", {}))
    public_url = wanted.pop("public_url", "http://testserver")
    if wanted.pop("idp", True):
        idp = _idp(start_oidc_idp, public_url)
        wanted |= {"oidc_issuer": idp.issuer, "oidc_client_id": IDP_CLIENT,
                   "oidc_client_secret": IDP_SECRET}
    return make_settings(db_url, public_url=public_url, **wanted)


@pytest.fixture
def idp(settings: Settings, start_oidc_idp: Callable[..., OidcIdp]) -> OidcIdp:
    return _idp(start_oidc_idp, settings.public_url)


@pytest.fixture
async def browsers(ctx: AppContext) -> AsyncIterator[Callable[[], httpx.AsyncClient]]:
    """``browsers()`` → a new browser (its own cookie jar) on the in-process app."""
    app = create_app(ctx=ctx)
    opened: list[httpx.AsyncClient] = []

    def make() -> httpx.AsyncClient:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url=ctx.settings.public_url)
        opened.append(http)
        return http

    yield make
    for http in opened:
        await http.aclose()


def provider_link(doctor: str = "DOC-7", *, session: str = "CSN-1") -> str:
    return gcm_link(f"SessionID={session}&ExternalID={doctor}&ExternalIDType=EPIC"
                    f"&Timestamp={int(time.time())}&LinkValidityPeriod=15", key=PROVIDER_KEY)


async def launch(browser: httpx.AsyncClient, endpoint: str, link: str) -> httpx.Response:
    return await browser.get(f"/launch/epic/{endpoint}/provider?data={quote(link)}",
                             headers={"Accept": "text/html"})


async def through_idp(browser: httpx.AsyncClient, idp: OidcIdp, launched: httpx.Response,
                      login: str) -> httpx.Response:
    """From the launch's redirect to /launch/idp, through the IdP, to OpenVisit's callback."""
    assert launched.status_code == 303, launched.text[:300]
    assert "/launch/idp?pending=" in launched.headers["location"]
    to_idp = await browser.get(launched.headers["location"])
    assert to_idp.headers["location"].startswith(idp.issuer)
    back = await asyncio.to_thread(idp.dev_login, to_idp.headers["location"], login)
    assert "/launch/idp/callback?" in back
    return await browser.get(back, headers={"Accept": "text/html"})


async def _rows(ctx: AppContext, model: type[Any]) -> list[Any]:
    async with ctx.transaction() as session:
        return list((await session.scalars(select(model))).all())


def _is_seat(response: httpx.Response, ctx: AppContext) -> bool:
    return response.status_code == 303 and response.headers["location"].startswith(
        f"{ctx.settings.public_url}/v/")


async def test_it_sends_every_epic_link_clinician_through_the_idp_and_links_on_first_use(
    ctx: AppContext, idp: OidcIdp, browsers: Callable[[], httpx.AsyncClient],
) -> None:
    endpoint = await make_epic_endpoint(ctx)
    first = browsers()
    signed_in = await through_idp(first, idp, await launch(first, endpoint, provider_link()),
                                  "dr.seven")
    assert _is_seat(signed_in, ctx)
    cookie = signed_in.headers["set-cookie"]
    assert cookie.startswith("ov_provider_proof=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age=43200" in cookie
    links = await _rows(ctx, ProviderLink)
    assert [(k.ehr_user_id, k.idp_subject) for k in links] == [("Practitioner/DOC-7", "dr.seven")]

    # The same browser, a fresh link: straight to the same seat on the proof.
    again = await launch(first, endpoint, provider_link())
    assert _is_seat(again, ctx) and again.headers["location"] == signed_in.headers["location"]

    # Another browser with the same (bearer) link: the IdP again, although the link exists.
    other = browsers()
    assert "/launch/idp?pending=" in (await launch(other, endpoint, provider_link())).headers[
        "location"]
    assert [p.role for p in await _rows(ctx, Participant)] == ["provider"]


async def test_it_refuses_an_idp_subject_other_than_the_linked_clinician(
    ctx: AppContext, idp: OidcIdp, browsers: Callable[[], httpx.AsyncClient],
) -> None:
    endpoint = await make_epic_endpoint(ctx)
    doctor = browsers()
    assert _is_seat(await through_idp(doctor, idp, await launch(doctor, endpoint,
                                                                  provider_link()), "dr.seven"),
                    ctx)
    intruder = browsers()
    refused = await through_idp(intruder, idp, await launch(intruder, endpoint, provider_link()),
                                "mallory")
    assert refused.status_code == 403
    assert "Signed in as someone else" in refused.text
    assert "set-cookie" not in refused.headers and "/v/" not in refused.text
    assert len(await _rows(ctx, Participant)) == 1
    assert [k.idp_subject for k in await _rows(ctx, ProviderLink)] == ["dr.seven"]


async def test_it_accepts_a_proof_only_for_its_own_clinician_and_only_until_it_expires(
    ctx: AppContext, idp: OidcIdp, browsers: Callable[[], httpx.AsyncClient],
) -> None:
    endpoint = await make_epic_endpoint(ctx)
    browser = browsers()
    assert _is_seat(await through_idp(browser, idp, await launch(browser, endpoint,
                                                                   provider_link()), "dr.seven"),
                    ctx)
    # Another EHR user's link in the same browser: the proof names DOC-7, not DOC-8.
    other_user = await launch(browser, endpoint, provider_link("DOC-8"))
    assert "/launch/idp?pending=" in other_user.headers["location"]
    # A forged cookie value proves nothing.
    forged = browsers()
    forged.cookies.set("ov_provider_proof", "x" * 43)
    assert "/launch/idp?pending=" in (await launch(forged, endpoint, provider_link())).headers[
        "location"]
    # After launch_provider_proof_hours the proof is dead (the browser may still send it).
    later = time.time() + ctx.settings.launch_provider_proof_hours * 3600 + 60
    with time_machine.travel(later, tick=False):
        expired = await launch(browser, endpoint, provider_link())
    assert "/launch/idp?pending=" in expired.headers["location"]


async def test_it_voids_the_proof_when_the_clinician_is_linked_to_someone_else(
    ctx: AppContext, idp: OidcIdp, browsers: Callable[[], httpx.AsyncClient],
) -> None:
    endpoint = await make_epic_endpoint(ctx)
    browser = browsers()
    assert _is_seat(await through_idp(browser, idp, await launch(browser, endpoint,
                                                                   provider_link()), "dr.seven"),
                    ctx)
    async with ctx.transaction() as session:
        link = (await session.scalars(select(ProviderLink))).one()
        link.idp_subject = "dr.replacement"
    assert "/launch/idp?pending=" in (await launch(browser, endpoint, provider_link())).headers[
        "location"]


@pytest.mark.parametrize("settings", [{"public_url": "https://testserver"}], indirect=True)
async def test_it_pins_the_proof_cookie_to_the_origin_on_https(
    ctx: AppContext, idp: OidcIdp, browsers: Callable[[], httpx.AsyncClient],
) -> None:
    endpoint = await make_epic_endpoint(ctx)
    browser = browsers()
    signed_in = await through_idp(browser, idp, await launch(browser, endpoint, provider_link()),
                                  "dr.seven")
    assert _is_seat(signed_in, ctx)
    cookie = signed_in.headers["set-cookie"]
    assert cookie.startswith("__Host-ov_provider_proof=")
    for attribute in ("HttpOnly", "Secure", "SameSite=none", "Path=/"):
        assert attribute in cookie, cookie
    assert "Domain" not in cookie
    assert _is_seat(await launch(browser, endpoint, provider_link()), ctx)


@pytest.mark.parametrize("settings", [{"idp": False, "environment": "production"},
                                      {"idp": False, "environment": "test"}], indirect=True)
async def test_it_refuses_an_epic_link_clinician_when_no_idp_is_configured_outside_development(
    ctx: AppContext, browsers: Callable[[], httpx.AsyncClient],
) -> None:
    endpoint = await make_epic_endpoint(ctx)
    page = await launch(browsers(), endpoint, provider_link())
    assert page.status_code == 403
    assert "Clinician sign-in is not set up" in page.text
    for name in ("OPENVISIT_OIDC_ISSUER", "OPENVISIT_OIDC_CLIENT_ID",
                 "OPENVISIT_OIDC_CLIENT_SECRET"):
        assert name in page.text
    assert "/v/" not in page.text
    assert await _rows(ctx, Participant) == []


@pytest.mark.parametrize("settings", [{"idp": False, "environment": "development"}],
                         indirect=True)
async def test_it_keeps_the_demo_working_without_an_idp_in_development_and_says_so(
    ctx: AppContext, browsers: Callable[[], httpx.AsyncClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoint = await make_epic_endpoint(ctx)
    with caplog.at_level(logging.WARNING):
        seated = await launch(browsers(), endpoint, provider_link())
    assert _is_seat(seated, ctx)
    assert "launch_provider_unverified" in caplog.text
    actions = [row.action for row in await _rows(ctx, AuditLog)]
    assert "launch.provider_unverified" in actions and "launch.provider" not in actions


async def test_it_spends_the_idp_state_even_when_the_idp_answers_with_an_error(
    ctx: AppContext, idp: OidcIdp, browsers: Callable[[], httpx.AsyncClient],
) -> None:
    endpoint = await make_epic_endpoint(ctx)
    browser = browsers()
    launched = await launch(browser, endpoint, provider_link())
    to_idp = await browser.get(launched.headers["location"])
    state = dict(httpx.URL(to_idp.headers["location"]).params)["state"]
    denied = await browser.get(f"/launch/idp/callback?state={state}&error=access_denied",
                               headers={"Accept": "application/json"})
    assert denied.status_code == 401
    replay = await browser.get(f"/launch/idp/callback?state={state}&code=stolen-code",
                               headers={"Accept": "application/json"})
    assert replay.status_code == 410
    assert replay.json()["error"]["code"] == "state_replayed"
    assert await _rows(ctx, Participant) == []


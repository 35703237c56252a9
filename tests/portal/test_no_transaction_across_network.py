"""The portal's live check and approval hold no transaction while they wait on the EHR
(issue 11, item 17): the real MLLP listener, on the same database, keeps answering AA within
100 ms while a check waits 2 s on a slow FHIR server or an approval on a slow token endpoint.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select
from starlette.types import ASGIApp, Receive, Scope, Send

from openvisit.context import AppContext
from openvisit.ehr_endpoints.service import add_endpoint
from openvisit.models import EhrEndpoint, Organisation
from tests.launch.lock_probe import Probe, acks_during, assert_unblocked
from tests.portal.conftest import EHR, FAKE, SLOW_SECONDS, Browser, endpoint_body
from tests.portal.test_approval import ehr_sign_in_url
from tests.sandbox.helpers import decision

pytestmark = pytest.mark.peers
BrowserFactory = Callable[[str], Awaitable[Browser]]
SLOW_BASE = f"{FAKE}/slow"


class SlowToken:
    """The sandbox EHR, with a token endpoint that waits ``delay`` seconds when set."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.delay = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/auth/token" and self.delay:
            await asyncio.sleep(self.delay)
        await self.app(scope, receive, send)


@pytest.fixture
def sandbox_app(sandbox_app: ASGIApp) -> SlowToken:
    return SlowToken(sandbox_app)


def _fast(probe: Probe) -> None:
    assert_unblocked(probe, slow_seconds=SLOW_SECONDS, what="the portal's wait")


async def test_it_acknowledges_siu_bookings_during_a_live_check_of_a_slow_fhir_server(
    browser: BrowserFactory, ctx: AppContext, db_url: str, tmp_path: Path,
) -> None:
    admin = await browser("admin")
    checked, probe = await acks_during(ctx, db_url, tmp_path, admin.api(
        "POST", "/api/portal/checks", json={"fhir_base": SLOW_BASE, "environment": "test",
                                            "vendor": "generic",
                                            "auth_method": "private_key_jwt"}))
    assert checked.status_code == 200, checked.text[:300]
    _fast(probe)


async def test_it_acknowledges_siu_bookings_while_a_saved_endpoint_is_checked_again(
    browser: BrowserFactory, ctx: AppContext, db_url: str, tmp_path: Path,
) -> None:
    admin = await browser("admin")
    async with ctx.transaction() as session:
        org = await session.scalar(select(Organisation).where(Organisation.slug == "acme"))
        assert org is not None
        endpoint = await add_endpoint(session, app=ctx, organisation=org, fhir_base=SLOW_BASE,
                                      environment="test", vendor="generic",
                                      client_id="openvisit", actor="test")
        endpoint_id = endpoint.id
    rechecked, probe = await acks_during(
        ctx, db_url, tmp_path, admin.post(f"/portal/endpoints/{endpoint_id}/check"))
    assert rechecked.status_code == 303, rechecked.text[:300]
    assert "notice=check_failed" in rechecked.headers["location"]
    _fast(probe)
    async with ctx.db.read() as session:
        saved = await session.get(EhrEndpoint, endpoint_id)
        assert saved is not None and saved.options["check"]["fhir_base"] == SLOW_BASE


async def test_it_acknowledges_siu_bookings_while_an_endpoint_is_added_against_a_slow_server(
    browser: BrowserFactory, ctx: AppContext, db_url: str, tmp_path: Path,
) -> None:
    admin = await browser("admin")
    body = {**endpoint_body(fhir_base=SLOW_BASE), "save_draft": "on"}
    body.pop("client_secret")
    body["auth_method"] = "private_key_jwt"
    created, probe = await acks_during(ctx, db_url, tmp_path,
                                       admin.post("/portal/endpoints", data=body))
    assert created.status_code == 303, created.text[:300]
    _fast(probe)


@pytest.fixture
async def ehr_browser(sandbox_app: SlowToken) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox_app),
                                 base_url=EHR) as http:
        yield http


async def test_it_acknowledges_siu_bookings_while_an_approval_waits_on_a_slow_token_endpoint(
    browser: BrowserFactory, ehr_browser: httpx.AsyncClient, sandbox_app: SlowToken,
    ctx: AppContext, db_url: str, tmp_path: Path,
) -> None:
    admin = await browser("admin")
    made = await admin.api("POST", "/api/portal/endpoints", json=endpoint_body())
    assert made.status_code == 201, made.text
    endpoint_id = made.json()["id"]
    approver = await browser("approver")
    start = await approver.post(f"/portal/endpoints/{endpoint_id}/approve")
    authorize_url = ehr_sign_in_url(start)
    assert parse_qs(urlsplit(authorize_url).query)["scope"] == ["openid fhirUser"]
    page = await ehr_browser.get(authorize_url)
    decided = await ehr_browser.post("/auth/authorize/decision",
                                     data=decision(page.text, user="Practitioner/prac-1"))
    callback = decided.headers["location"].replace("http://127.0.0.1:8000", "")
    sandbox_app.delay = SLOW_SECONDS
    done, probe = await acks_during(ctx, db_url, tmp_path, approver.get(callback))
    assert done.status_code == 303, done.text[:300]
    assert done.headers["location"].endswith("?notice=approved")
    _fast(probe)
    async with ctx.db.read() as session:
        endpoint = await session.get(EhrEndpoint, uuid.UUID(endpoint_id))
        assert endpoint is not None and endpoint.state == "approved"

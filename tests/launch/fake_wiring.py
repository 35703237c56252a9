"""Wire the in-process fake EHR of tests/smart to an in-process OpenVisit.

OpenVisit's launch requests go through the outbound guard (:func:`openvisit.outbound.
portal_http`); both that client and the context's plain client are mounted on the fake, so a
launch talks to a real ASGI server over httpx, never to a mock.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from openvisit import outbound
from openvisit.context import AppContext
from openvisit.ehr_endpoints.service import add_endpoint
from openvisit.portal.signin.service import get_or_create_organisation
from tests.smart.fake_ehr import CLIENT_ID, FHIR_BASE, HOST, FakeEhr


async def wire(ctx: AppContext, fake: FakeEhr, **endpoint: Any) -> uuid.UUID:
    """Mount ``fake`` on OpenVisit's outbound clients and add its approved endpoint."""
    await ctx.http.aclose()
    ctx.http = httpx.AsyncClient(mounts={HOST: httpx.ASGITransport(app=fake.app)}, timeout=10.0)
    ctx.services.portal_http = outbound.guarded_client(
        outbound.OutboundPolicy.from_settings(ctx.settings),
        mounts={HOST: httpx.ASGITransport(app=fake.app)},
    )
    values: dict[str, Any] = {
        "environment": "test", "vendor": "generic", "client_id": CLIENT_ID,
        "client_secret": fake.client_secret, "auth_method": "client_secret_basic",
    }
    values.update(endpoint)
    async with ctx.transaction() as session:
        org = await get_or_create_organisation(session, "smart-clinic")
        added = await add_endpoint(session, app=ctx, organisation=org, fhir_base=FHIR_BASE,
                                   approved=True, actor="test", **values)
        return added.id


def path_of(url: str) -> str:
    """``/path?query`` of an absolute URL (for the in-process browser)."""
    parsed = httpx.URL(url)
    return f"{parsed.path}?{parsed.query.decode()}"


async def authorize(ctx: AppContext, started: httpx.Response) -> str:
    """Let the fake EHR answer OpenVisit's authorize redirect; the callback path it sends."""
    assert started.status_code == 303, started.text[:400]
    authorized = await ctx.http.get(started.headers["location"])
    assert authorized.status_code == 302, authorized.text[:400]
    return path_of(str(authorized.headers["location"]))

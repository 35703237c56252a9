"""Security headers, framing and what a production deployment exposes (issue 10 items 13, low).

Personas: a patient's room page, a portal page, an anonymous visitor of the operations pages.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import update

from openvisit.app import create_app
from openvisit.context import AppContext
from openvisit.errors import InvalidInput
from openvisit.models import Organisation
from openvisit.web.security import normalise_origin, parse_origins
from tests.support.backend import make_settings
from tests.visits.support import Links, make_visit, seed_org


def directives(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    return {
        part.strip().split(" ", 1)[0]: part.strip().partition(" ")[2]
        for part in policy.split(";")
        if part.strip()
    }


@pytest.fixture
async def http(ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ctx=ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_it_never_lets_a_room_page_be_framed_by_default(
    ctx: AppContext, http: httpx.AsyncClient
) -> None:
    links = await make_visit(ctx, await seed_org(ctx))
    page = await http.get(f"/v/{Links.token(links.patient)}")
    assert page.status_code == 200
    csp = directives(page)
    assert csp["frame-ancestors"] == "'none'"
    assert page.headers["x-frame-options"] == "DENY"
    # The socket may go to this deployment only, never to any ws:/wss: host.
    assert csp["connect-src"].split() == ["'self'", "http://127.0.0.1:8000", "ws://127.0.0.1:8000"]
    assert csp["form-action"].split() == ["'self'", "http://127.0.0.1:8000"]
    assert "mediastream:" in csp["media-src"]


async def test_it_lets_the_organisations_ehr_origins_frame_its_rooms_only(
    ctx: AppContext, http: httpx.AsyncClient
) -> None:
    ours, theirs = await seed_org(ctx), await seed_org(ctx)
    async with ctx.transaction() as session:
        await session.execute(
            update(Organisation)
            .where(Organisation.id == ours.organisation.id)
            .values(frame_ancestors=["https://ehr.hospital.example"])
        )
    own = await http.get(f"/v/{Links.token((await make_visit(ctx, ours)).provider)}")
    other = await http.get(f"/v/{Links.token((await make_visit(ctx, theirs)).provider)}")
    assert directives(own)["frame-ancestors"] == "https://ehr.hospital.example"
    assert "x-frame-options" not in own.headers
    assert directives(other)["frame-ancestors"] == "'none'"


async def test_it_sends_a_strict_policy_on_portal_pages_and_json(
    http: httpx.AsyncClient,
) -> None:
    signin = await http.get("/portal/signin")
    csp = directives(signin)
    assert csp["form-action"].split() == ["'self'", "http://127.0.0.1:8000"]
    assert csp["frame-ancestors"] == "'none'" and csp["script-src"] == "'self'"
    api = await http.get("/healthz")
    assert directives(api)["default-src"] == "'none'"
    assert "strict-transport-security" not in api.headers  # http public URL


async def test_it_sends_hsts_when_the_public_url_is_https(db_url: str) -> None:
    settings = make_settings(db_url, public_url="https://visits.hospital.example")
    ctx = AppContext.create(settings)
    await ctx.start()
    try:
        transport = httpx.ASGITransport(app=create_app(ctx=ctx))
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            response = await c.get("/healthz")
        assert response.headers["strict-transport-security"].startswith("max-age=31536000")
    finally:
        await ctx.close()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://EHR.Hospital.example/", "https://ehr.hospital.example"),
        ("https://ehr.hospital.example:8443", "https://ehr.hospital.example:8443"),
        ("https://*.epic.hospital.example", "https://*.epic.hospital.example"),
        ("http://localhost:9000", "http://localhost:9000"),
    ],
)
def test_it_normalises_ehr_origins(given: str, expected: str) -> None:
    assert normalise_origin(given, allow_http=False) == expected


@pytest.mark.parametrize(
    "given",
    [
        "https://ehr.example/path",
        "https://ehr.example; script-src *",
        "'unsafe-inline'",
        "javascript:alert(1)",
        "http://ehr.example",  # http only for localhost
        "https://ehr.example:99999",
        "*",
        "https://ehr example",
        "https://ehr.example?x=1",
    ],
)
def test_it_refuses_what_is_not_an_https_origin(given: str) -> None:
    with pytest.raises(InvalidInput):
        parse_origins([given], allow_http=False)


async def test_it_exposes_no_schema_metrics_or_version_in_production(db_url: str) -> None:
    from tests.support.backend import TEST_KEYS, TEST_SECRET

    settings = make_settings(
        db_url,
        environment="production",
        secret_key=TEST_SECRET,
        field_encryption_keys=",".join(TEST_KEYS),
        metrics_token="m" * 40,
    )
    ctx = AppContext.create(settings)
    await ctx.start()
    try:
        transport = httpx.ASGITransport(app=create_app(ctx=ctx))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            assert (await c.get("/api/openapi.json")).status_code == 404
            assert (await c.get("/api/docs")).status_code == 404
            assert (await c.get("/metrics")).status_code == 404
            wrong = await c.get("/metrics", headers={"Authorization": "Bearer " + "x" * 40})
            assert wrong.status_code == 404
            scraped = await c.get("/metrics", headers={"Authorization": "Bearer " + "m" * 40})
            assert scraped.status_code == 200 and "openvisit_job_queue" in scraped.text
            home = await c.get("/")
            assert home.status_code == 200
            assert "Version" not in home.text and "sqlite" not in home.text
            assert "/api/docs" not in home.text
    finally:
        await ctx.close()


async def test_it_serves_api_docs_from_its_own_origin_outside_production(
    http: httpx.AsyncClient,
) -> None:
    page = await http.get("/api/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith(("/", "#", "http://testserver/")) for s in sources)
    assert (await http.get("/api/docs/ui/swagger-ui-bundle.js")).status_code == 200
    assert directives(page)["script-src"] == "'self'"
    assert (await http.get("/api/openapi.json")).json()["info"]["title"] == "OpenVisit"


async def test_it_lets_the_ehr_frame_launch_pages_and_their_errors(
    ctx: AppContext, http: httpx.AsyncClient
) -> None:
    seeded = await seed_org(ctx)
    async with ctx.transaction() as session:
        await session.execute(
            update(Organisation)
            .where(Organisation.id == seeded.organisation.id)
            .values(frame_ancestors=["https://powerchart.hospital.example"])
        )
    refused = await http.get("/launch", params={"iss": "https://unknown.example/fhir"})
    assert refused.status_code in (400, 403, 404, 422)
    assert directives(refused)["frame-ancestors"] == "https://powerchart.hospital.example"
    # Pages that are not launch pages stay unframeable.
    assert directives(await http.get("/portal/signin"))["frame-ancestors"] == "'none'"


def test_it_lets_an_authorize_post_page_post_to_the_ehr_only() -> None:
    from openvisit.web.security import HeaderPolicy, PageNeeds

    policy = HeaderPolicy(
        public_origin="https://visits.example", websocket_origin="wss://visits.example",
        hsts=None, frame_ancestors=(),
    )
    csp = policy.content_security_policy(
        PageNeeds(frame_ancestors=[], form_targets=["https://ehr.example"]), html=True
    )
    assert "form-action 'self' https://visits.example https://ehr.example;" in csp
    assert "frame-ancestors 'none'" in csp

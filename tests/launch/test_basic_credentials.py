"""A launch with client_secret_basic against token servers that do and do not form-decode the
Basic header (issue 11, item 14), through the endpoint's option."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from openvisit.app import create_app
from openvisit.context import AppContext
from tests.launch.fake_wiring import authorize, wire
from tests.smart.fake_ehr import FHIR_BASE, FakeEhr

ODD_SECRET = "a+b/c=d"


@pytest.fixture
async def ehr(ctx: AppContext, request: pytest.FixtureRequest) -> FakeEhr:
    server, raw = request.param
    fake = FakeEhr(client_jwks=lambda: {"keys": []})
    fake.client_secret = ODD_SECRET
    fake.basic_decoding = server
    await wire(ctx, fake, raw_basic_credentials=raw)
    return fake


@pytest.fixture
async def browser(ctx: AppContext, ehr: FakeEhr) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx=ctx)),
                                 base_url="http://testserver") as http:
        yield http


@pytest.mark.parametrize(
    ("ehr", "works"),
    [(("form", False), True), (("raw", True), True), (("raw", False), False),
     (("form", True), False)],
    ids=["decoding-server/form-encoded", "raw-server/raw", "raw-server/form-encoded",
         "decoding-server/raw"],
    indirect=["ehr"],
)
async def test_it_launches_with_the_basic_encoding_the_token_server_reads(
    ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient, works: bool,
) -> None:
    started = await browser.get(f"/launch?iss={FHIR_BASE}&launch=launch-123")
    done = await browser.get(await authorize(ctx, started), headers={"Accept": "text/html"})
    if works:
        assert done.status_code == 303 and "/v/" in done.headers["location"], done.text[:300]
        return
    assert done.status_code in (400, 401, 403, 502), done.text[:300]
    assert "invalid_client" in done.text
    if ehr.basic_decoding == "raw":
        # The secret changes under form-encoding and raw credentials are off: say what to try.
        assert "Send the Basic credentials unencoded" in done.text

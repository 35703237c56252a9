"""The records page says whether the endpoint's scheduling feed is on, and org admins set
its HL7 senders there (issue 15 item 14)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from openvisit.context import AppContext
from openvisit.feed.senders import directory_for
from openvisit.models import EhrEndpoint
from tests.portal.conftest import FAKE, Browser, endpoint_body

BrowserFactory = Callable[[str], Awaitable[Browser]]


async def _endpoint(admin: Browser, base: str) -> str:
    created = await admin.api("POST", "/api/portal/endpoints", json=endpoint_body(
        fhir_base=base, save_failed_check=True))
    assert created.status_code == 201, created.text[:300]
    return str(created.json()["id"])


async def test_it_says_when_the_feed_is_off_and_sets_its_senders(
        browser: BrowserFactory, ctx: AppContext) -> None:
    admin = await browser("admin")
    endpoint = await _endpoint(admin, f"{FAKE}/r4")
    page = (await admin.get(f"/portal/endpoints/{endpoint}/records")).text
    assert "The feed is off for this endpoint." in page and "refused (AR)" in page

    bad = await admin.post(f"/portal/endpoints/{endpoint}/feed", {"senders": "EPIC^A^B"})
    assert bad.status_code == 422 and 'id="f-senders-error"' in bad.text
    assert "is not a sender" in bad.text and "EPIC^A^B" in bad.text  # what was typed stays
    directory_for(ctx)  # a directory this process has loaded: it must read again
    saved = await admin.post(f"/portal/endpoints/{endpoint}/feed",
                             {"senders": "EPIC^CITYHOSP\n\n  ADT  \nEPIC^CITYHOSP"})
    assert saved.status_code == 303, saved.text[:400]
    assert saved.headers["location"].endswith("notice=feed_saved#feed")
    page = (await admin.get(f"/portal/endpoints/{endpoint}/records")).text
    assert "The feed is off" not in page
    assert "<code>EPIC^CITYHOSP</code>, <code>ADT</code>." in page
    async with ctx.db.read() as session:
        row = await session.get(EhrEndpoint, uuid.UUID(endpoint))
        assert row is not None and row.options["hl7"]["senders"] == ["EPIC^CITYHOSP", "ADT"]
    assert ctx.services.siu_senders is not None
    assert ctx.services.siu_senders._loaded_at == float("-inf")

    other = await _endpoint(admin, f"{FAKE}/other")
    shared = await admin.post(f"/portal/endpoints/{other}/feed", {"senders": "ADT"})
    assert shared.status_code == 409 and "one sender can feed only one endpoint" in shared.text
    approver = await browser("approver")
    refused = await approver.post(f"/portal/endpoints/{endpoint}/feed", {"senders": ""})
    assert refused.status_code == 403
    off = await admin.post(f"/portal/endpoints/{endpoint}/feed", {"senders": ""})
    assert off.status_code == 303
    page = (await admin.get(f"/portal/endpoints/{endpoint}/records")).text
    assert "The feed is off for this endpoint." in page

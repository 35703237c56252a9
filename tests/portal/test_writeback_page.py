"""The portal's write-back page of an endpoint, against Medplum's FHIR router as the EHR: the
settings (validated, audited, the webhook secret never shown), the test write and its answer,
the recent write-backs with a permanent 4xx in the EHR's words, and its re-run after the fix.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from openvisit.context import AppContext
from openvisit.models import Appointment, AuditLog, EhrEndpoint
from tests.portal.conftest import Browser, endpoint_body
from tests.writeback.support import (
    EXPECTED,
    Chart,
    FhirServer,
    NoAuthTokens,
    audit_kinds,
    drain,
    rows,
    run_visit,
    seed,
)

BrowserFactory = Callable[[str], Awaitable[Browser]]
SECRET = "w" * 40


@pytest.fixture
def fhir_server(tmp_path: Path) -> Iterator[FhirServer]:
    server = FhirServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def tokens(ctx: AppContext) -> NoAuthTokens:
    planted = NoAuthTokens()
    ctx.services.writeback_tokens = planted
    return planted


def settings_form(**overrides: Any) -> dict[str, str]:
    form = {"enabled": "on", "profile": "generic", "devicetest": "observation",
            "audit_events": "on", "encounter": "on", "appointment_status": "on",
            "messages": "on", "backend_token": "on", "webhook_url": "", "scopes": ""}
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


async def add_endpoint(admin: Browser, server: FhirServer, **overrides: Any) -> str:
    body = {"fhir_base": server.base, "save_failed_check": True, **overrides}
    created = await admin.api("POST", "/api/portal/endpoints", json=endpoint_body(**body))
    assert created.status_code == 201, created.text[:300]
    return str(created.json()["id"])


async def chart_on(ctx: AppContext, server: FhirServer, endpoint_id: str, *,
                   encounter: str | None = None) -> Chart:
    """The EHR's chart (support.seed) on the portal-made endpoint; ``encounter`` names an
    Encounter the EHR does not have."""
    async with ctx.db.read() as session:
        endpoint = await session.get(EhrEndpoint, uuid.UUID(endpoint_id))
        assert endpoint is not None
        session.expunge(endpoint)
    chart = await seed(ctx, server, endpoint=endpoint)
    if encounter is None:
        return chart
    async with ctx.transaction() as session:
        appt = await session.get(Appointment, chart.appointment.id)
        assert appt is not None
        appt.encounter_id = encounter
    return dataclasses.replace(chart, encounter_id=encounter)


async def test_it_shows_a_refusal_in_the_ehrs_words_and_reruns_it_after_the_fix(
        browser: BrowserFactory, ctx: AppContext, fhir_server: FhirServer,
        tokens: NoAuthTokens) -> None:
    admin = await browser("admin")
    endpoint = await add_endpoint(admin, fhir_server)
    page = await admin.get(f"/portal/endpoints/{endpoint}")
    assert f'href="/portal/endpoints/{endpoint}/writeback"' in page.text
    page = await admin.get(f"/portal/endpoints/{endpoint}/writeback")
    assert page.status_code == 200
    assert "write-back is off for this endpoint" in page.text

    saved = await admin.post(f"/portal/endpoints/{endpoint}/writeback", settings_form())
    assert saved.status_code == 303, saved.text[:500]
    assert saved.headers["location"].endswith("notice=writeback_saved")

    missing = f"gone-{uuid.uuid4().hex[:8]}"  # the EHR has no such Encounter (yet)
    chart = await chart_on(ctx, fhir_server, endpoint, encounter=missing)
    visit_id = await run_visit(ctx, chart)
    await drain(ctx, [visit_id])

    written = await rows(ctx, visit_id)
    (failed,) = [r for r in written if r.state == "failed"]
    page = await admin.get(f"/portal/endpoints/{endpoint}/writeback")
    text = page.text
    assert "need you" in text
    row_html = text[text.index(f'id="wb-{failed.id}"'):]
    row_html = row_html[:row_html.index("</tr>")]
    assert "Encounter status" in row_html and "Failed" in row_html
    assert "HTTP 404" in row_html and "not found" in row_html.lower()  # the EHR's words
    assert f"/writeback/{failed.id}/rerun" in row_html
    assert "Waits for a failed one" in text  # the later writes keep the visit's order
    listed = (await admin.get(f"/api/portal/endpoints/{endpoint}/writebacks")).json()
    assert listed["failed"] == len([r for r in written if r.state in ("failed", "blocked")])
    assert any(i["id"] == failed.id and i["http_status"] == 404 for i in listed["items"])

    # The analyst creates the Encounter in the EHR, then the admin re-runs the write.
    put = fhir_server.call("PUT", f"Encounter/{missing}", json={
        "resourceType": "Encounter", "id": missing, "status": "planned",
        "class": {"code": "AMB"}})
    assert put.status_code in (200, 201), put.text
    again = await admin.post(f"/portal/endpoints/{endpoint}/writeback/{failed.id}/rerun", {})
    assert again.status_code == 303, again.text[:500]
    assert again.headers["location"].endswith(f"notice=writeback_rerun#wb-{failed.id}")
    await drain(ctx, [visit_id])
    assert {r.state for r in await rows(ctx, visit_id)} == {"sent"}
    assert audit_kinds(fhir_server, chart.appointment_id) == EXPECTED
    assert fhir_server.call("GET", f"Encounter/{missing}").json()["status"] == "finished"
    page = await admin.get(f"/portal/endpoints/{endpoint}/writeback")
    assert "need you" not in page.text and "/rerun" not in page.text
    assert page.text.count(">Sent<") == len(written)
    # A sent write is not re-run (nothing to do; it would not be written twice anyway).
    refused = await admin.post(f"/portal/endpoints/{endpoint}/writeback/{failed.id}/rerun", {})
    assert refused.status_code == 422 and "only failed or blocked" in refused.text
    async with ctx.db.read() as session:
        actions = list(await session.scalars(select(AuditLog.action).where(
            AuditLog.action.like("writeback.%")).order_by(AuditLog.id)))
    assert actions == ["writeback.configure", "writeback.rerun"]


async def test_it_validates_the_settings_and_never_shows_the_webhook_secret(
        browser: BrowserFactory, ctx: AppContext, fhir_server: FhirServer) -> None:
    admin = await browser("admin")
    endpoint = await add_endpoint(admin, fhir_server)
    url = f"/portal/endpoints/{endpoint}/writeback"

    short = await admin.post(url, settings_form(webhook_url="https://paging.example.org/x",
                                                webhook_secret="short-secret"))
    assert short.status_code == 422
    assert "at least 32 characters" in short.text and 'id="f-webhook_secret-error"' in short.text
    assert "short-secret" not in short.text  # never echoed
    assert 'value="https://paging.example.org/x"' in short.text  # the rest is kept
    no_secret = await admin.post(url, settings_form(webhook_url="https://paging.example.org/x"))
    assert no_secret.status_code == 422 and "needs a secret" in no_secret.text
    creds = await admin.post(url, settings_form(webhook_url="https://u:p@paging.example.org/x",
                                                webhook_secret=SECRET))
    assert creds.status_code == 422 and "no user name or password" in creds.text
    bad = await admin.post(url, settings_form(webhook_url="paging.example.org"))
    assert bad.status_code == 422 and "full https:// address" in bad.text
    profile = await admin.post(url, settings_form(profile="meditech"))
    assert profile.status_code == 422 and 'id="f-profile-error"' in profile.text

    ok = await admin.post(url, settings_form(webhook_url="https://paging.example.org/x",
                                             webhook_secret=SECRET, patient_arrived="on"))
    assert ok.status_code == 303, ok.text[:400]
    page = await admin.get(url)
    assert "A secret is stored (encrypted)" in page.text and SECRET not in page.text
    api = (await admin.get(f"/api/portal/endpoints/{endpoint}/writeback")).json()
    assert api["has_webhook_secret"] is True and api["webhook_secret"] == ""
    assert api["patient_arrived"] is True and api["enabled"] is True
    assert "webhook_secret_enc" not in api
    # Saving again without a secret keeps the stored one; the audit log says only "changed".
    assert (await admin.post(url, settings_form(
        webhook_url="https://paging.example.org/x"))).status_code == 303
    async with ctx.db.read() as session:
        afters = list(await session.scalars(select(AuditLog.after).where(
            AuditLog.action == "writeback.configure").order_by(AuditLog.id)))
        endpoint_row = await session.get(EhrEndpoint, uuid.UUID(endpoint))
        assert endpoint_row is not None
        stored = endpoint_row.options["writeback"]["webhook_secret_enc"]
    assert stored and SECRET not in stored
    assert [a["webhook_secret"] for a in afters if a] == ["changed", "kept"]
    assert all(stored not in str(a) and SECRET not in str(a) for a in afters)

    extra = await admin.api("PUT", f"/api/portal/endpoints/{endpoint}/writeback",
                            json={"enabled": True, "colour": "red"})
    assert extra.status_code == 422
    put = await admin.api("PUT", f"/api/portal/endpoints/{endpoint}/writeback",
                          json={"enabled": True, "profile": "oracle", "clear_webhook_secret": True,
                                "devicetest": "communication"})
    assert put.status_code == 200, put.text
    assert put.json()["has_webhook_secret"] is False and put.json()["profile"] == "oracle"


async def test_it_test_writes_to_a_test_ehr_only_and_keeps_roles(
        browser: BrowserFactory, ctx: AppContext, fhir_server: FhirServer,
        tokens: NoAuthTokens) -> None:
    admin = await browser("admin")
    endpoint = await add_endpoint(admin, fhir_server)
    url = f"/portal/endpoints/{endpoint}/writeback"
    assert (await admin.post(url, settings_form())).status_code == 303

    approver = await browser("approver")
    page = await approver.get(url)
    assert page.status_code == 200 and "Write a test AuditEvent" in page.text
    assert re.search(r"<fieldset\s+disabled", page.text)  # reads, cannot change
    assert (await approver.post(url, settings_form(enabled=None))).status_code == 403
    answer = await approver.post(f"{url}/test", {})
    assert answer.status_code == 200, answer.text[:500]
    assert "The EHR accepted the test AuditEvent" in answer.text
    ref = re.search(r"The EHR stored (AuditEvent/[\w-]+)", answer.text)
    assert ref, answer.text[:2000]
    assert fhir_server.call("GET", ref.group(1)).json()["resourceType"] == "AuditEvent"

    reporter = await browser("reporter")
    assert (await reporter.get(url)).status_code == 403
    outsider = await browser("outsider")
    assert (await outsider.get(url)).status_code == 404
    assert (await outsider.api("GET", f"/api/portal/endpoints/{endpoint}/writebacks")
            ).status_code == 404

    production = await add_endpoint(admin, fhir_server, environment="production",
                                    name="Live EHR",
                                    fhir_base=fhir_server.base.replace("127.0.0.1", "localhost"))
    refused = await admin.post(f"/portal/endpoints/{production}/writeback/test", {})
    assert refused.status_code == 422
    assert "for test endpoints only" in refused.text
    before = len(fhir_server.tagged("AuditEvent"))
    api = await admin.api("POST", f"/api/portal/endpoints/{production}/writeback/test")
    assert api.status_code == 422 and len(fhir_server.tagged("AuditEvent")) == before
    # The EHR down: the test write says so, in words an admin can act on.
    fhir_server.stop()
    down = await admin.api("POST", f"/api/portal/endpoints/{endpoint}/writeback/test")
    assert down.status_code == 200 and down.json()["ok"] is False
    assert down.json()["message"]

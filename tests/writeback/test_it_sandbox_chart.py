"""The loop closing (issue 13 item 6): a visit run through OpenVisit's lobby with write-back on
against the built-in sandbox EHR — registered as ``openvisit sandbox`` registers OpenVisit,
trusting the JWKS OpenVisit publishes — leaves its AuditEvents in order, the Encounter finished
and the Appointment fulfilled, and the sandbox's chart page shows them."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

import httpx

from openvisit.context import AppContext
from openvisit.demo import DEMO_WRITEBACK
from openvisit.devicetest import service as devicetest
from openvisit.devicetest.service import CallReport, DeviceTestReport
from openvisit.models import Appointment, ContextToken, EhrEndpoint, Organisation
from openvisit.outbound import OutboundPolicy, guarded_client
from openvisit.sandbox import create_sandbox_app
from openvisit.sandbox.clients import openvisit_registration
from openvisit.sandbox.runtime import Sandbox
from tests.writeback.support import Chart, drain, rows, run_visit

SANDBOX = "http://sandbox.test"
OPENVISIT = "http://openvisit.test"
EXPECTED = ["connected", "connected", "started", "admitted", "disconnected", "ended"]


async def test_it_closes_the_loop_on_the_sandbox_chart(ctx: AppContext,
                                                       client: httpx.AsyncClient) -> None:
    fetched: list[str] = []

    async def openvisit_jwks(url: str) -> Mapping[str, Any]:
        """The sandbox fetching OpenVisit's jwks_uri: answered by OpenVisit's own app."""
        fetched.append(url)
        assert url == f"{OPENVISIT}/.well-known/jwks.json"
        answer = await client.get("/.well-known/jwks.json")
        assert answer.status_code == 200
        jwks: dict[str, Any] = answer.json()
        return jwks

    app = create_sandbox_app(
        base_url=SANDBOX, clients=[openvisit_registration(openvisit_url=OPENVISIT)],
        provider_launch_url=f"{OPENVISIT}/launch",
        patient_launch_url=f"{OPENVISIT}/launch/patient", jwks_fetcher=openvisit_jwks)
    sandbox: Sandbox = app.state.sandbox
    ctx.services.portal_http = guarded_client(
        OutboundPolicy(allow_private=True), mounts={SANDBOX: httpx.ASGITransport(app)})

    # appt-4 / enc-4: Dana Placeholder (pat-4) with Dr. Morgan Example (prac-1).
    async with ctx.transaction() as session:
        org = Organisation(slug=f"org-{uuid.uuid4().hex[:8]}", display_name="Clinic",
                           timezone="UTC")
        session.add(org)
        await session.flush()
        endpoint = EhrEndpoint(organisation_id=org.id, name="Sandbox EHR", vendor="generic",
                               environment="test", fhir_base=f"{SANDBOX}/fhir",
                               client_id="openvisit", state="approved",
                               options={"writeback": DEMO_WRITEBACK})
        session.add(endpoint)
        await session.flush()
        appointment = Appointment(organisation_id=org.id, endpoint_id=endpoint.id,
                                  ehr_appointment_id="appt-4", encounter_id="enc-4",
                                  **ctx.refs.columns("Patient/pat-4"),
                                  provider_ehr_id=f"{SANDBOX}/fhir/Practitioner/prac-1")
        session.add(appointment)
        await session.flush()
        token = ContextToken(endpoint_id=endpoint.id, purpose="devicetest")
        session.add(token)
        await session.flush()
    chart = Chart(endpoint, appointment, "pat-4", "prac-1", "enc-4", "appt-4")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app),
                                 base_url=SANDBOX) as ehr:
        empty = await ehr.get("/ehr/chart/appt-4")
        assert "Nothing written back yet" in empty.text

        visit_id = await run_visit(ctx, chart)
        async with ctx.transaction() as session:
            report = DeviceTestReport(ctx="x", camera="passed", microphone="passed",
                                      speaker="passed", call=CallReport(
                                          status="passed", rtt_ms=31.0, frames_decoded=64))
            stored = await session.get(ContextToken, token.id)
            assert stored is not None
            test_visit = await devicetest.record_result(session, token=stored, report=report)
        await drain(ctx, [visit_id, test_visit.id])
        written = await rows(ctx, visit_id) + await rows(ctx, test_visit.id)
        assert {r.state for r in written} == {"sent"}, [(r.what, r.state, r.error)
                                                        for r in written]
        assert fetched, "the sandbox checked the assertion against OpenVisit's JWKS"

        page = await ehr.get("/ehr/chart/appt-4")
    assert re.findall(r'data-event="([^"]*)"', page.text) == EXPECTED
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.text))
    for label in ("Patient connected", "Clinician connected", "Visit started",
                  "Patient admitted from the lobby", "Patient disconnected", "Visit ended"):
        assert label in text, label
    assert "Dana Placeholder · patient" in text and "Dr. Morgan Example · clinician" in text
    assert "data-encounter-status>Finished" in page.text and "virtual (VR)" in text
    assert "data-appointment-status>Fulfilled" in page.text
    assert "Patient arrived in the lobby" in text and "To Dr. Morgan Example" in text
    # OpenVisit's device-test link is the clinic's, so the result names no patient.
    assert "these results name no patient" in text and "Round-trip time 31 ms" in text

    # The store agrees with the page: every AuditEvent tagged once, all about the visit.
    events = sandbox.store.all("AuditEvent")
    assert len(events) == len(EXPECTED)
    assert all({"reference": "Appointment/appt-4"} in [e["what"] for e in event["entity"]]
               and {"reference": "Encounter/enc-4"} in [e["what"] for e in event["entity"]]
               for event in events)
    encounter = sandbox.store.read("Encounter", "enc-4")
    assert encounter is not None and encounter["status"] == "finished"
    assert encounter["period"]["start"] <= encounter["period"]["end"]
    assert encounter["subject"] == {"reference": "Patient/pat-4"}  # the EHR's own, kept

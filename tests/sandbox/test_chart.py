"""The sandbox's chart page (issue 13 item 6): what a backend-services client writes into the
FHIR API (OpenVisit's own resource builders, SMART v2 ``system/`` scopes, conditional create)
shows on the appointment's chart, in recorded order, and nothing of another appointment."""

from __future__ import annotations

import logging
import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from joserfc import jwt

from openvisit.sandbox import SandboxClient, create_sandbox_app
from openvisit.sandbox.chart import EVENT_LABELS
from openvisit.writeback import resources as res
from openvisit.writeback.settings import DEFAULT_SCOPES

from .conftest import Clock, Keys
from .helpers import BASE, PATIENT_LAUNCH, PROVIDER_LAUNCH, TOKEN_URL

FHIR_JSON = {"Content-Type": "application/fhir+json"}
# appt-4 / enc-4: Dana Placeholder (pat-4) with Dr. Morgan Example (prac-1); appt-5 is another
# patient's (pat-5, Emery Demo) with Dr. Riley Specimen (prac-2).
FACTS = res.Facts(appointment_id="appt-4", encounter_id="enc-4", patient_ref="Patient/pat-4",
                  practitioner_ref="Practitioner/prac-1")
OTHER = res.Facts(appointment_id="appt-5", encounter_id="enc-5", patient_ref="Patient/pat-5",
                  practitioner_ref="Practitioner/prac-2")


@pytest.fixture
def app(keys: Keys, clock: Clock) -> Any:
    backend = SandboxClient(client_id="ov-writeback", jwks=keys.jwks(),
                            scopes=DEFAULT_SCOPES.split())
    return create_sandbox_app(base_url=BASE, clients=[backend], now=clock,
                              provider_launch_url=PROVIDER_LAUNCH,
                              patient_launch_url=PATIENT_LAUNCH)


async def backend_token(http: httpx.AsyncClient, keys: Keys) -> dict[str, str]:
    """SMART Backend Services: client_credentials, a private_key_jwt assertion (RS384)."""
    now = int(time.time())
    assertion = jwt.encode(
        {"alg": "RS384", "kid": "rsa-1", "typ": "JWT"},
        {"iss": "ov-writeback", "sub": "ov-writeback", "aud": TOKEN_URL, "exp": now + 240,
         "jti": secrets.token_hex(16)}, keys.rsa, algorithms=["RS384"])
    answer = await http.post("/auth/token", data={
        "grant_type": "client_credentials", "scope": DEFAULT_SCOPES,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion})
    assert answer.status_code == 200, answer.text
    # Every SMART v2 system/ scope write-back asks for is granted as asked.
    assert answer.json()["scope"] == DEFAULT_SCOPES
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def audit(kind: str, at: datetime, *, facts: res.Facts = FACTS,
          agent: str | None = None) -> dict[str, Any]:
    ref = {"reference": agent} if agent else None
    return res.audit_event(key=f"{facts.appointment_id}.{kind}.{agent}", event_kind=kind, at=at,
                           facts=facts, agent_ref=ref,
                           agent_role=agent.split("/")[0].lower() if agent else None)


async def post(http: httpx.AsyncClient, auth: dict[str, str], resource: dict[str, Any], *,
               key: str | None = None) -> httpx.Response:
    headers = {**auth, **FHIR_JSON}
    if key:
        headers["If-None-Exist"] = res.if_none_exist(key)
    return await http.post(f"/fhir/{resource['resourceType']}", json=resource, headers=headers)


def shown_events(html: str) -> list[str]:
    return re.findall(r'data-event="([^"]*)"', html)


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def test_it_shows_an_empty_chart_that_says_what_will_appear(
        http: httpx.AsyncClient) -> None:
    page = await http.get("/ehr/chart/appt-4")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    text = text_of(page.text)
    assert "Nothing written back yet" in text
    assert "Start the visit from the schedule" in text and "what happens in it appears" in text
    assert "Dana Placeholder" in text and "Dr. Morgan Example" in text
    assert 'data-encounter-status>Planned' in page.text and "Encounter/enc-4" in text
    assert shown_events(page.text) == []
    assert f'<script src="{BASE}/static/chart.js" defer>' in page.text  # own origin, no CDN

    schedule = await http.get("/ehr/schedule", params={"practitioner": "prac-1"})
    assert 'href="/ehr/chart/appt-4"' in schedule.text
    assert (await http.get("/ehr/chart/appt-99")).status_code == 404
    assert (await http.get("/ehr/chart/appt-99/state")).status_code == 404


async def test_it_shows_what_a_backend_client_wrote_in_recorded_order(
        http: httpx.AsyncClient, keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    auth = await backend_token(http, keys)
    before = (await http.get("/ehr/chart/appt-4/state")).json()["version"]
    t0 = datetime.now(UTC).replace(microsecond=0)
    steps = [
        audit("connected", t0, agent="Patient/pat-4"),
        audit("connected", t0 + timedelta(seconds=20), agent="Practitioner/prac-1"),
        audit("started", t0 + timedelta(seconds=21)),
        audit("admitted", t0 + timedelta(seconds=22), agent="Patient/pat-4"),
        audit("disconnected", t0 + timedelta(seconds=300), agent="Patient/pat-4"),
        audit("ended", t0 + timedelta(seconds=310), agent="Practitioner/prac-1"),
    ]
    # Stored out of order (the "ended" arrives first): the chart follows `recorded`.
    created = {}
    for resource in [steps[-1], *steps[:-1]]:
        key = resource["meta"]["tag"][0]["code"]
        answer = await post(http, auth, resource, key=key)
        assert answer.status_code == 201, answer.text
        created[key] = answer.json()["id"]
    # Another appointment's event, and one naming only this appointment's Encounter.
    await post(http, auth, audit("connected", t0, facts=OTHER, agent="Patient/pat-5"))
    only_encounter = audit("returned_to_lobby", t0 + timedelta(seconds=30), agent="Patient/pat-4")
    only_encounter["entity"] = [e for e in only_encounter["entity"]
                                if e["what"]["reference"].startswith("Encounter/")]
    assert (await post(http, auth, only_encounter)).status_code == 201

    # A retried create with the same If-None-Exist finds the first copy: 200, no second one.
    first_key = steps[0]["meta"]["tag"][0]["code"]
    again = await post(http, auth, steps[0], key=first_key)
    assert again.status_code == 200 and again.json()["id"] == created[first_key]

    # The Encounter: read, OpenVisit's update applied, PUT with If-Match.
    current = await http.get("/fhir/Encounter/enc-4", headers=auth)
    updated = res.encounter_update(current.json(), status="finished",
                                   started_at=t0 + timedelta(seconds=21),
                                   ended_at=t0 + timedelta(seconds=310))
    put = await http.put("/fhir/Encounter/enc-4", json=updated,
                         headers={**auth, **FHIR_JSON, "If-Match": current.headers["etag"]})
    assert put.status_code == 200, put.text

    # Device tests: this patient's, another patient's, and one from the clinic's link.
    result = {"passed": True, "camera": "passed", "microphone": "passed",
              "speaker": "skipped", "call": {"status": "passed", "rtt_ms": 42.5,
                                             "jitter_ms": 3.0, "frames_decoded": 120,
                                             "candidate_type": "host"}}
    mine = await post(http, auth, res.devicetest_observation(
        key="dt-1", at=t0, result=result, patient_ref="Patient/pat-4"))
    theirs = await post(http, auth, res.devicetest_observation(
        key="dt-2", at=t0, result={**result, "passed": False, "camera": "failed"},
        patient_ref="Patient/pat-5"))
    anonymous = await post(http, auth, res.devicetest_observation(
        key="dt-3", at=t0, result=result, patient_ref=None))
    arrived = await post(http, auth, res.patient_arrived_communication(
        key="arr-1", at=t0, facts=FACTS, text="The patient is waiting in the video visit lobby."))
    message = await post(http, auth, res.message_communication(
        key="msg-1", at=t0 - timedelta(minutes=30), facts=FACTS, channel="sms",
        template="reminder", text="See you at 09:30 <script>alert(1)</script>"))
    other_message = await post(http, auth, res.message_communication(
        key="msg-2", at=t0, facts=OTHER, channel="sms", template="reminder"))
    assert {r.status_code for r in (mine, theirs, anonymous, arrived, message,
                                    other_message)} == {201}

    with caplog.at_level(logging.INFO):
        page = await http.get("/ehr/chart/appt-4")
    assert page.status_code == 200
    assert shown_events(page.text) == ["connected", "connected", "started", "admitted",
                                       "returned_to_lobby", "disconnected", "ended"]
    text = text_of(page.text)
    for label in ("Patient connected", "Clinician connected", "Visit started",
                  "Patient admitted from the lobby", "Patient sent back to the lobby",
                  "Patient disconnected", "Visit ended"):
        assert label in text, label
    assert "Dana Placeholder · patient" in text and "Dr. Morgan Example · clinician" in text
    assert "OpenVisit" in text  # the agent of "visit started"
    assert "Emery Demo" not in text and "Dr. Riley Specimen" not in text  # appt-5's
    assert "Nothing written back yet" not in text

    assert 'data-encounter-status>Finished' in page.text and "virtual (VR)" in text
    assert page.text.count("data-observation=") == 2
    assert f'data-observation="{mine.json()["id"]}"' in page.text
    assert f'data-observation="{anonymous.json()["id"]}"' in page.text
    assert theirs.json()["id"] not in page.text
    for shown in ("Camera passed", "Microphone passed", "Speaker skipped", "Test call passed",
                  "Round-trip time 42.5 ms", "Jitter 3 ms", "Frames decoded 120 frames",
                  "Network path host", "these results name no patient"):
        assert shown in text, shown
    assert page.text.count("data-communication=") == 2
    assert other_message.json()["id"] not in page.text
    assert "Patient arrived in the lobby To Dr. Morgan Example" in text
    assert "SMS sent: reminder To Dana Placeholder" in text
    # What a client wrote is text, never markup, on the page.
    assert "<script>alert" not in page.text and "&lt;script&gt;alert(1)" in page.text

    # Nothing but ids in the logs, never a name (synthetic or not, the habit is the same).
    assert "sandbox.chart_viewed appointment=appt-4 events=7" in caplog.text
    assert "Dana" not in caplog.text and "Morgan" not in caplog.text

    state = await http.get("/ehr/chart/appt-4/state")
    assert state.headers["cache-control"] == "no-store"
    assert state.json()["version"] != before
    assert f'data-version="{state.json()["version"]}"' in page.text
    other = await http.get("/ehr/chart/appt-5")
    assert shown_events(other.text) == ["connected"] and "Dana Placeholder" not in other.text


async def test_it_refuses_an_if_none_exist_it_cannot_evaluate(
        http: httpx.AsyncClient, keys: Keys) -> None:
    auth = await backend_token(http, keys)
    event = audit("started", datetime.now(UTC))
    for criteria, status in (("colour=blue", 400), ("", 400)):
        answer = await http.post("/fhir/AuditEvent", json=event,
                                 headers={**auth, **FHIR_JSON, "If-None-Exist": criteria})
        assert answer.status_code == status, (criteria, answer.text)
    for _ in range(2):  # two copies without the condition: then the condition is ambiguous
        await post(http, auth, event)
    ambiguous = await post(http, auth, event, key=event["meta"]["tag"][0]["code"])
    assert ambiguous.status_code == 412
    found = await http.get("/fhir/AuditEvent", headers=auth,
                           params={"_tag": f"{res.TAG_SYSTEM}|{event['meta']['tag'][0]['code']}"})
    assert found.status_code == 403  # write-back's scopes create AuditEvents, never search them


def test_it_has_a_label_for_every_event_openvisit_writes() -> None:
    assert set(EVENT_LABELS) == set(res.AUDIT_EVENTS)

"""Launch context the way EHRs send it (issue 11, items 11–13 and 15).

The EHR is the in-process fake of tests/smart (independent JOSE and PKCE, SMART scope checks
when ``enforce_scopes``), mounted on OpenVisit's outbound clients; the browser is an httpx
client on the in-process app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from openvisit.app import create_app
from openvisit.context import AppContext
from openvisit.models import Appointment, Participant, Visit
from tests.launch.fake_wiring import authorize, wire
from tests.smart.fake_ehr import FHIR_BASE, FakeEhr, smart_configuration

HTML = {"Accept": "text/html"}
JSON = {"Accept": "application/json"}


@pytest.fixture
async def ehr(ctx: AppContext) -> FakeEhr:
    fake = FakeEhr(client_jwks=lambda: {"keys": []})
    fake.endpoint_id = await wire(ctx, fake)  # type: ignore[attr-defined]
    return fake


@pytest.fixture
async def browser(ctx: AppContext, ehr: FakeEhr) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx=ctx)),
                                 base_url="http://testserver") as http:
        yield http


async def _seats(ctx: AppContext) -> list[tuple[str, str | None, str]]:
    """(role, patient_ref, EHR appointment id) of every seat."""
    async with ctx.db.read() as session:
        rows = (await session.execute(
            select(Participant.role, Participant.patient_ref_enc, Appointment.ehr_appointment_id)
            .join(Visit, Visit.id == Participant.visit_id)
            .join(Appointment, Appointment.id == Visit.appointment_id)
            .order_by(Participant.created_at)
        )).all()
    return [(role, ctx.refs.open(ref), appt) for role, ref, appt in rows]


def _today(hours: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _appointment(appointment_id: str, *, patient: str = "pat-7", hours: float = 0.0,
                 status: str = "booked") -> dict[str, Any]:
    return {"resourceType": "Appointment", "id": appointment_id, "status": status,
            "start": _today(hours), "end": _today(hours + 0.5),
            "participant": [{"actor": {"reference": f"Patient/{patient}"}},
                            {"actor": {"reference": "Practitioner/prac-1"}}]}


def _patient_launch(ehr: FakeEhr, context: dict[str, Any], *, fhir_user: str | None) -> None:
    ehr.launch_contexts["launch-123"] = context
    ehr.id_token_claims = {"fhirUser": f"{FHIR_BASE}/{fhir_user}" if fhir_user else ""}


async def _launch_patient(ctx: AppContext, browser: httpx.AsyncClient,
                          headers: dict[str, str] | None = None) -> httpx.Response:
    started = await browser.get(f"/launch/patient?iss={FHIR_BASE}&launch=launch-123",
                                headers=headers)
    return await browser.get(await authorize(ctx, started), headers=headers)


# --- item 11: the standalone launch's ?appointment= hint -----------------------------------


async def test_it_applies_the_appointment_hint_of_a_provider_standalone_launch(
    ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient,
) -> None:
    endpoint_id = ehr.endpoint_id  # type: ignore[attr-defined]
    started = await browser.get(f"/launch/standalone/{endpoint_id}?appointment=apt-55")
    done = await browser.get(await authorize(ctx, started), headers=JSON)
    assert done.status_code == 303, done.text[:400]
    assert "/v/" in done.headers["location"]
    assert ehr.fhir_requests == ["Appointment/apt-55"]
    assert await _seats(ctx) == [("provider", None, "apt-55")]


async def test_it_prefers_the_ehrs_context_to_the_standalone_hint(
    ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient,
) -> None:
    ehr.launch_contexts[None] = {"fhirContext": [{"reference": "Appointment/apt-9"}]}
    endpoint_id = ehr.endpoint_id  # type: ignore[attr-defined]
    started = await browser.get(f"/launch/standalone/{endpoint_id}?appointment=apt-55")
    done = await browser.get(await authorize(ctx, started), headers=JSON)
    assert done.status_code == 303, done.text[:400]
    assert [s[2] for s in await _seats(ctx)] == ["apt-9"]


async def test_it_refuses_a_standalone_hint_that_is_not_a_fhir_id(
    ehr: FakeEhr, browser: httpx.AsyncClient,
) -> None:
    endpoint_id = ehr.endpoint_id  # type: ignore[attr-defined]
    refused = await browser.get(f"/launch/standalone/{endpoint_id}?appointment=a/../b",
                                headers=JSON)
    assert refused.status_code == 422
    assert ehr.hits.get("authorize", 0) == 0


# --- item 12: ask for what is read; fall back to the patient's appointments ----------------


async def test_it_asks_for_the_encounter_it_reads_in_a_patient_launch(
    ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient,
) -> None:
    ehr.enforce_scopes = True
    ehr.resources["Encounter/enc-4"] = {
        "resourceType": "Encounter", "id": "enc-4", "status": "planned",
        "subject": {"reference": "Patient/pat-7"},
        "appointment": [{"reference": "Appointment/apt-9"}]}
    _patient_launch(ehr, {"encounter": "enc-4", "patient": "pat-7"}, fhir_user="Patient/pat-7")
    done = await _launch_patient(ctx, browser, headers=JSON)
    assert done.status_code == 303, done.text[:400]
    scopes = ehr.requested_scopes[-1].split()
    assert {"patient/Appointment.rs", "patient/Encounter.rs"} <= set(scopes)
    assert ehr.fhir_requests == ["Encounter/enc-4", "Appointment/apt-9"]
    assert await _seats(ctx) == [("patient", "Patient/pat-7", "apt-9")]


@pytest.mark.parametrize(
    "advertised",
    [
        {"capabilities": [*smart_configuration()["capabilities"], "permission-v1"]},
        {"scopes_supported": ["openid", "fhirUser", "launch", "patient/*.read",
                              "user/*.read"]},
    ],
    ids=["permission-v1", "read-scopes-only"],
)
async def test_it_asks_for_v1_scopes_on_a_v1_server(
    ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient, advertised: dict[str, Any],
) -> None:
    ehr.smart_config.update(advertised)
    ehr.enforce_scopes = True
    ehr.resources["Encounter/enc-4"] = {
        "resourceType": "Encounter", "id": "enc-4", "subject": {"reference": "Patient/pat-7"},
        "appointment": [{"reference": "Appointment/apt-9"}]}
    _patient_launch(ehr, {"encounter": "enc-4", "patient": "pat-7"}, fhir_user="Patient/pat-7")
    done = await _launch_patient(ctx, browser, headers=JSON)
    assert done.status_code == 303, done.text[:400]
    scopes = ehr.requested_scopes[-1].split()
    assert {"patient/Appointment.read", "patient/Encounter.read"} <= set(scopes)
    assert not [s for s in scopes if s.endswith(".rs")]


async def test_it_keeps_v2_scopes_on_a_server_advertising_both(
    ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient,
) -> None:
    ehr.smart_config["capabilities"] += ["permission-v1", "permission-v2"]
    _patient_launch(ehr, {"fhirContext": [{"reference": "Appointment/apt-9"}],
                          "patient": "pat-7"}, fhir_user="Patient/pat-7")
    done = await _launch_patient(ctx, browser, headers=JSON)
    assert done.status_code == 303
    assert "patient/Encounter.rs" in ehr.requested_scopes[-1].split()


@pytest.mark.parametrize("status", [401, 403, 404])
@pytest.mark.parametrize("context_read", ["Appointment/apt-9", "Encounter/enc-4"])
async def test_it_falls_back_to_the_patients_appointment_when_a_context_read_fails(
    ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient, status: int, context_read: str,
) -> None:
    context: dict[str, Any] = {"patient": "pat-7"}
    if context_read.startswith("Appointment"):
        context["fhirContext"] = [{"reference": "Appointment/apt-9"}]
    else:
        context["encounter"] = "enc-4"
    ehr.fhir_status[context_read] = status
    ehr.resources["Appointment/apt-31"] = _appointment("apt-31", hours=0.2)
    ehr.resources["Appointment/apt-32"] = _appointment("apt-32", hours=-3, status="cancelled")
    ehr.resources["Appointment/apt-40"] = _appointment("apt-40", patient="pat-8")
    _patient_launch(ehr, context, fhir_user="Patient/pat-7")
    done = await _launch_patient(ctx, browser, headers=JSON)
    assert done.status_code == 303, done.text[:400]
    assert ehr.fhir_requests[0] == context_read
    assert ehr.fhir_requests[1].startswith("Appointment?patient=pat-7")
    assert await _seats(ctx) == [("patient", "Patient/pat-7", "apt-31")]


async def test_it_says_so_when_the_fallback_finds_no_appointment_today(
    ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient,
) -> None:
    ehr.fhir_status["Appointment/apt-9"] = 403
    _patient_launch(ehr, {"fhirContext": [{"reference": "Appointment/apt-9"}],
                          "patient": "pat-7"}, fhir_user="Patient/pat-7")
    page = await _launch_patient(ctx, browser, headers=HTML)
    assert page.status_code == 404, page.text[:400]
    assert "We could not find your appointment" in page.text
    assert await _seats(ctx) == []


# --- item 13: a patient seat belongs to that patient ----------------------------------------


async def test_it_never_seats_a_patient_in_another_patients_visit(
    ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient,
) -> None:
    # Patient 1 (pat-7) has the visit; the EHR then launches patient 2 (pat-8) with a context
    # that names patient 1's appointment.
    _patient_launch(ehr, {"fhirContext": [{"reference": "Appointment/apt-9"}],
                          "patient": "pat-7"}, fhir_user="Patient/pat-7")
    first = await _launch_patient(ctx, browser, headers=JSON)
    assert first.status_code == 303
    _patient_launch(ehr, {"fhirContext": [{"reference": "Appointment/apt-9"}],
                          "patient": "pat-8"}, fhir_user="Patient/pat-8")
    page = await _launch_patient(ctx, browser, headers=HTML)
    assert page.status_code == 403, page.text[:400]
    assert "This visit is for another patient" in page.text
    assert await _seats(ctx) == [("patient", "Patient/pat-7", "apt-9")]


@pytest.mark.parametrize(
    ("token_patient", "fhir_user", "appointment_patient"),
    [
        ("pat-7", "Practitioner/prac-1", "pat-7"),  # a clinician on the patient route
        ("pat-7", "PractitionerRole/role-1", "pat-7"),
        ("pat-7", "Patient/pat-8", "pat-7"),  # fhirUser is another patient
        ("pat-8", "RelatedPerson/rp-1", "pat-7"),  # a proxy of patient 2 on patient 1's visit
        (None, None, "pat-7"),  # nobody named at all
    ],
    ids=["practitioner", "practitioner-role", "other-patient-user", "proxy-of-other",
         "no-patient"],
)
async def test_it_refuses_a_patient_seat_it_cannot_tie_to_that_patient(
    ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient, token_patient: str | None,
    fhir_user: str | None, appointment_patient: str,
) -> None:
    ehr.resources["Appointment/apt-9"] = _appointment("apt-9", patient=appointment_patient)
    context: dict[str, Any] = {"fhirContext": [{"reference": "Appointment/apt-9"}]}
    if token_patient:
        context["patient"] = token_patient
    _patient_launch(ehr, context, fhir_user=fhir_user)
    refused = await _launch_patient(ctx, browser, headers=JSON)
    assert refused.status_code in (403, 422), refused.text[:400]
    assert await _seats(ctx) == []


async def test_it_refuses_an_appointment_without_a_patient_participant(
    ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient,
) -> None:
    ehr.resources["Appointment/apt-9"] = {**_appointment("apt-9"), "participant": [
        {"actor": {"reference": "Practitioner/prac-1"}}]}
    _patient_launch(ehr, {"fhirContext": [{"reference": "Appointment/apt-9"}],
                          "patient": "pat-7"}, fhir_user="Patient/pat-7")
    refused = await _launch_patient(ctx, browser, headers=JSON)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "patient_mismatch"
    assert await _seats(ctx) == []


@pytest.mark.parametrize("fhir_user", ["Patient/pat-7", "RelatedPerson/rp-1", None],
                         ids=["patient", "related-person", "no-fhirUser"])
async def test_it_seats_the_patient_or_their_proxy_in_the_patients_own_visit(
    ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient, fhir_user: str | None,
) -> None:
    _patient_launch(ehr, {"fhirContext": [{"reference": "Appointment/apt-9"}],
                          "patient": "pat-7"}, fhir_user=fhir_user)
    done = await _launch_patient(ctx, browser, headers=JSON)
    assert done.status_code == 303, done.text[:400]
    assert await _seats(ctx) == [("patient", "Patient/pat-7", "apt-9")]


async def test_it_checks_the_patient_of_a_patient_standalone_launch_with_a_hint(
    ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient,
) -> None:
    ehr.launch_contexts[None] = {"patient": "pat-8"}
    ehr.id_token_claims = {"fhirUser": f"{FHIR_BASE}/Patient/pat-8"}
    endpoint_id = ehr.endpoint_id  # type: ignore[attr-defined]
    started = await browser.get(f"/launch/standalone/{endpoint_id}?kind=patient"
                                "&appointment=apt-9")
    refused = await browser.get(await authorize(ctx, started), headers=JSON)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "patient_mismatch"
    assert await _seats(ctx) == []


# --- item 15: the EHR's refusal named as such ------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
async def test_it_says_the_ehr_refused_when_its_fhir_server_refuses_a_clinician(
    ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient, status: int,
) -> None:
    ehr.fhir_status["Appointment/apt-9"] = status
    started = await browser.get(f"/launch?iss={FHIR_BASE}&launch=launch-123")
    page = await browser.get(await authorize(ctx, started), headers=HTML)
    assert page.status_code == 502, page.text[:400]
    assert "Something went wrong on our side" not in page.text
    assert "The EHR refused to share the appointment" in page.text
    assert f"HTTP {status}" in page.text
    assert "test environment" in page.text  # which EHR record to look at
    assert "scopes" in page.text and "registration" in page.text
    assert "OpenVisit&#39;s scopes may be missing" not in page.text
    assert await _seats(ctx) == []


@pytest.mark.parametrize(
    ("lang", "title"),
    [("en", "This visit is for another patient"), ("es", "Esta visita es de otro paciente"),
     ("cs", "Tato návštěva patří jinému pacientovi"),
     ("it", "Questa visita è di un altro paziente")],
)
async def test_it_shows_a_patients_launch_error_in_the_pages_language(
    ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient, lang: str, title: str,
) -> None:
    _patient_launch(ehr, {"fhirContext": [{"reference": "Appointment/apt-9"}],
                          "patient": "pat-8"}, fhir_user="Patient/pat-8")
    page = await _launch_patient(ctx, browser, headers={**HTML, "Accept-Language": lang})
    assert page.status_code == 403
    assert f'<html lang="{lang}">' in page.text
    assert title in page.text


@pytest.mark.parametrize(
    ("lang", "title"),
    [("es", "No pudimos abrir su visita"), ("cs", "Vaši návštěvu se nepodařilo otevřít"),
     ("it", "Non è stato possibile aprire la sua visita")],
)
async def test_it_words_a_patients_ehr_refusal_for_the_patient(
    ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient, lang: str, title: str,
) -> None:
    ehr.fhir_status["Appointment/apt-9"] = 401
    ehr.fhir_status["Appointment?"] = 401
    _patient_launch(ehr, {"fhirContext": [{"reference": "Appointment/apt-9"}],
                          "patient": "pat-7"}, fhir_user="Patient/pat-7")
    page = await _launch_patient(ctx, browser, headers={**HTML, "Accept-Language": lang})
    assert page.status_code == 502, page.text[:400]
    assert title in page.text
    assert "scopes" not in page.text.split("<details")[0]  # the patient is not told about scopes


async def test_it_words_a_replayed_patient_callback_in_the_browsers_language(
    ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient,
) -> None:
    _patient_launch(ehr, {"fhirContext": [{"reference": "Appointment/apt-9"}],
                          "patient": "pat-7"}, fhir_user="Patient/pat-7")
    started = await browser.get(f"/launch/patient?iss={FHIR_BASE}&launch=launch-123")
    callback = await authorize(ctx, started)
    assert (await browser.get(callback)).status_code == 303
    replay = await browser.get(callback, headers={**HTML, "Accept-Language": "cs"})
    assert replay.status_code == 410
    assert '<html lang="cs">' in replay.text
    assert "Začněte prosím znovu" in replay.text
    assert "already used" in replay.text  # the technical text stays, for the IT team


# --- item 15: clinicians get clinician wording on the visit's too-early / ended pages -------


async def _seat_pages(ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient, *,
                      hours: float) -> tuple[str, str]:
    """A provider and a patient launched into apt-9 starting ``hours`` from now: their
    visit page paths."""
    ehr.resources["Appointment/apt-9"] = _appointment("apt-9", hours=hours)
    started = await browser.get(f"/launch?iss={FHIR_BASE}&launch=launch-123")
    provider = await browser.get(await authorize(ctx, started))
    assert provider.status_code == 303, provider.text[:300]
    _patient_launch(ehr, {"fhirContext": [{"reference": "Appointment/apt-9"}],
                          "patient": "pat-7"}, fhir_user="Patient/pat-7")
    patient = await _launch_patient(ctx, browser)
    assert patient.status_code == 303, patient.text[:300]
    return (httpx.URL(provider.headers["location"]).path,
            httpx.URL(patient.headers["location"]).path)


async def test_it_tells_a_clinician_who_is_early_what_to_do(
    ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient,
) -> None:
    provider, patient = await _seat_pages(ctx, ehr, browser, hours=3)
    clinician = await browser.get(provider + "?lang=en")
    # A normal page with the clinician's next step: open the room now (issue 15 item 1).
    assert clinician.status_code == 200
    assert "The visit is not open yet" in clinician.text
    assert "You can open the room now to get ready" in clinician.text
    assert "Open the room now" in clinician.text
    assert "come back then" not in clinician.text
    person = await browser.get(patient + "?lang=en")
    # The patient gets a normal page with a next step (issue 15 item 10).
    assert person.status_code == 200 and "Please come back then" in person.text


async def test_it_tells_a_clinician_whose_visit_is_over_what_to_do(
    ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient,
) -> None:
    hours_after = ctx.settings.join_window_after_minutes / 60
    provider, patient = await _seat_pages(ctx, ehr, browser, hours=-(hours_after + 2))
    clinician = await browser.get(provider + "?lang=en")
    assert clinician.status_code == 200 and "This visit has ended" in clinician.text
    assert "Reopen the visit" not in clinician.text  # not ended by anyone: nothing to reopen
    assert "Joining this visit closed at" in clinician.text
    assert "launch it again from the EHR" in clinician.text
    assert "patient portal" not in clinician.text
    person = await browser.get(patient + "?lang=en")
    assert person.status_code == 200 and "through your patient portal" in person.text

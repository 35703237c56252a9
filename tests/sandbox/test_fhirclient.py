"""SMART's own Python client (``fhirclient``, built on ``requests``) against a real sandbox
server: discovery from ``/metadata``, the authorize URL it builds, its code exchange, and
its FHIR models reading what the sandbox serves."""

from __future__ import annotations

import httpx
import pytest
from fhirclient import client as smart_client
from fhirclient.models.appointment import Appointment
from fhirclient.models.patient import Patient
from fhirclient.server import FHIRPermissionDeniedException
from joserfc import jwt
from joserfc.jwk import KeySet

from .conftest import SECRET
from .helpers import REDIRECT, decision, query


def _sign_in(browser: httpx.Client, smart: smart_client.FHIRClient, **choice: str) -> None:
    page = browser.get(smart.authorize_url)
    assert page.status_code == 200, page.headers.get("location")
    answer = browser.post("/auth/authorize/decision", data=decision(page.text, **choice))
    assert answer.status_code == 303
    assert answer.headers["location"].startswith(REDIRECT)
    smart.handle_callback(answer.headers["location"])


def test_it_completes_an_ehr_launch_for_fhirclient(live: str) -> None:
    with httpx.Client(base_url=live) as browser:
        button = browser.post(
            "/ehr/launch", data={"practitioner": "prac-2", "appointment": "appt-2"}
        )
        launch = query(button.headers["location"])
        assert launch["iss"] == f"{live}/fhir"
        smart = smart_client.FHIRClient(
            settings={
                "app_id": "ov-secret",
                "app_secret": SECRET,
                "api_base": launch["iss"],
                "redirect_uri": REDIRECT,
                "launch_token": launch["launch"],
                "scope": "openid fhirUser online_access user/Patient.rs user/Appointment.rs",
            }
        )
        _sign_in(browser, smart)
        jwks = browser.get("/fhir/.well-known/jwks.json").json()

    context = smart.launch_context
    assert smart.patient_id == "pat-2" and context["encounter"] == "enc-2"
    assert context["fhirContext"] == [{"reference": "Appointment/appt-2"}]
    claims = jwt.decode(
        context["id_token"], KeySet.import_key_set(jwks), algorithms=["RS256"]
    ).claims
    assert claims["fhirUser"] == f"{live}/fhir/Practitioner/prac-2" and claims["aud"] == "ov-secret"

    assert smart.human_name(smart.patient.name[0]) == "Blake Example"
    appointment = Appointment.read("appt-2", smart.server)
    assert appointment.status == "arrived"
    assert appointment.participant[0].actor.reference == "Patient/pat-2"
    assert smart.reauthorize()  # refresh_token grant through fhirclient
    assert Patient.read("pat-9", smart.server).id == "pat-9"  # user/ scope: any patient


def test_it_keeps_a_portal_launch_inside_the_patients_compartment(live: str) -> None:
    with httpx.Client(base_url=live) as browser:
        button = browser.post("/portal/launch", data={"patient": "pat-3", "appointment": "appt-3"})
        launch = query(button.headers["location"])
        assert button.headers["location"].startswith(
            "https://openvisit.test/launch/patient?source=portal&"
        )
        smart = smart_client.FHIRClient(
            settings={
                "app_id": "ov-public",
                "api_base": launch["iss"],
                "redirect_uri": REDIRECT,
                "launch_token": launch["launch"],
                "scope": "openid fhirUser patient/Patient.rs patient/Appointment.rs",
            }
        )
        _sign_in(browser, smart)

    assert smart.patient_id == "pat-3"
    assert smart.launch_context["need_patient_banner"] is False
    assert smart.launch_context["fhirContext"] == [{"reference": "Appointment/appt-3"}]
    assert "encounter" not in smart.launch_context
    assert smart.human_name(smart.patient.name[0]) == "Casey Testperson"
    with pytest.raises(FHIRPermissionDeniedException):
        Patient.read("pat-4", smart.server)
    mine = list(Appointment.where({"_count": "100"}).perform_resources_iter(smart.server))
    assert mine and all(
        any(p.actor.reference == "Patient/pat-3" for p in a.participant) for a in mine
    )


def test_it_serves_fhirclients_default_v1_scopes_in_a_standalone_launch(live: str) -> None:
    # fhirclient's defaults: "launch/patient user/*.* patient/*.read openid profile".
    smart = smart_client.FHIRClient(
        settings={
            "app_id": "ov-secret",
            "app_secret": SECRET,
            "api_base": f"{live}/fhir",
            "redirect_uri": REDIRECT,
        }
    )
    with httpx.Client(base_url=live) as browser:
        _sign_in(browser, smart, user="Practitioner/prac-1", patient="Patient/pat-10")
    assert smart.patient_id == "pat-10"
    assert "user/*.*" in smart.launch_context["scope"].split()
    assert smart.human_name(smart.patient.name[0]) == "Jordan Notreal"

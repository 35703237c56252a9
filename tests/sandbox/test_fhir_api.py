"""The FHIR R4 REST API: read, search, create, update with If-Match, JSON Patch, and what a
token's scopes let it do (RFC 6750, SMART scopes, FHIR R4 http.html and search.html)."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx

from .conftest import SECRET
from .flows import code_for, exchange, patient_launch, provider_launch

FHIR_JSON = {"Content-Type": "application/fhir+json"}
PATCH_JSON = {"Content-Type": "application/json-patch+json"}


async def user_token(
    http: httpx.AsyncClient, scope: str = "launch openid user/*.cruds"
) -> dict[str, str]:
    launch = await provider_launch(http)
    code, verifier = await code_for(http, client_id="ov-secret", scope=scope, launch=launch)
    token = (await exchange(http, code, verifier, auth=("ov-secret", SECRET))).json()
    return {"Authorization": f"Bearer {token['access_token']}"}


async def patient_token(
    http: httpx.AsyncClient, *, patient: str = "pat-1", appointment: str = "appt-1"
) -> dict[str, str]:
    launch = await patient_launch(http, patient=patient, appointment=appointment)
    code, verifier = await code_for(
        http, client_id="ov-public", launch=launch, scope="launch openid patient/*.cruds"
    )
    token = (await exchange(http, code, verifier, client_id="ov-public")).json()
    assert token["patient"] == patient
    return {"Authorization": f"Bearer {token['access_token']}"}


async def test_it_requires_a_bearer_token(http: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic x"}):
        response = await http.get("/fhir/Patient/pat-1", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["resourceType"] == "OperationOutcome"
    assert (await http.get("/fhir/metadata")).status_code == 200  # public


async def test_it_reads_with_etag_and_answers_unknowns(http: httpx.AsyncClient) -> None:
    auth = await user_token(http)
    response = await http.get("/fhir/Patient/pat-1", headers=auth)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.headers["etag"] == 'W/"1"' and "last-modified" in response.headers
    assert response.json()["name"][0]["family"] == "Sample"
    missing = await http.get("/fhir/Patient/pat-404", headers=auth)
    assert missing.status_code == 404 and missing.json()["issue"][0]["code"] == "not-found"
    unsupported = await http.get("/fhir/MedicationRequest/x", headers=auth)
    assert unsupported.status_code == 404
    vread = await http.get("/fhir/Patient/pat-1/_history/1", headers=auth)
    assert vread.status_code == 404 and vread.json()["issue"][0]["code"] == "not-supported"


async def test_it_searches_with_references_dates_tokens_and_paging(http: httpx.AsyncClient) -> None:
    auth = await user_token(http)

    async def ids(path: str, **params: str) -> list[str]:
        response = await http.get(path, params=params, headers=auth)
        assert response.status_code == 200, response.text
        bundle = response.json()
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
        return [e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "match"]

    today = datetime.now().astimezone().date()
    assert await ids("/fhir/Appointment", patient="pat-2", date=today.isoformat()) == [
        "appt-2",
        "appt-12",
    ]
    arrived = await ids(
        "/fhir/Appointment",
        actor="Practitioner/prac-3",
        status="arrived",
        date=f"ge{today}T09:00:00",
        _sort="-date",
    )
    assert arrived == ["appt-12", "appt-9"]
    window = await http.get(
        "/fhir/Appointment",
        headers=auth,
        params=[
            ("date", f"ge{today}T08:00:00"),
            ("date", f"lt{today}T09:00:00"),
            ("_count", "100"),
        ],
    )
    got = {e["resource"]["id"] for e in window.json()["entry"]}
    assert {"appt-1", "appt-2"} <= got and not {"appt-3", "appt-20"} & got
    assert await ids("/fhir/Appointment", date=f"lt{today - timedelta(days=1)}") == []
    assert await ids("/fhir/Encounter", appointment="appt-7") == ["enc-7"]
    assert await ids("/fhir/Encounter", patient="Patient/pat-7", **{"class": "AMB"}) == []
    assert await ids("/fhir/Patient", identifier="urn:openvisit:sandbox:mrn|SBX-1003") == ["pat-3"]
    assert await ids("/fhir/Patient", family="placeh") == ["pat-4"]
    paged = (await http.get("/fhir/Appointment", params={"_count": "5"}, headers=auth)).json()
    assert paged["total"] == 21 and len(paged["entry"]) == 5
    assert [link["relation"] for link in paged["link"]] == ["self", "next"]
    lenient = (await http.get("/fhir/Patient", params={"shoe-size": "9"}, headers=auth)).json()
    assert lenient["entry"][-1]["search"]["mode"] == "outcome"
    strict = await http.get(
        "/fhir/Patient", params={"shoe-size": "9"}, headers={**auth, "Prefer": "handling=strict"}
    )
    assert strict.status_code == 400
    bad_date = await http.get("/fhir/Appointment", params={"date": "ge2024-13-45"}, headers=auth)
    assert bad_date.status_code == 400


async def test_it_creates_with_location_and_etag_and_validates(http: httpx.AsyncClient) -> None:
    auth = await user_token(http)
    communication = {
        "resourceType": "Communication",
        "id": "client-chosen",
        "status": "completed",
        "subject": {"reference": "Patient/pat-1"},
        "about": [{"reference": "Appointment/appt-1"}],
        "medium": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode",
                        "code": "SMSWRIT",
                    }
                ]
            }
        ],
        "sent": "2024-05-06T09:00:00Z",
    }
    created = await http.post(
        "/fhir/Communication", json=communication, headers={**auth, **FHIR_JSON}
    )
    assert created.status_code == 201, created.text
    new_id = created.json()["id"]
    assert new_id != "client-chosen"
    assert created.headers["location"].endswith(f"/fhir/Communication/{new_id}/_history/1")
    assert created.headers["etag"] == 'W/"1"'
    found = (
        await http.get("/fhir/Communication", params={"patient": "pat-1"}, headers=auth)
    ).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [new_id]

    invalid = await http.post(
        "/fhir/Communication",
        json={**communication, "status": 7, "colour": "red"},
        headers={**auth, **FHIR_JSON},
    )
    assert invalid.status_code == 422
    assert {i["expression"][0] for i in invalid.json()["issue"]} >= {"Communication.colour"}
    wrong_type = await http.post(
        "/fhir/Observation", json=communication, headers={**auth, **FHIR_JSON}
    )
    assert wrong_type.status_code == 400
    as_text = await http.post(
        "/fhir/Communication", content="{}", headers={**auth, "Content-Type": "text/plain"}
    )
    assert as_text.status_code == 415
    minimal = await http.post(
        "/fhir/Communication",
        json=communication,
        headers={**auth, **FHIR_JSON, "Prefer": "return=minimal"},
    )
    assert minimal.status_code == 201 and minimal.content == b""


async def test_it_updates_with_if_match_and_refuses_stale_versions(http: httpx.AsyncClient) -> None:
    auth = await user_token(http)
    encounter = (await http.get("/fhir/Encounter/enc-1", headers=auth)).json()
    encounter["status"] = "in-progress"
    encounter["period"] = {"start": "2024-05-06T08:01:00Z"}
    updated = await http.put(
        "/fhir/Encounter/enc-1", json=encounter, headers={**auth, **FHIR_JSON, "If-Match": 'W/"1"'}
    )
    assert updated.status_code == 200 and updated.headers["etag"] == 'W/"2"'
    assert updated.json()["meta"]["versionId"] == "2"
    stale = await http.put(
        "/fhir/Encounter/enc-1", json=encounter, headers={**auth, **FHIR_JSON, "If-Match": 'W/"1"'}
    )
    assert stale.status_code == 412 and stale.json()["issue"][0]["code"] == "conflict"
    mismatch = await http.put(
        "/fhir/Encounter/enc-2", json=encounter, headers={**auth, **FHIR_JSON}
    )
    assert mismatch.status_code == 400
    created = await http.put(
        "/fhir/Encounter/new-enc",
        json={**encounter, "id": "new-enc"},
        headers={**auth, **FHIR_JSON},
    )
    assert created.status_code == 201 and created.headers["etag"] == 'W/"1"'


async def test_it_applies_json_patch_with_if_match(http: httpx.AsyncClient) -> None:
    auth = await user_token(http)
    ops = [
        {"op": "test", "path": "/status", "value": "booked"},
        {"op": "replace", "path": "/status", "value": "checked-in"},
    ]
    patched = await http.patch(
        "/fhir/Appointment/appt-1", json=ops, headers={**auth, **PATCH_JSON, "If-Match": 'W/"1"'}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["status"] == "checked-in" and patched.headers["etag"] == 'W/"2"'
    failed_test = await http.patch(
        "/fhir/Appointment/appt-1", json=ops, headers={**auth, **PATCH_JSON}
    )
    assert failed_test.status_code == 409
    stale = await http.patch(
        "/fhir/Appointment/appt-1",
        json=ops[1:],
        headers={**auth, **PATCH_JSON, "If-Match": 'W/"1"'},
    )
    assert stale.status_code == 412
    invalid = await http.patch(
        "/fhir/Appointment/appt-1",
        json=[{"op": "remove", "path": "/status"}],
        headers={**auth, **PATCH_JSON},
    )
    assert invalid.status_code == 422  # Appointment.status is required
    bad_path = await http.patch(
        "/fhir/Appointment/appt-1",
        json=[{"op": "replace", "path": "/nope", "value": 1}],
        headers={**auth, **PATCH_JSON},
    )
    assert bad_path.status_code == 422
    as_json = await http.patch("/fhir/Appointment/appt-1", json=ops, headers={**auth, **FHIR_JSON})
    assert as_json.status_code == 415
    current = (await http.get("/fhir/Appointment/appt-1", headers=auth)).json()
    assert current["status"] == "checked-in" and current["meta"]["versionId"] == "2"


async def test_it_enforces_scopes(http: httpx.AsyncClient) -> None:
    reader = await user_token(http, scope="launch openid user/Appointment.read")
    assert (await http.get("/fhir/Appointment/appt-1", headers=reader)).status_code == 200
    assert (await http.get("/fhir/Appointment", headers=reader)).status_code == 200
    forbidden = await http.get("/fhir/Patient/pat-1", headers=reader)
    assert forbidden.status_code == 403
    assert 'error="insufficient_scope"' in forbidden.headers["www-authenticate"]
    write = await http.patch("/fhir/Appointment/appt-1", json=[], headers={**reader, **PATCH_JSON})
    assert write.status_code == 403
    searcher = await user_token(http, scope="launch user/Appointment.s")
    assert (await http.get("/fhir/Appointment", headers=searcher)).status_code == 200
    assert (await http.get("/fhir/Appointment/appt-1", headers=searcher)).status_code == 403


async def test_it_keeps_patient_tokens_in_their_compartment(http: httpx.AsyncClient) -> None:
    mine = await patient_token(http, patient="pat-1", appointment="appt-1")
    assert (await http.get("/fhir/Patient/pat-1", headers=mine)).status_code == 200
    other = await http.get("/fhir/Patient/pat-2", headers=mine)
    assert other.status_code == 403 and other.json()["issue"][0]["code"] == "forbidden"
    assert (await http.get("/fhir/Appointment/appt-2", headers=mine)).status_code == 403
    assert (await http.get("/fhir/Encounter/enc-2", headers=mine)).status_code == 403
    listed = (await http.get("/fhir/Appointment", params={"_count": "100"}, headers=mine)).json()
    assert {e["resource"]["id"] for e in listed["entry"]} == {"appt-1", "appt-11", "appt-21"}
    by_id = (await http.get("/fhir/Patient", params={"_id": "pat-2"}, headers=mine)).json()
    assert by_id["total"] == 0
    assert (await http.get("/fhir/Practitioner/prac-2", headers=mine)).status_code == 200
    foreign = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "device test"},
        "subject": {"reference": "Patient/pat-2"},
    }
    refused = await http.post("/fhir/Observation", json=foreign, headers={**mine, **FHIR_JSON})
    assert refused.status_code == 403
    own = {**foreign, "subject": {"reference": "Patient/pat-1"}}
    assert (
        await http.post("/fhir/Observation", json=own, headers={**mine, **FHIR_JSON})
    ).status_code == 201
    # user/ scopes of a Patient user are that patient's compartment too.
    launch = await patient_launch(http, patient="pat-1", appointment="appt-1")
    code, verifier = await code_for(
        http, client_id="ov-secret", launch=launch, scope="launch openid user/Patient.rs"
    )
    token = (await exchange(http, code, verifier, auth=("ov-secret", SECRET))).json()
    as_user = {"Authorization": f"Bearer {token['access_token']}"}
    assert (await http.get("/fhir/Patient/pat-1", headers=as_user)).status_code == 200
    assert (await http.get("/fhir/Patient/pat-2", headers=as_user)).status_code == 403
    move_out = [
        {"op": "replace", "path": "/participant/0/actor/reference", "value": "Patient/pat-2"}
    ]
    moved = await http.patch(
        "/fhir/Appointment/appt-1", json=move_out, headers={**mine, **PATCH_JSON}
    )
    assert moved.status_code == 403

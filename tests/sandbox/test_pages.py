"""The EHR-like pages and launch buttons, the daily re-seed, persistence, client registration,
and the no-names-in-logs habit."""

from __future__ import annotations

import logging
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from openvisit.sandbox import create_sandbox_app
from openvisit.sandbox.seed import PATIENTS, PRACTITIONERS

from .conftest import SECRET, Clock, Keys, make_clients
from .flows import authorize_params, code_for, exchange, provider_launch
from .helpers import BASE, FHIR, PATIENT_LAUNCH, PROVIDER_LAUNCH, REDIRECT, forms, pkce_pair, query


async def test_it_renders_a_schedule_whose_buttons_launch_with_iss_and_launch(
    http: httpx.AsyncClient,
) -> None:
    page = await http.get("/ehr/schedule", params={"practitioner": "prac-2"})
    assert page.status_code == 200
    assert "Dr. Riley Specimen" in page.text and "Blake Example" in page.text
    buttons = [f for f in forms(page.text) if f.action == "/ehr/launch"]
    assert [f.fields["appointment"] for f in buttons] == [
        f"appt-{k}" for k in (2, 5, 8, 11, 14, 17, 20)
    ]
    assert all(f.method == "post" and f.buttons[0][2] == "Start virtual visit" for f in buttons)
    assert "08:30" in page.text and "Arrived" in page.text and "Booked" in page.text

    pressed = await http.post(buttons[0].action, data=buttons[0].fields)
    assert pressed.status_code == 303
    location = pressed.headers["location"]
    assert location.startswith(PROVIDER_LAUNCH + "?")
    params = query(location)
    assert params["iss"] == FHIR and len(params["launch"]) >= 43
    again = query((await http.post(buttons[0].action, data=buttons[0].fields)).headers["location"])
    assert again["launch"] != params["launch"]


async def test_it_renders_the_portal_with_begin_visit_for_video_visits(
    http: httpx.AsyncClient,
) -> None:
    page = await http.get("/portal", params={"patient": "pat-4"})
    assert page.status_code == 200 and "Hello, Dana" in page.text
    buttons = [f for f in forms(page.text) if f.action == "/portal/launch"]
    # pat-4 has appt-4 (office visit) and appt-14 (video visit); nobody else's visits show.
    assert [f.fields["appointment"] for f in buttons] == ["appt-14"]
    assert "In person at Sandbox Family Clinic" in page.text
    assert buttons[0].buttons[0][2] == "Begin visit"
    assert "Alex Sample" not in page.text
    pressed = await http.post("/portal/launch", data=buttons[0].fields)
    assert pressed.headers["location"].startswith(PATIENT_LAUNCH + "&iss=")  # keeps ?source=portal
    assert query(pressed.headers["location"])["iss"] == FHIR


async def test_it_refuses_launches_for_someone_elses_appointment(http: httpx.AsyncClient) -> None:
    wrong = await http.post("/ehr/launch", data={"practitioner": "prac-1", "appointment": "appt-2"})
    assert wrong.status_code == 404
    wrong = await http.post("/portal/launch", data={"patient": "pat-1", "appointment": "appt-2"})
    assert wrong.status_code == 404
    assert (await http.get("/ehr/schedule", params={"practitioner": "prac-9"})).status_code == 404
    assert (await http.get("/portal", params={"patient": "pat-99"})).status_code == 404


async def test_it_lets_launches_expire(http: httpx.AsyncClient, clock: Clock) -> None:
    launch = await provider_launch(http)
    clock.offset += timedelta(minutes=11)
    _, challenge = pkce_pair()
    params = authorize_params(
        client_id="ov-secret", scope="launch openid", challenge=challenge, launch=launch
    )
    response = await http.get("/auth/authorize", params=params)
    assert query(response.headers["location"])["error"] == "invalid_request"


async def test_it_renders_the_landing_page(http: httpx.AsyncClient) -> None:
    page = await http.get("/")
    assert page.status_code == 200
    assert (
        "/ehr/schedule?practitioner=prac-1" in page.text and "/portal?patient=pat-10" in page.text
    )
    assert f"{FHIR}/.well-known/smart-configuration" in page.text
    css = await http.get("/static/sandbox.css")
    assert css.status_code == 200 and "https://" not in css.text  # nothing from a CDN


async def test_it_reseeds_when_the_day_changes(http: httpx.AsyncClient, clock: Clock) -> None:
    launch = await provider_launch(http)
    code, verifier = await code_for(
        http, client_id="ov-secret", launch=launch, scope="launch openid user/*.cruds"
    )
    token = (await exchange(http, code, verifier, auth=("ov-secret", SECRET))).json()
    auth = {"Authorization": f"Bearer {token['access_token']}"}
    before = (await http.get("/fhir/Appointment/appt-1", headers=auth)).json()["start"]
    clock.offset += timedelta(days=1)
    await http.get("/ehr/schedule")
    refreshed = await http.get("/fhir/Appointment/appt-1", headers=auth)
    assert refreshed.status_code == 401  # a day later the hour-long token has expired
    code, verifier = await code_for(http, client_id="ov-secret", scope="openid user/*.rs")
    token = (await exchange(http, code, verifier, auth=("ov-secret", SECRET))).json()
    after = (
        await http.get(
            "/fhir/Appointment/appt-1", headers={"Authorization": f"Bearer {token['access_token']}"}
        )
    ).json()
    assert after["start"][:10] > before[:10] and after["start"][10:] == before[10:]
    assert after["meta"]["versionId"] == "2"


def _app(path: Path, keys: Keys, **kwargs: Any) -> Any:
    return create_sandbox_app(
        base_url=BASE,
        state_path=path,
        clients=make_clients(keys),
        provider_launch_url=PROVIDER_LAUNCH,
        patient_launch_url=PATIENT_LAUNCH,
        **kwargs,
    )


async def test_it_persists_store_key_and_registrations(tmp_path: Path, keys: Keys) -> None:
    first = _app(tmp_path / "state", keys)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(first), base_url=BASE) as http:
        kid = (await http.get("/fhir/.well-known/jwks.json")).json()["keys"][0]["kid"]
        registered = await http.post(
            "/admin/clients",
            json={
                "client_id": "openvisit-demo",
                "client_secret": "demo-secret-1",
                "redirect_uris": ["http://127.0.0.1:8000/launch/callback"],
                "name": "OpenVisit demo",
            },
        )
        assert registered.status_code == 201
        assert "client_secret" not in registered.json()
        launch = await provider_launch(http)
        code, verifier = await code_for(
            http, client_id="ov-secret", launch=launch, scope="launch openid user/*.cruds"
        )
        token = (await exchange(http, code, verifier, auth=("ov-secret", SECRET))).json()
        created = await http.post(
            "/fhir/Observation",
            headers={
                "Authorization": f"Bearer {token['access_token']}",
                "Content-Type": "application/fhir+json",
            },
            json={
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "device test"},
                "subject": {"reference": "Patient/pat-1"},
            },
        )
        observation_id = created.json()["id"]
    key_file = tmp_path / "state" / "server-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    second = _app(tmp_path / "state", keys)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(second), base_url=BASE) as http:
        assert (await http.get("/fhir/.well-known/jwks.json")).json()["keys"][0]["kid"] == kid
        listed = (await http.get("/admin/clients")).json()["clients"]
        assert "openvisit-demo" in {c["client_id"] for c in listed}
        code, verifier = await code_for(http, client_id="ov-secret", scope="openid user/*.rs")
        token = (await exchange(http, code, verifier, auth=("ov-secret", SECRET))).json()
        read = await http.get(
            f"/fhir/Observation/{observation_id}",
            headers={"Authorization": f"Bearer {token['access_token']}"},
        )
        assert read.status_code == 200


async def test_it_guards_client_registration(tmp_path: Path, keys: Keys) -> None:
    app = _app(tmp_path, keys, admin_token="admin-token-1")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as http:
        body = {"client_id": "x", "redirect_uris": [REDIRECT], "confidential": False}
        assert (await http.post("/admin/clients", json=body)).status_code == 403
        auth = {"Authorization": "Bearer admin-token-1"}
        assert (await http.post("/admin/clients", json=body, headers=auth)).status_code == 201
        for bad in (
            {"client_id": "y"},
            {"client_id": "y", "client_secret": "s", "confidential": False},
            {"client_id": "y", "client_secret": "s", "redirect_uris": ["not-a-url"]},
            {"client_id": "y", "client_secret": "s", "colour": "red"},
        ):
            refused = await http.post("/admin/clients", json=bad, headers=auth)
            assert refused.status_code == 400, bad
    remote = httpx.ASGITransport(_app(tmp_path / "b", keys), client=("203.0.113.9", 5000))
    async with httpx.AsyncClient(transport=remote, base_url=BASE) as http:
        assert (await http.post("/admin/clients", json=body)).status_code == 403


async def test_it_never_logs_names(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="openvisit")
    await http.get("/ehr/schedule")
    await http.get("/portal")
    launch = await provider_launch(http)
    code, verifier = await code_for(
        http, client_id="ov-secret", launch=launch, scope="launch openid fhirUser user/*.cruds"
    )
    token = (await exchange(http, code, verifier, auth=("ov-secret", SECRET))).json()
    auth = {"Authorization": f"Bearer {token['access_token']}"}
    await http.get("/fhir/Patient", headers=auth)
    await http.patch(
        "/fhir/Patient/pat-1",
        headers={**auth, "Content-Type": "application/json-patch+json"},
        json=[{"op": "replace", "path": "/name/0/family", "value": "Renamed"}],
    )
    assert caplog.records  # the events were logged...
    text = "\n".join(r.getMessage() for r in caplog.records)
    names = [p[1] for p in PATIENTS] + [p[0] for p in PATIENTS] + [p[1] for p in PRACTITIONERS]
    assert not [n for n in [*names, "Renamed"] if n in text]  # ...without names
    assert token["access_token"] not in text

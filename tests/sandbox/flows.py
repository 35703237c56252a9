"""Async helpers that walk the EHR pages and the authorize endpoint in-process."""

from __future__ import annotations

from typing import Any

import httpx

from .helpers import FHIR, REDIRECT, decision, pkce_pair, query


async def provider_launch(
    http: httpx.AsyncClient, *, practitioner: str = "prac-1", appointment: str = "appt-1"
) -> str:
    """Press "Start virtual visit" on the schedule; return the launch id."""
    response = await http.post(
        "/ehr/launch", data={"practitioner": practitioner, "appointment": appointment}
    )
    assert response.status_code == 303, response.text
    return query(response.headers["location"])["launch"]


async def patient_launch(
    http: httpx.AsyncClient, *, patient: str = "pat-1", appointment: str = "appt-1"
) -> str:
    response = await http.post(
        "/portal/launch", data={"patient": patient, "appointment": appointment}
    )
    assert response.status_code == 303, response.text
    return query(response.headers["location"])["launch"]


def authorize_params(
    *, client_id: str, scope: str, challenge: str, launch: str | None = None, **extra: str
) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": "state-1234567890",
        "aud": FHIR,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if launch is not None:
        params["launch"] = launch
    params.update(extra)
    return {k: v for k, v in params.items() if v != ""}


async def follow_authorize(
    http: httpx.AsyncClient,
    url_or_params: str | dict[str, str],
    *,
    user: str | None = None,
    patient: str | None = None,
    action: str = "approve",
) -> dict[str, str]:
    """GET the authorize URL, submit the pick-a-user page; return the redirect's query."""
    if isinstance(url_or_params, str):
        page = await http.get(url_or_params)
    else:
        page = await http.get("/auth/authorize", params=url_or_params)
    assert page.status_code == 200, page.headers.get("location") or page.text
    answer = await http.post(
        "/auth/authorize/decision",
        data=decision(page.text, user=user, patient=patient, action=action),
    )
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert location.startswith(REDIRECT)
    return query(location)


async def code_for(
    http: httpx.AsyncClient,
    *,
    client_id: str,
    scope: str,
    launch: str | None = None,
    user: str | None = None,
    patient: str | None = None,
    **extra: str,
) -> tuple[str, str]:
    """Run authorize end to end; return (code, verifier)."""
    verifier, challenge = pkce_pair()
    params = authorize_params(
        client_id=client_id, scope=scope, challenge=challenge, launch=launch, **extra
    )
    result = await follow_authorize(http, params, user=user, patient=patient)
    assert result["state"] == params["state"]
    return result["code"], verifier


async def exchange(
    http: httpx.AsyncClient, code: str, verifier: str | None, *, auth: Any = None, **form: str
) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, **form}
    if verifier is not None:
        data["code_verifier"] = verifier
    return await http.post("/auth/token", data=data, auth=auth)

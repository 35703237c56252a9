"""A real Chromium, JavaScript off, clicks through an EHR launch: schedule button → a small
SMART app → the sandbox's sign-in page → the app's callback with the launch context; and,
JavaScript on, the chart page reloading itself when a write-back lands."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from playwright.sync_api import sync_playwright
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from openvisit.sandbox import create_sandbox_app
from openvisit.writeback import resources as res

from .conftest import SECRET, Keys, make_clients
from .helpers import pkce_pair, serve

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]


def smart_app() -> Starlette:
    """A minimal SMART app: discovery from iss, authorize with PKCE, code exchange."""
    pending: dict[str, dict[str, str]] = {}

    async def launch(request: Request) -> Response:
        iss, launch_id = request.query_params["iss"], request.query_params["launch"]
        async with httpx.AsyncClient() as http:
            config = (await http.get(f"{iss}/.well-known/smart-configuration")).json()
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(24)
        pending[state] = {"verifier": verifier, "token": config["token_endpoint"]}
        params = {
            "response_type": "code",
            "client_id": "ov-secret",
            "redirect_uri": f"{request.base_url}cb",
            "scope": "launch openid fhirUser user/Patient.rs",
            "state": state,
            "aud": iss,
            "launch": launch_id,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        return RedirectResponse(f"{config['authorization_endpoint']}?{urlencode(params)}", 302)

    async def callback(request: Request) -> Response:
        flow = pending.pop(request.query_params["state"])
        async with httpx.AsyncClient() as http:
            token = (
                await http.post(
                    flow["token"],
                    auth=("ov-secret", SECRET),
                    data={
                        "grant_type": "authorization_code",
                        "code": request.query_params["code"],
                        "redirect_uri": f"{request.base_url}cb",
                        "code_verifier": flow["verifier"],
                    },
                )
            ).json()
        context = f"{token['patient']} {token['encounter']} {token['fhirContext'][0]['reference']}"
        return HTMLResponse(f"<h1 id='context'>{context}</h1>")

    return Starlette(routes=[Route("/launch", launch), Route("/cb", callback)])


def test_it_launches_from_the_schedule_in_chromium_without_javascript(keys: Keys) -> None:
    with serve(lambda _base: smart_app()) as (app_base, _):

        def make(base: str) -> Any:
            return create_sandbox_app(
                base_url=base,
                clients=make_clients(keys, redirect=f"{app_base}/cb"),
                provider_launch_url=f"{app_base}/launch",
                patient_launch_url=f"{app_base}/launch",
            )

        with serve(make) as (sandbox_base, _), sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_context(java_script_enabled=False).new_page()
            page.goto(f"{sandbox_base}/ehr/schedule?practitioner=prac-2")
            page.locator("button[data-appointment='appt-5']").click()
            page.wait_for_url(f"{sandbox_base}/auth/authorize?*")
            assert (
                page.locator("input[name=user]:checked").get_attribute("value")
                == "Practitioner/prac-2"
            )
            page.get_by_role("button", name="Allow and continue").click()
            page.wait_for_url(f"{app_base}/cb?*")
            assert page.locator("#context").inner_text() == "pat-5 enc-5 Appointment/appt-5"
            browser.close()


def test_it_reloads_the_chart_only_when_a_write_back_lands(keys: Keys) -> None:
    """chart.js polls the chart's fingerprint: a poll that finds nothing new leaves the page
    alone; a write into the store reloads it with the new event on the timeline."""

    def make(base: str) -> Any:
        return create_sandbox_app(base_url=base, clients=make_clients(keys),
                                  provider_launch_url=f"{base}/launch",
                                  patient_launch_url=f"{base}/launch")

    with serve(make) as (base, app), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            page.goto(f"{base}/ehr/chart/appt-4")
            assert page.locator("[data-empty]").count() == 1
            page.evaluate("window.notReloaded = true")
            page.wait_for_function(
                "document.querySelector('[data-live]').textContent.includes('checked')",
                timeout=15_000)  # a poll came back with the same fingerprint...
            assert page.evaluate("window.notReloaded === true")  # ...and nothing reloaded
            facts = res.Facts(appointment_id="appt-4", encounter_id="enc-4")
            app.state.sandbox.store.create(res.audit_event(
                key="k1", event_kind="started", at=datetime.now(UTC), facts=facts,
                agent_ref=None, agent_role=None))
            page.wait_for_selector("[data-event=started]", timeout=15_000)
            assert page.evaluate("window.notReloaded === undefined")
            assert "Visit started" in page.inner_text(".timeline")
            # No horizontal overflow on a phone.
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
        finally:
            browser.close()

"""Screenshots of the launch pages of issue 11 with Debian's Chromium (Playwright sync API).

Run: ``.venv/bin/python -m tests.launch.make_context_screenshots [OUTDIR]`` from the repository
root (default OUTDIR: docs/screenshots). OpenVisit runs in process under uvicorn on loopback,
its outbound clients mounted on the fake EHR of tests/smart; the script drives each launch up
to the EHR's answer and lets Chromium open OpenVisit's callback, so what is captured is the
page a browser gets. Writes, at 1280×800 and 390×844:

- ``launch-ehr-refused-*``: a clinician's launch whose FHIR read the EHR refuses (HTTP 401);
- ``launch-patient-mismatch-es-*``: a patient launched into another patient's appointment,
  in Spanish;
- ``launch-patient-ehr-refused-cs-*``: a patient's launch the EHR refuses, in Czech, with the
  IT team's details unfolded;
- ``visit-clinician-too-early-*``: a clinician's seat opened three hours early;
- ``portal-endpoint-basic-warning-*`` and ``portal-endpoint-basic-form-*``: an endpoint whose
  secret form-encoding changes, and the option in the endpoint form.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from argon2 import PasswordHasher
from playwright.sync_api import Page, sync_playwright

from openvisit import outbound
from openvisit.app import create_app
from openvisit.config import Settings
from openvisit.context import AppContext
from openvisit.crypto import generate_key
from openvisit.ehr_endpoints.service import add_endpoint
from openvisit.models import StaffAccount
from openvisit.portal.signin.service import get_or_create_organisation
from tests.sandbox.helpers import serve
from tests.smart.fake_ehr import CLIENT_ID, FHIR_BASE, HOST, FakeEhr

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
VIEWPORTS = {"desktop": (1280, 800), "phone": (390, 844)}
PASSWORD = "correct horse battery staple"
ODD_SECRET = "Zm9v+YmFy/YmF6=="


def _settings(db: Path, base: str) -> Settings:
    return Settings(_env_file=None, environment="test", public_url=base,  # type: ignore[call-arg]
                    database_url=f"sqlite+aiosqlite:///{db}",
                    secret_key="screenshot-secret-" + "s" * 32,
                    field_encryption_keys=generate_key(), auto_migrate=True,
                    log_level="WARNING")


async def _setup(settings: Settings, fake: FakeEhr) -> uuid.UUID:
    ctx = AppContext.create(settings)
    await ctx.start()
    try:
        async with ctx.transaction() as session:
            org = await get_or_create_organisation(session, "default",
                                                   display_name="Sandbox Family Clinic")
            await add_endpoint(session, app=ctx, organisation=org, fhir_base=FHIR_BASE,
                               environment="test", vendor="generic", client_id=CLIENT_ID,
                               client_secret=fake.client_secret,
                               auth_method="client_secret_basic", approved=True, actor="cli")
            odd = await add_endpoint(session, app=ctx, organisation=org,
                                     fhir_base="https://ehr.example.org/fhir/r4",
                                     environment="production", vendor="generic",
                                     client_id="openvisit", client_secret=ODD_SECRET,
                                     auth_method="client_secret_basic", name="EHR production",
                                     actor="cli")
            session.add(StaffAccount(organisation_id=org.id, username="admin",
                                     password_hash=PasswordHasher().hash(PASSWORD),
                                     roles=["org_admin", "approver"]))
            return odd.id
    finally:
        await ctx.close()


def _app(settings: Settings, fake: FakeEhr) -> Any:
    ctx = AppContext.create(settings)
    ctx.http = httpx.AsyncClient(mounts={HOST: httpx.ASGITransport(app=fake.app)}, timeout=10)
    ctx.services.portal_http = outbound.guarded_client(
        outbound.OutboundPolicy.from_settings(settings),
        mounts={HOST: httpx.ASGITransport(app=fake.app)})
    return create_app(ctx=ctx)


def _callback(base: str, fake: FakeEhr, path: str, *, lang: str = "en") -> str:
    """OpenVisit's launch → the fake EHR's authorize answer: the callback URL to open."""
    started = httpx.get(f"{base}{path}", headers={"Accept-Language": lang})
    assert started.status_code == 303, started.text[:300]

    async def authorize() -> str:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)) as http:
            answer = await http.get(started.headers["location"])
            assert answer.status_code == 302, answer.text[:300]
            return str(answer.headers["location"])

    # Playwright's sync API owns this thread's event loop: run the ASGI call in another.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, authorize()).result()


def _appointment(hours: float, patient: str = "pat-7") -> dict[str, Any]:
    def at(h: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + h * 3600))

    return {"resourceType": "Appointment", "id": "apt-9", "status": "booked",
            "start": at(hours), "end": at(hours + 0.5),
            "participant": [{"actor": {"reference": f"Patient/{patient}"}},
                            {"actor": {"reference": "Practitioner/prac-1"}}]}


def _shoot(page: Page, outdir: Path, name: str, size: str) -> None:
    page.screenshot(path=str(outdir / f"{name}-{size}.png"), full_page=True)


def main(outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ov-context-shots-"))
    fake = FakeEhr(client_jwks=lambda: {"keys": []})
    holder: dict[str, Any] = {}

    def make(base: str) -> Any:
        holder["settings"] = _settings(work / "openvisit.db", base)
        holder["odd"] = asyncio.run(_setup(holder["settings"], fake))
        return _app(holder["settings"], fake)

    with serve(make) as (base, _), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for size, (width, height) in VIEWPORTS.items():
            viewport = {"width": width, "height": height}
            page = browser.new_page(viewport=viewport)  # type: ignore[arg-type]
            fake.resources.clear()
            fake.fhir_status = {"Appointment/apt-9": 401}
            fake.id_token_claims = {}
            fake.launch_contexts["launch-123"] = {
                "fhirContext": [{"reference": "Appointment/apt-9"}], "patient": "pat-7"}
            page.goto(_callback(base, fake, f"/launch?iss={FHIR_BASE}&launch=launch-123"))
            _shoot(page, outdir, "launch-ehr-refused", size)
            page.close()

            fake.fhir_status = {}
            fake.resources["Appointment/apt-9"] = _appointment(0)
            fake.launch_contexts["launch-123"] = {
                "fhirContext": [{"reference": "Appointment/apt-9"}], "patient": "pat-8"}
            fake.id_token_claims = {"fhirUser": f"{FHIR_BASE}/Patient/pat-8"}
            page = browser.new_page(viewport=viewport, locale="es-ES")  # type: ignore[arg-type]
            page.goto(_callback(base, fake, f"/launch/patient?iss={FHIR_BASE}"
                                "&launch=launch-123", lang="es"))
            _shoot(page, outdir, "launch-patient-mismatch-es", size)
            page.close()

            fake.fhir_status = {"Appointment/apt-9": 401, "Appointment?": 401}
            fake.launch_contexts["launch-123"]["patient"] = "pat-7"
            fake.id_token_claims = {"fhirUser": f"{FHIR_BASE}/Patient/pat-7"}
            page = browser.new_page(viewport=viewport, locale="cs-CZ")  # type: ignore[arg-type]
            page.goto(_callback(base, fake, f"/launch/patient?iss={FHIR_BASE}"
                                "&launch=launch-123", lang="cs"))
            page.click("details.technical summary")
            _shoot(page, outdir, "launch-patient-ehr-refused-cs", size)
            page.close()

            fake.fhir_status = {}
            fake.resources["Appointment/apt-9"] = _appointment(3)
            fake.id_token_claims = {}
            page = browser.new_page(viewport=viewport)  # type: ignore[arg-type]
            page.goto(_callback(base, fake, f"/launch?iss={FHIR_BASE}&launch=launch-123"))
            page.wait_for_url("**/v/**")
            _shoot(page, outdir, "visit-clinician-too-early", size)
            page.close()

            page = browser.new_page(viewport=viewport)  # type: ignore[arg-type]
            page.goto(f"{base}/portal/signin")
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", PASSWORD)
            page.click("form[action='/portal/signin'] button[type=submit]")
            page.wait_for_url(f"{base}/portal*")
            page.goto(f"{base}/portal/endpoints/{holder['odd']}")
            _shoot(page, outdir, "portal-endpoint-basic-warning", size)
            page.goto(f"{base}/portal/endpoints/{holder['odd']}/edit")
            page.locator("#f-raw_basic_credentials").scroll_into_view_if_needed()
            page.screenshot(path=str(outdir / f"portal-endpoint-basic-form-{size}.png"))
            page.close()
        browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/screenshots"))

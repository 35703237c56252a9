"""The portal's Epic encrypted-link keys: one per kind, never shared, GCM unless opted in,
with the risk of a legacy mode shown on the endpoint page and in the integration records."""

from __future__ import annotations

import base64
import os
from collections.abc import Awaitable, Callable

from openvisit.context import AppContext
from tests.portal.conftest import Browser, endpoint_body

BrowserFactory = Callable[[str], Awaitable[Browser]]
PROVIDER = base64.b64encode(os.urandom(32)).decode()
PATIENT = base64.b64encode(os.urandom(32)).decode()
RISK = "CBC and ECB links carry no integrity check"


async def _epic_endpoint(admin: Browser, *, vendor: str = "epic") -> str:
    created = await admin.api("POST", "/api/portal/endpoints", json=endpoint_body(
        vendor=vendor, fhir_base=f"https://{vendor}.example.org/api/FHIR/R4",
        save_failed_check=True))
    assert created.status_code in (200, 201), created.text[:300]
    return str(created.json()["id"])


def _form(key: str, **extra: str) -> dict[str, str]:
    return {"key": key, "key_format": "base64", "mode": "gcm", "param": "data", **extra}


async def test_it_sets_one_key_per_kind_and_refuses_the_same_key_twice(
    browser: BrowserFactory, ctx: AppContext,
) -> None:
    admin = await browser("admin")
    endpoint = await _epic_endpoint(admin)
    page = await admin.get(f"/portal/endpoints/{endpoint}")
    assert "Epic encrypted links" in page.text and "no key yet" in page.text
    form = await admin.get(f"/portal/endpoints/{endpoint}/epic-link/provider")
    assert form.status_code == 200 and 'type="password"' in form.text

    saved = await admin.post(f"/portal/endpoints/{endpoint}/epic-link/provider", _form(PROVIDER))
    assert saved.status_code == 303, saved.text[:500]
    same = await admin.post(f"/portal/endpoints/{endpoint}/epic-link/patient", _form(PROVIDER))
    assert same.status_code == 422
    assert "This is the key of the provider link" in same.text
    assert PROVIDER not in same.text  # the key is never echoed back
    assert (await admin.post(f"/portal/endpoints/{endpoint}/epic-link/patient",
                             _form(PATIENT))).status_code == 303

    page = await admin.get(f"/portal/endpoints/{endpoint}")
    assert page.text.count("gcm · base64 key") == 2
    assert "Unauthenticated legacy mode" not in page.text
    assert PROVIDER not in page.text and PATIENT not in page.text


async def test_it_refuses_a_legacy_mode_without_the_opt_in_and_warns_with_it(
    browser: BrowserFactory, ctx: AppContext,
) -> None:
    admin = await browser("admin")
    endpoint = await _epic_endpoint(admin)
    refused = await admin.post(f"/portal/endpoints/{endpoint}/epic-link/patient",
                               _form(PATIENT, mode="cbc-zero-iv"))
    assert refused.status_code == 422 and "unauthenticated mode" in refused.text
    opted = await admin.post(f"/portal/endpoints/{endpoint}/epic-link/patient",
                             _form(PATIENT, mode="cbc-zero-iv", allow_legacy_modes="on"))
    assert opted.status_code == 303

    page = await admin.get(f"/portal/endpoints/{endpoint}")
    assert "Unauthenticated legacy mode:" in page.text
    assert "patient links (cbc-zero-iv)" in page.text
    assert RISK in page.text
    records = (await admin.api("GET", f"/api/portal/endpoints/{endpoint}/records")).json()
    patient = records["records"][1]["fields"]
    assert patient["context_link_warning"] == "cbc-zero-iv (legacy opt-in)"
    assert patient["context_link_cipher"] == "AES CBC-ZERO-IV with the patient key"
    assert "context_link_warning" not in records["records"][0]["fields"]
    html = await admin.get(f"/portal/endpoints/{endpoint}/records")
    assert RISK in html.text


async def test_it_lets_only_the_organisations_admins_set_keys_of_epic_endpoints(
    browser: BrowserFactory, ctx: AppContext,
) -> None:
    admin = await browser("admin")
    endpoint = await _epic_endpoint(admin)
    for persona in ("approver", "reporter"):
        other = await browser(persona)
        assert (await other.get(f"/portal/endpoints/{endpoint}/epic-link/provider")
                ).status_code == 403
        assert (await other.post(f"/portal/endpoints/{endpoint}/epic-link/provider",
                                 _form(PROVIDER))).status_code == 403
    outsider = await browser("outsider")
    assert (await outsider.post(f"/portal/endpoints/{endpoint}/epic-link/provider",
                                _form(PROVIDER))).status_code == 404
    no_csrf = await admin.post(f"/portal/endpoints/{endpoint}/epic-link/provider",
                               _form(PROVIDER), csrf=False)
    assert no_csrf.status_code == 403
    generic = await _epic_endpoint(admin, vendor="generic")
    assert (await admin.get(f"/portal/endpoints/{generic}/epic-link/provider")).status_code == 404
    assert (await admin.get(f"/portal/endpoints/{endpoint}/epic-link/admin")).status_code == 404
    assert "Epic encrypted links" not in (await admin.get(f"/portal/endpoints/{generic}")).text

"""EHR endpoints: the live FHIR base check, its messages, the life cycle and permissions."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from openvisit.context import AppContext
from openvisit.ehr_endpoints.service import LaunchRefused, endpoint_for_launch
from tests.peers.fixtures import free_port
from tests.portal.conftest import FAKE, FHIR, Browser, endpoint_body

BrowserFactory = Callable[[str], Awaitable[Browser]]


async def _create(admin: Browser, **overrides: Any) -> dict[str, Any]:
    response = await admin.api("POST", "/api/portal/endpoints", json=endpoint_body(**overrides))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_it_checks_the_fhir_base_live_and_waits_for_approval(browser: BrowserFactory) -> None:
    admin = await browser("admin")
    created = await _create(admin)
    assert created["state"] == "awaiting_approval"
    check = created["check"]
    assert check["ok"] and check["fhir_version"] == "4.0.1"
    assert [s["status"] for s in check["steps"]] == ["ok", "ok", "ok", "ok"]
    page = await admin.get(f"/portal/endpoints/{created['id']}")
    assert "Awaiting approval" in page.text and "Practitioner/prac-1" in page.text


async def test_it_keeps_an_endpoint_without_approver_as_a_draft(browser: BrowserFactory) -> None:
    admin = await browser("admin")
    created = await _create(admin, approver_ehr_user=None)
    assert created["state"] == "draft"
    named = await admin.api(
        "PATCH",
        f"/api/portal/endpoints/{created['id']}",
        json={"approver_ehr_user": f"{FHIR}/Practitioner/prac-1"},
    )
    assert named.json()["state"] == "awaiting_approval"
    assert named.json()["approver_ehr_user"] == f"{FHIR}/Practitioner/prac-1"


CASES: list[tuple[dict[str, Any], str]] = [
    ({"fhir_base": "ehr.example.org/fhir"}, "it must be an absolute https:// address"),
    ({"fhir_base": f"{FHIR}?tenant=1"}, "no query string or fragment"),
    ({"fhir_base": f"{FAKE}/dstu2"}, "speaks FHIR 1.0.2 (DSTU2); OpenVisit needs FHIR R4"),
    (
        {"fhir_base": f"{FAKE}/conformance"},
        "returned a FHIR Conformance, not a CapabilityStatement",
    ),
    ({"fhir_base": f"{FAKE}/login"}, "did not return JSON (got text/html)"),
    ({"fhir_base": f"{FAKE}/nosmart"}, "publishes no usable SMART configuration"),
    ({"fhir_base": f"{FAKE}/nopkce"}, "does not support PKCE S256"),
    (
        {"fhir_base": f"{FAKE}/api/FHIR", "vendor": "epic"},
        "Epic FHIR base URLs end with the R4 suffix",
    ),
    (
        {"fhir_base": f"{FAKE}/api/FHIR/DSTU2", "vendor": "epic"},
        "Replace /DSTU2 at the end with /R4",
    ),
    ({"fhir_base": "https://fhir-ehr.cerner.com/r4", "vendor": "oracle"}, "without your tenant id"),
    (
        {"fhir_base": "https://fhir.example.org/fhir", "vendor": "oracle"},
        "contain /r4/ followed by your tenant id",
    ),
    (
        {"fhir_base": "http://ehr.example.org/fhir", "environment": "production"},
        "production FHIR base must use https://",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), CASES)
async def test_it_says_what_is_wrong_with_a_fhir_base(
    browser: BrowserFactory,
    overrides: dict[str, Any],
    message: str,
) -> None:
    admin = await browser("admin")
    response = await admin.api("POST", "/api/portal/endpoints", json=endpoint_body(**overrides))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert message in error["message"], error["message"]
    assert error["details"]["field"] == "fhir_base"
    env = overrides.get("environment", "test").title()
    if "check" in error["details"]:
        assert error["message"].startswith(f"{env} environment:")


async def test_it_says_when_the_ehr_cannot_be_reached(browser: BrowserFactory) -> None:
    admin = await browser("admin")
    port = free_port()  # nobody listens here
    response = await admin.api(
        "POST", "/api/portal/checks", json={"fhir_base": f"http://127.0.0.1:{port}/fhir"}
    )
    check = response.json()
    assert not check["ok"]
    assert "could not reach the EHR's FHIR CapabilityStatement" in check["steps"][1]["message"]
    assert [s["status"] for s in check["steps"][2:]] == ["skipped", "skipped"]


async def test_it_warns_when_test_and_production_look_swapped(browser: BrowserFactory) -> None:
    admin = await browser("admin")
    response = await admin.api(
        "POST",
        "/api/portal/checks",
        json={
            "fhir_base": "https://ehr.example.org/fhir/auth/connect-ocurprd-oauth/api/FHDST",
            "environment": "test",
        },
    )
    assert any("looks like a production server" in w for w in response.json()["warnings"])


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"approver_ehr_user": "Patient/pat-1"}, "approver_ehr_user", "Practitioner/<id>"),
        ({"approver_ehr_user": "analyst jane"}, "approver_ehr_user", "Practitioner/<id>"),
        ({"client_id": " "}, "client_id", "client id the EHR issued"),
        (
            {"auth_method": "client_secret_post", "client_secret": None},
            "client_secret",
            "needs the client secret",
        ),
        ({"timezone": "Mars/Olympus"}, "timezone", "is not a time zone"),
    ],
)
async def test_it_names_the_field_of_every_other_mistake(
    browser: BrowserFactory,
    overrides: dict[str, Any],
    field: str,
    message: str,
) -> None:
    admin = await browser("admin")
    response = await admin.api("POST", "/api/portal/endpoints", json=endpoint_body(**overrides))
    assert response.status_code == 422, response.text
    assert message in response.json()["error"]["message"]
    assert response.json()["error"]["details"]["field"] == field


async def test_it_refuses_the_same_fhir_base_twice(browser: BrowserFactory) -> None:
    admin = await browser("admin")
    await _create(admin)
    again = await admin.api(
        "POST", "/api/portal/endpoints", json=endpoint_body(fhir_base=FHIR + "/")
    )
    assert again.status_code == 409
    assert "already has the FHIR base" in again.json()["error"]["message"]
    assert "its test endpoint" in again.json()["error"]["message"]


async def test_it_shows_the_failed_check_in_the_form_and_can_save_a_draft(
    browser: BrowserFactory,
) -> None:
    admin = await browser("admin")
    form = {
        "environment": "test",
        "vendor": "generic",
        "fhir_base": f"{FAKE}/dstu2",
        "client_id": "openvisit",
        "auth_method": "private_key_jwt",
        "name": "Try",
    }
    page = await admin.post("/portal/endpoints", form)
    assert page.status_code == 422
    assert "did not pass the check" in page.text and "(DSTU2)" in page.text
    assert f'value="{FAKE}/dstu2"' in page.text  # nothing typed is lost
    assert "Save as a draft anyway" in page.text
    saved = await admin.post("/portal/endpoints", {**form, "save_draft": "1"})
    assert saved.status_code == 303
    endpoint = await admin.get(saved.headers["location"])
    assert "Draft." in endpoint.text and "has not passed the live check" in endpoint.text
    fragment = await admin.post("/portal/endpoints/check", {**form, "fhir_base": FHIR})
    assert "passed every check" in fragment.text


async def test_it_sends_an_edited_approved_endpoint_back_and_launches_wait(
    browser: BrowserFactory,
    ctx: AppContext,
) -> None:
    admin = await browser("admin")
    created = await _create(admin)
    from openvisit.ehr_endpoints import service
    from openvisit.models import EhrEndpoint

    async with ctx.transaction() as session:
        endpoint = await session.get(EhrEndpoint, uuid.UUID(created["id"]))
        assert endpoint is not None
        await service.approve(
            session, endpoint=endpoint, actor="test", approver_ehr_user="Practitioner/prac-1"
        )
        endpoint.options = {
            **endpoint.options,
            "approved_snapshot": {
                "fhir_base": FHIR,
                "client_id": "openvisit",
                "version": endpoint.version,
            },
        }
    cosmetic = await admin.api(
        "PATCH",
        f"/api/portal/endpoints/{created['id']}",
        json={"name": "Renamed", "timezone": "Europe/Prague"},
    )
    assert cosmetic.json()["state"] == "approved"

    page = await admin.post(
        f"/portal/endpoints/{created['id']}",
        {
            "client_id": "openvisit-v2",
            "fhir_base": FHIR,
            "environment": "test",
            "vendor": "generic",
            "auth_method": "client_secret_basic",
            "name": "Renamed",
            "approver_ehr_user": "Practitioner/prac-1",
        },
    )
    assert page.status_code == 200, page.text[:300]  # asks first
    assert "sends it back for approval" in page.text and "client id" in page.text
    saved = await admin.post(
        f"/portal/endpoints/{created['id']}",
        {
            "client_id": "openvisit-v2",
            "fhir_base": FHIR,
            "environment": "test",
            "vendor": "generic",
            "auth_method": "client_secret_basic",
            "name": "Renamed",
            "approver_ehr_user": "Practitioner/prac-1",
            "confirm_reapproval": "1",
        },
    )
    assert saved.status_code == 303
    after = (await admin.api("GET", f"/api/portal/endpoints/{created['id']}")).json()
    assert after["state"] == "awaiting_approval" and after["version"] == 2
    assert {"field": "client_id", "approved": "openvisit", "now": "openvisit-v2"} in after[
        "changes_since_approval"
    ]
    async with ctx.transaction() as session:
        with pytest.raises(LaunchRefused, match=r"test endpoint .* is not approved yet"):
            await endpoint_for_launch(session, iss=FHIR)


@pytest.mark.parametrize("persona", ["approver", "reporter"])
async def test_it_lets_only_org_admins_change_endpoints(
    browser: BrowserFactory,
    persona: str,
) -> None:
    admin, user = await browser("admin"), await browser(persona)
    created = await _create(admin)
    assert (
        await user.api("POST", "/api/portal/endpoints", json=endpoint_body(fhir_base=FHIR + "/x"))
    ).status_code == 403
    patch = await user.api("PATCH", f"/api/portal/endpoints/{created['id']}", json={"name": "x"})
    assert patch.status_code == 403
    assert "Only an org admin can change EHR endpoints" in patch.json()["error"]["message"]
    assert (await user.api("DELETE", f"/api/portal/endpoints/{created['id']}")).status_code == 403
    assert (await user.get(f"/portal/endpoints/{created['id']}")).status_code == 200  # may read
    assert (await user.get("/portal/endpoints/new")).status_code == 403


async def test_it_hides_other_organisations_endpoints(browser: BrowserFactory) -> None:
    admin, outsider = await browser("admin"), await browser("outsider")
    created = await _create(admin)
    for method, url in (
        ("GET", f"/api/portal/endpoints/{created['id']}"),
        ("PATCH", f"/api/portal/endpoints/{created['id']}"),
        ("DELETE", f"/api/portal/endpoints/{created['id']}"),
        ("GET", f"/api/portal/endpoints/{created['id']}/records"),
    ):
        response = await outsider.api(
            method, url, json={"name": "x"} if method == "PATCH" else None
        )
        assert response.status_code == 404, (method, url)
    assert (await outsider.api("GET", "/api/portal/endpoints")).json() == []
    page = await outsider.get(f"/portal/endpoints/{created['id']}")
    assert page.status_code == 404 and "no such EHR endpoint in your organisation" in page.text


async def test_it_removes_an_endpoint_without_appointments(browser: BrowserFactory) -> None:
    admin = await browser("admin")
    created = await _create(admin)
    removed = await admin.post(f"/portal/endpoints/{created['id']}/delete")
    assert removed.status_code == 303
    assert (await admin.api("GET", "/api/portal/endpoints")).json() == []
    audit = (await admin.api("GET", "/api/portal/audit?action=endpoint.delete")).json()
    assert audit["entries"][0]["before"]["fhir_base"] == FHIR

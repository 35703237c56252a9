"""Roles: the operator role (outbox), and the two-person rule around the approver role
(issue 10, item 2 and the low items)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import select

from openvisit.context import AppContext
from openvisit.models import StaffAccount
from openvisit.portal.signin.service import get_or_create_organisation
from tests.portal.conftest import PASSWORD, Browser, endpoint_body, password_hash
from tests.portal.test_approval import ehr_sign_in_url
from tests.support.backend import subprocess_env

BrowserFactory = Callable[[str], Awaitable[Browser]]


@pytest.fixture
async def boss(ctx: AppContext, personas: dict[str, str]) -> str:
    """A second org admin of acme."""
    async with ctx.transaction() as session:
        org = await get_or_create_organisation(session, "acme")
        session.add(StaffAccount(organisation_id=org.id, username="boss",
                                 password_hash=password_hash(), roles=["org_admin"]))
    return "boss"


async def _account_id(browser: Browser, username: str) -> str:
    staff = (await browser.api("GET", "/api/portal/staff")).json()
    return str(next(s["id"] for s in staff if s["username"] == username))


async def test_it_offers_the_operator_role_on_the_staff_page(
    browser: BrowserFactory, ctx: AppContext,
) -> None:
    admin = await browser("admin")
    page = await admin.get("/portal/staff")
    assert 'name="roles" value="operator"' in page.text and "Operator" in page.text
    added = await admin.post("/portal/staff", {"kind": "local", "username": "night-shift",
                                               "password": PASSWORD, "roles": ["operator"]})
    assert added.status_code == 303, added.text[:400]
    reporter_id = await _account_id(admin, "reporter")
    saved = await admin.post(f"/portal/staff/{reporter_id}",
                             {"action": "roles", "roles": ["reporter", "operator"]})
    assert saved.status_code == 303
    async with ctx.db.read() as session:
        roles = {a.username: a.roles for a in await session.scalars(select(StaffAccount))}
    assert roles["night-shift"] == ["operator"]
    assert roles["reporter"] == ["operator", "reporter"]


def test_it_creates_an_operator_from_the_command_line(db_url: str) -> None:
    run = [sys.executable, "-m", "openvisit", "admin", "create", "--username", "ops",
           "--org", "default", "--role", "operator", "--password-stdin"]
    ok = subprocess.run(run, input=PASSWORD + "\n", env=subprocess_env(db_url),
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    roles = subprocess.run(
        [sys.executable, "-m", "openvisit", "admin", "roles", "--username", "ops",
         "--org", "default", "--role", "operator", "--role", "reporter"],
        env=subprocess_env(db_url), capture_output=True, text=True, timeout=60)
    assert roles.returncode == 0, roles.stderr
    assert "ops in default now has the roles operator, reporter" in roles.stdout
    bad = subprocess.run([*run[:6], "ops2", *run[7:10], "janitor", *run[11:]],
                         input=PASSWORD + "\n", env=subprocess_env(db_url),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "operator" in bad.stderr and "janitor" in bad.stderr


async def test_it_lets_no_admin_grant_themselves_the_approver_role(
    browser: BrowserFactory, boss: str,
) -> None:
    admin = await browser("admin")
    own = await _account_id(admin, "admin")
    api = await admin.api("PATCH", f"/api/portal/staff/{own}",
                          json={"roles": ["org_admin", "approver"]})
    assert api.status_code == 403
    assert "another org admin" in api.json()["error"]["message"]
    form = await admin.post(f"/portal/staff/{own}",
                            {"action": "roles", "roles": ["org_admin", "approver"]})
    assert form.status_code == 403 and "another org admin" in form.text
    # Through one of their API tokens neither.
    made = await admin.api("POST", "/api/portal/api-tokens",
                           json={"name": "CI", "roles": ["org_admin"]})
    bearer = {"Authorization": f"Bearer {made.json()['token']}"}
    via_token = await admin.http.patch(f"/api/portal/staff/{own}", headers=bearer,
                                       json={"roles": ["org_admin", "approver"]})
    assert via_token.status_code == 403
    assert (await admin.api("GET", "/api/portal/me")).json()["roles"] == ["org_admin"]
    # Another admin may grant it.
    chief = await browser(boss)
    granted = await chief.api("PATCH", f"/api/portal/staff/{own}",
                              json={"roles": ["org_admin", "approver"]})
    assert granted.status_code == 200
    assert (await admin.api("GET", "/api/portal/me")).json()["roles"] == [
        "approver", "org_admin"]
    # Keeping a role one already holds, or dropping one, is not a grant.
    kept = await admin.api("PATCH", f"/api/portal/staff/{own}", json={"roles": ["org_admin"]})
    assert kept.status_code == 200


async def test_it_lets_no_approver_approve_an_endpoint_they_configured(
    browser: BrowserFactory, boss: str,
) -> None:
    chief = await browser(boss)
    admin = await browser("admin")
    own = await _account_id(chief, "admin")
    await chief.api("PATCH", f"/api/portal/staff/{own}", json={"roles": ["org_admin", "approver"]})
    created = await admin.api("POST", "/api/portal/endpoints", json=endpoint_body())
    assert created.status_code == 201 and created.json()["state"] == "awaiting_approval"
    endpoint_id = created.json()["id"]
    refused = await admin.post(f"/portal/endpoints/{endpoint_id}/approve")
    assert refused.status_code == 403
    assert "You configured this test endpoint" in refused.text
    assert "so another approver must approve it" in refused.text
    other = await browser("approver")
    started = await other.post(f"/portal/endpoints/{endpoint_id}/approve")
    assert "/authorize" in ehr_sign_in_url(started)

"""API tokens act for the person who made them, as that person is *now* (issue 10, item 3).

A token stops working the moment its creator is deactivated (401), grants only the roles its
creator still holds (403 past them), and can never mint tokens or admins on a lost authority.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from openvisit.context import AppContext
from openvisit.models import StaffAccount
from openvisit.portal.signin.service import get_or_create_organisation
from tests.portal.conftest import PASSWORD, Browser, password_hash

BrowserFactory = Callable[[str], Awaitable[Browser]]


@pytest.fixture
async def boss(ctx: AppContext, personas: dict[str, str]) -> str:
    """A second org admin of acme, who can demote or deactivate ``admin``."""
    async with ctx.transaction() as session:
        org = await get_or_create_organisation(session, "acme")
        session.add(StaffAccount(organisation_id=org.id, username="boss",
                                 password_hash=password_hash(), roles=["org_admin"]))
    return "boss"


async def _token(admin: Browser, roles: list[str]) -> dict[str, str]:
    made = await admin.api("POST", "/api/portal/api-tokens", json={"name": "CI", "roles": roles})
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['token']}"}


async def _account_id(browser: Browser, username: str) -> str:
    staff = (await browser.api("GET", "/api/portal/staff")).json()
    return str(next(s["id"] for s in staff if s["username"] == username))


def _new_admin(name: str) -> dict[str, Any]:
    return {"kind": "local", "username": name, "password": PASSWORD, "roles": ["org_admin"]}


async def test_it_stops_a_token_the_moment_its_creator_is_deactivated(
    browser: BrowserFactory, anonymous: httpx.AsyncClient, boss: str,
) -> None:
    admin, chief = await browser("admin"), await browser(boss)
    bearer = await _token(admin, ["org_admin"])
    assert (await anonymous.get("/api/portal/staff", headers=bearer)).status_code == 200
    off = await chief.api("PATCH", f"/api/portal/staff/{await _account_id(chief, 'admin')}",
                          json={"active": False})
    assert off.status_code == 200
    after = await anonymous.get("/api/portal/staff", headers=bearer)
    assert after.status_code == 401
    assert "deactivated" in after.json()["error"]["message"]
    made = await anonymous.post("/api/portal/staff", headers=bearer, json=_new_admin("mallory"))
    assert made.status_code == 401


async def test_it_gives_a_token_no_more_than_its_creator_holds_now(
    browser: BrowserFactory, anonymous: httpx.AsyncClient, boss: str,
) -> None:
    admin, chief = await browser("admin"), await browser(boss)
    bearer = await _token(admin, ["org_admin"])
    demoted = await chief.api(
        "PATCH", f"/api/portal/staff/{await _account_id(chief, 'admin')}",
        json={"roles": ["reporter"]})
    assert demoted.status_code == 200
    me = await anonymous.get("/api/portal/me", headers=bearer)
    assert me.status_code == 200 and me.json()["roles"] == []
    listed = await anonymous.get("/api/portal/staff", headers=bearer)
    assert listed.status_code == 403
    made = await anonymous.post("/api/portal/staff", headers=bearer, json=_new_admin("mallory"))
    assert made.status_code == 403
    staff = (await chief.api("GET", "/api/portal/staff")).json()
    assert "mallory" not in [s["username"] for s in staff]
    # Promoted again, the same token works again: it is checked on every request.
    await chief.api("PATCH", f"/api/portal/staff/{await _account_id(chief, 'admin')}",
                    json={"roles": ["org_admin"]})
    assert (await anonymous.get("/api/portal/staff", headers=bearer)).status_code == 200


async def test_it_lets_no_token_mint_another_token(
    browser: BrowserFactory, anonymous: httpx.AsyncClient,
) -> None:
    admin = await browser("admin")
    bearer = await _token(admin, ["org_admin"])
    minted = await anonymous.post("/api/portal/api-tokens", headers=bearer,
                                  json={"name": "spare", "roles": ["org_admin"]})
    assert minted.status_code == 403
    assert "signed in to the portal" in minted.json()["error"]["message"]

"""Staff sign-in, sessions, CSRF and API tokens."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import timedelta

import httpx
import pytest
import time_machine
from sqlalchemy import select

from openvisit.context import AppContext
from openvisit.models import AuditLog, utcnow
from openvisit.models.organisation import ApiToken, StaffSession
from openvisit.portal.signin.sessions import digest
from tests.portal.conftest import PASSWORD, Browser, sign_in
from tests.support.backend import make_settings

BrowserFactory = Callable[[str], Awaitable[Browser]]


async def test_it_sends_an_anonymous_visitor_to_the_sign_in_page_and_back(
    anonymous: httpx.AsyncClient,
    personas: dict[str, str],
) -> None:
    response = await anonymous.get("/portal/sms?x=1")
    assert response.status_code == 303
    assert response.headers["location"] == "/portal/signin?next=%2Fportal%2Fsms%3Fx%3D1"
    api = await anonymous.get("/api/portal/endpoints")
    assert api.status_code == 401
    assert api.json()["error"]["code"] == "sign_in_required"


async def test_it_signs_in_a_local_account_with_a_safe_cookie(
    anonymous: httpx.AsyncClient,
    personas: dict[str, str],
    ctx: AppContext,
) -> None:
    response = await sign_in(anonymous, "admin")
    assert response.status_code == 303 and response.headers["location"] == "/portal"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("ov_portal=") and "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower() and "Secure" not in cookie  # http public URL
    token = cookie.split(";")[0].split("=", 1)[1]
    async with ctx.transaction() as session:
        row = await session.get(StaffSession, digest(token))
        assert row is not None and row.method == "local"  # only the hash is stored
        assert await session.scalar(select(AuditLog).where(AuditLog.action == "staff.sign_in"))


async def test_it_refuses_wrong_passwords_with_one_message_and_keeps_the_username(
    anonymous: httpx.AsyncClient,
    personas: dict[str, str],
) -> None:
    for username, password in (("admin", "wrong password!"), ("nobody", PASSWORD)):
        response = await sign_in(anonymous, username, password)
        assert response.status_code == 401
        assert "do not match an account" in response.text
        assert f'value="{username}"' in response.text


async def test_it_refuses_a_sign_in_form_without_its_token(
    anonymous: httpx.AsyncClient,
    personas: dict[str, str],
) -> None:
    response = await anonymous.post(
        "/portal/signin", data={"username": "admin", "password": PASSWORD, "signin_token": "forged"}
    )
    assert response.status_code == 403
    assert "sign-in form had expired" in response.text


async def test_it_never_redirects_off_site_after_sign_in(
    anonymous: httpx.AsyncClient,
    personas: dict[str, str],
) -> None:
    page = await anonymous.get("/portal/signin?next=https://evil.example/")
    assert 'name="next" value="/portal"' in page.text
    page = await anonymous.get("/portal/signin?next=//evil.example/portal")
    assert 'name="next" value="/portal"' in page.text


async def test_it_asks_for_the_organisation_when_a_username_exists_twice(
    anonymous: httpx.AsyncClient,
    ctx: AppContext,
    personas: dict[str, str],
) -> None:
    from openvisit.portal.signin.service import create_local_account, get_or_create_organisation

    async with ctx.transaction() as session:
        other = await get_or_create_organisation(session, "other")
        await create_local_account(
            session, other, app=ctx, username="admin", password=PASSWORD, roles=["reporter"]
        )
    # The answer is the one for a wrong password (it tells nobody the name exists twice),
    # and that answer says how to name the organisation.
    response = await sign_in(anonymous, "admin")
    assert response.status_code == 401 and "do not match an account" in response.text
    assert "is written organisation/username" in response.text
    assert (await sign_in(anonymous, "acme/admin")).status_code == 303


async def test_it_refuses_changes_without_the_csrf_token(browser: BrowserFactory) -> None:
    admin = await browser("admin")
    for token in (None, "wrong-token"):
        data = {"send": "on", "patients": "on"}
        if token:
            data["csrf_token"] = token
        response = await admin.post("/portal/sms/consents", data, csrf=False)
        assert response.status_code == 403
        assert "security token missing or wrong" in response.text
    api = await admin.http.put("/api/portal/sms/consents", json={"send": True, "patients": True})
    assert api.status_code == 403 and api.json()["error"]["code"] == "csrf_failed"
    ok = await admin.post("/portal/sms/consents", {"send": "on", "patients": "on"})
    assert ok.status_code == 303


async def test_it_refuses_changes_from_another_origin(browser: BrowserFactory) -> None:
    admin = await browser("admin")
    response = await admin.post(
        "/portal/sms/consents", {"send": "on"}, headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 403 and "another web site" in response.text
    same = await admin.post(
        "/portal/sms/consents", {"send": "on"}, headers={"Origin": "http://testserver"}
    )
    assert same.status_code == 303


async def test_it_ends_idle_and_old_sessions_and_signed_out_ones(
    browser: BrowserFactory,
    ctx: AppContext,
) -> None:
    admin = await browser("admin")
    now = utcnow()
    with time_machine.travel(now + timedelta(minutes=29), tick=False):
        assert (await admin.get("/portal")).status_code == 200  # active: the idle clock restarts
    with time_machine.travel(now + timedelta(minutes=29 + 31), tick=False):
        assert (await admin.get("/portal")).status_code == 303  # idle for 31 minutes

    admin = await browser("admin")
    now = utcnow()
    for minutes in range(20, 12 * 60, 20):  # busy all day, never idle…
        with time_machine.travel(now + timedelta(minutes=minutes), tick=False):
            assert (await admin.get("/api/portal/me")).status_code == 200
    with time_machine.travel(now + timedelta(hours=12, minutes=1), tick=False):
        assert (await admin.get("/api/portal/me")).status_code == 401  # …but 12 h is the limit

    admin = await browser("admin")
    out = await admin.post("/portal/signout")
    assert out.headers["location"] == "/portal/signin?notice=signed_out"
    assert admin.http.cookies.get("ov_portal") is None  # deleted in the browser…
    async with ctx.transaction() as session:
        ended = await session.scalars(
            select(StaffSession).where(StaffSession.ended_at.is_not(None))
        )
        assert len(list(ended)) == 1  # …and ended on the server for any copy of it


async def test_it_marks_the_cookie_secure_on_https(
    ctx: AppContext, personas: dict[str, str], db_url: str
) -> None:
    from openvisit.app import create_app

    settings = make_settings(db_url, public_url="https://openvisit.example")
    https_ctx = AppContext.create(settings)
    try:
        app = create_app(ctx=https_ctx)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="https://openvisit.example"
        ) as http:
            response = await sign_in(http, "admin")
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("__Host-ov_portal=") and "Secure" in cookie
        assert "Path=/" in cookie and "Domain" not in cookie
    finally:
        await https_ctx.close()


async def test_it_takes_role_changes_and_deactivation_into_account_at_once(
    browser: BrowserFactory,
    ctx: AppContext,
) -> None:
    admin, reporter = await browser("admin"), await browser("reporter")
    me = (await reporter.get("/api/portal/me")).json()
    assert me["roles"] == ["reporter"]
    staff = (await admin.api("GET", "/api/portal/staff")).json()
    reporter_id = next(s["id"] for s in staff if s["username"] == "reporter")
    changed = await admin.api(
        "PATCH", f"/api/portal/staff/{reporter_id}", json={"roles": ["reporter", "approver"]}
    )
    assert changed.status_code == 200
    assert (await reporter.get("/api/portal/me")).json()["roles"] == ["approver", "reporter"]
    await admin.api("PATCH", f"/api/portal/staff/{reporter_id}", json={"active": False})
    assert (await reporter.get("/api/portal/me")).status_code == 401


async def test_it_keeps_one_active_org_admin(browser: BrowserFactory) -> None:
    admin = await browser("admin")
    staff = (await admin.api("GET", "/api/portal/staff")).json()
    own = next(s["id"] for s in staff if s["username"] == "admin")
    response = await admin.api("PATCH", f"/api/portal/staff/{own}", json={"roles": ["reporter"]})
    assert response.status_code == 422
    assert "last active org admin" in response.json()["error"]["message"]


async def test_it_manages_staff_by_form_with_messages_at_the_field(
    browser: BrowserFactory,
) -> None:
    admin = await browser("admin")
    short = await admin.post(
        "/portal/staff",
        {"kind": "local", "username": "nurse", "password": "short", "roles": ["reporter"]},
    )
    assert short.status_code == 422 and "at least 12 characters" in short.text
    assert 'value="nurse"' in short.text  # the form keeps what was typed
    taken = await admin.post(
        "/portal/staff",
        {"kind": "local", "username": "admin", "password": PASSWORD, "roles": ["reporter"]},
    )
    assert taken.status_code == 409 and "already an account named" in taken.text
    none = await admin.post(
        "/portal/staff", {"kind": "local", "username": "x", "password": PASSWORD}
    )
    assert none.status_code == 422 and "Tick at least one role" in none.text
    idp = await admin.post(
        "/portal/staff", {"kind": "idp", "subject": "e123", "roles": ["approver"]}
    )
    assert idp.status_code == 422 and "No identity provider is configured" in idp.text
    ok = await admin.post(
        "/portal/staff",
        {"kind": "local", "username": "nurse", "password": PASSWORD, "roles": ["reporter"]},
    )
    assert ok.status_code == 303


@pytest.mark.parametrize("persona", ["approver", "reporter"])
async def test_it_lets_only_org_admins_manage_staff_and_tokens(
    browser: BrowserFactory,
    persona: str,
) -> None:
    user = await browser(persona)
    assert (await user.get("/portal/staff")).status_code == 403
    made = await user.api("POST", "/api/portal/api-tokens", json={"name": "x", "roles": [persona]})
    assert made.status_code == 403
    assert "Only an org admin can" in made.json()["error"]["message"]


async def test_it_issues_api_tokens_shown_once_stored_hashed_and_revocable(
    browser: BrowserFactory,
    anonymous: httpx.AsyncClient,
    ctx: AppContext,
) -> None:
    admin = await browser("admin")
    made = await admin.api(
        "POST",
        "/api/portal/api-tokens",
        json={"name": "Terraform", "roles": ["org_admin"], "expires_in_days": 30},
    )
    assert made.status_code == 201
    secret = made.json()["token"]
    assert secret.startswith("ovt_")
    async with ctx.transaction() as session:
        row = await session.scalar(select(ApiToken))
        assert (
            row is not None
            and row.token_hash == digest(secret)
            and secret not in str([row.prefix, row.name])
        )
    listed = (await admin.api("GET", "/api/portal/api-tokens")).json()
    assert listed[0]["token"] is None  # never shown again
    bearer = {"Authorization": f"Bearer {secret}"}
    # A token needs no CSRF header: it is not a cookie a browser sends by itself.
    consents = await anonymous.put(
        "/api/portal/sms/consents", headers=bearer, json={"send": True, "patients": True}
    )
    assert consents.status_code == 200
    assert (await anonymous.get("/api/portal/me", headers=bearer)).json()["via"] == "token"
    revoked = await admin.api("DELETE", f"/api/portal/api-tokens/{made.json()['id']}")
    assert revoked.status_code == 204
    after = await anonymous.get("/api/portal/me", headers=bearer)
    assert after.status_code == 401 and "revoked" in after.json()["error"]["message"]


async def test_it_never_gives_a_token_more_roles_than_its_creator(
    browser: BrowserFactory,
    anonymous: httpx.AsyncClient,
) -> None:
    admin = await browser("admin")
    refused = await admin.api(
        "POST", "/api/portal/api-tokens", json={"name": "x", "roles": ["approver"]}
    )
    assert refused.status_code == 422
    assert "role its creator does not hold" in refused.json()["error"]["message"]
    reader = await admin.api(
        "POST", "/api/portal/api-tokens", json={"name": "BI", "roles": ["org_admin"]}
    )
    bearer = {"Authorization": f"Bearer {reader.json()['token']}"}
    assert (await anonymous.get("/api/portal/audit", headers=bearer)).status_code == 200


async def test_it_creates_api_tokens_in_the_portal_and_shows_them_once(
    browser: BrowserFactory,
) -> None:
    admin = await browser("admin")
    page = await admin.post(
        "/portal/api-tokens", {"name": "CI", "roles": ["org_admin"], "expires_in_days": "7"}
    )
    assert page.status_code == 200 and "shown only once" in page.text
    secret = re.search(r'id="new-token">(ovt_[^<]+)<', page.text)
    assert secret
    again = await admin.get("/portal/staff")
    assert secret.group(1) not in again.text and secret.group(1)[:10] in again.text
    bad = await admin.post("/portal/api-tokens", {"name": "", "roles": ["org_admin"]})
    assert bad.status_code == 422 and "Give the token a name" in bad.text

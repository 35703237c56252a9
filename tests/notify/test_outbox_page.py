"""``/ops/outbox`` is a portal page: signed-in operators and org admins only, one
organisation's messages each, and in production no message text at all (issue 10, item 2).

Personas: ``admin`` (org admin of the clinic, the ``make demo`` admin), ``operator`` (operator
of the clinic), ``reporter`` (reporter of the clinic) and ``stranger`` (operator of another
organisation, whose own outbox has a message too).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import httpx
import pytest

from openvisit.context import AppContext
from openvisit.models import AuditLog, StaffAccount, utcnow
from openvisit.portal.signin.service import get_or_create_organisation
from tests.notify.conftest import PUBLIC_URL
from tests.notify.support import make_appointment, make_site, run_jobs
from tests.portal.conftest import password_hash, sign_in
from tests.support.backend import make_settings

CLINIC_NUMBER, OTHER_NUMBER = "+420601123456", "+420601999888"
PEOPLE = {
    "admin": ("clinic", ["org_admin"]),
    "operator": ("clinic", ["operator"]),
    "reporter": ("clinic", ["reporter"]),
    "stranger": ("elsewhere", ["operator"]),
}
Browser = Callable[[str], Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def outboxes(app: AppContext) -> None:
    """A booked confirmation in each organisation's outbox, and the four people."""
    clinic = await make_site(app, slug="clinic", name="Example Hospital", offsets=[])
    other = await make_site(app, slug="elsewhere", name="Other Hospital", offsets=[])
    await make_appointment(app, clinic, start_at=utcnow() + timedelta(days=2),
                           mobile=CLINIC_NUMBER)
    await make_appointment(app, other, start_at=utcnow() + timedelta(days=2),
                           mobile=OTHER_NUMBER, department="Dermatology")
    await run_jobs(app)
    async with app.transaction() as session:
        for name, (slug, roles) in PEOPLE.items():
            org = await get_or_create_organisation(session, slug)
            session.add(StaffAccount(organisation_id=org.id, username=name,
                                     password_hash=password_hash(), roles=roles))


@pytest.fixture
async def web(app: AppContext, outboxes: None) -> AsyncIterator[Browser]:
    """``await web("operator")`` → a client of the whole app signed in as that person
    (``web("")`` → an anonymous one)."""
    from openvisit.app import create_app

    asgi = create_app(ctx=app)
    opened: list[httpx.AsyncClient] = []

    async def make(name: str) -> httpx.AsyncClient:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url=PUBLIC_URL)
        opened.append(http)
        if name:
            response = await sign_in(http, name)
            assert response.status_code == 303, response.text[:400]
        return http

    yield make
    for http in opened:
        await http.aclose()


def production(app: AppContext) -> None:
    settings = app.settings
    app.settings = make_settings(settings.database_url, redis_url=settings.redis_url,
                                 public_url=PUBLIC_URL, environment="production")


async def test_it_sends_anonymous_visitors_to_sign_in_and_answers_json_clients_401(
    web: Browser,
) -> None:
    anonymous = await web("")
    page = await anonymous.get("/ops/outbox")
    assert page.status_code == 303
    assert page.headers["location"] == "/portal/signin?next=%2Fops%2Foutbox"
    api = await anonymous.get("/ops/outbox", headers={"Accept": "application/json"})
    assert api.status_code == 401 and api.json()["error"]["code"] == "sign_in_required"
    assert CLINIC_NUMBER[-3:] not in page.text + api.text
    # After signing in, the sign-in page sends the person back to the outbox.
    signin = await anonymous.get("/portal/signin?next=%2Fops%2Foutbox")
    assert 'name="next" value="/ops/outbox"' in signin.text


async def test_it_refuses_a_reporter(web: Browser) -> None:
    reporter = await web("reporter")
    page = await reporter.get("/ops/outbox")
    assert page.status_code == 403 and "Only an operator or org admin can" in page.text
    assert "/v/" not in page.text and "+42*******456" not in page.text
    api = await reporter.get("/ops/outbox", headers={"Accept": "application/json"})
    assert api.status_code == 403 and api.json()["error"]["code"] == "permission_denied"


async def test_it_shows_an_operator_only_their_own_organisations_messages(
    web: Browser,
) -> None:
    stranger = await web("stranger")
    theirs = (await stranger.get("/ops/outbox", headers={"Accept": "application/json"})).json()
    assert [m["to"] for m in theirs["messages"]] == ["+42*******888"]
    assert theirs["total"] == 1
    assert "Dermatology" in theirs["messages"][0]["text"]
    page = await stranger.get("/ops/outbox")
    assert page.status_code == 200
    assert "+42*******456" not in page.text and "Cardiology" not in page.text

    operator = await web("operator")
    ours = (await operator.get("/ops/outbox", headers={"Accept": "application/json"})).json()
    assert [m["to"] for m in ours["messages"]] == ["+42*******456"]
    assert "Dermatology" not in str(ours)


async def test_it_lets_the_demo_admin_click_the_join_link_in_development(
    web: Browser, app: AppContext,
) -> None:
    admin = await web("admin")
    page = await admin.get("/ops/outbox")
    assert page.status_code == 200
    assert '<a href="https://visits.example.test/v/' in page.text
    assert "+42*******456" in page.text and CLINIC_NUMBER not in page.text
    assert "Dermatology" not in page.text
    async with app.db.read() as session:
        from sqlalchemy import select

        entry = await session.scalar(select(AuditLog).where(AuditLog.action == "outbox.read"))
        assert entry is not None and entry.after == {"messages": 1, "text_shown": True}


async def test_it_shows_only_metadata_in_production(web: Browser, app: AppContext) -> None:
    production(app)
    operator = await web("operator")
    page = await operator.get("/ops/outbox")
    assert page.status_code == 200
    assert "+42*******456" in page.text and "booked" in page.text and "sent" in page.text
    assert "/v/" not in page.text and "Cardiology" not in page.text
    assert "Example Hospital: your video visit" not in page.text
    api = (await operator.get("/ops/outbox", headers={"Accept": "application/json"})).json()
    [message] = api["messages"]
    assert set(message) == {"at", "template", "channel", "to", "status"}
    assert (message["template"], message["channel"], message["status"]) == (
        "booked", "sms", "sent")

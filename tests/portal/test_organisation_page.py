"""The organisation page's clinician label mode and department names (issue 15 item 14):
set in the portal as hospital IT would, validated with a field error, audited."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import select

from openvisit.context import AppContext
from openvisit.models import AuditLog, Organisation
from openvisit.notify import departments
from tests.portal.conftest import Browser

BrowserFactory = Callable[[str], Awaitable[Browser]]


def org_form(**overrides: str) -> dict[str, str]:
    form = {"display_name": "Acme", "region": "local", "unlimited": "on",
            "default_phone_region": "US", "timezone": "UTC", "frame_ancestors": "",
            "provider_label_mode": "role"}
    form.update(overrides)
    return form


async def test_it_sets_how_patients_see_the_clinician(browser: BrowserFactory,
                                                     ctx: AppContext) -> None:
    admin = await browser("admin")
    page = await admin.get("/portal/organisation")
    assert 'name="provider_label_mode"' in page.text and "“Your clinician”" in page.text
    bad = await admin.post("/portal/organisation", org_form(provider_label_mode="name"))
    assert bad.status_code == 422 and 'id="f-provider_label_mode-error"' in bad.text
    saved = await admin.post("/portal/organisation", org_form(provider_label_mode="display"))
    assert saved.status_code == 303, saved.text[:400]
    async with ctx.db.read() as session:
        org = (await session.scalars(select(Organisation).where(
            Organisation.slug == "acme"))).one()
        assert org.provider_label_mode == "display"
        changes = list(await session.scalars(select(AuditLog.after).where(
            AuditLog.action == "organisation.update")))
    assert any(c and c.get("provider_label_mode") == "display" for c in changes)


async def test_it_names_department_codes_per_language_and_removes_them(
        browser: BrowserFactory, ctx: AppContext) -> None:
    admin = await browser("admin")
    assert "No department is named yet" in (await admin.get("/portal/organisation")).text
    for form in ({"code": "10501", "language": "", "name": "Family medicine"},
                 {"code": "10501", "language": "es", "name": "Medicina familiar"}):
        saved = await admin.post("/portal/organisation/departments", form)
        assert saved.status_code == 303, saved.text[:400]
        assert saved.headers["location"].endswith("notice=department_saved#departments")
    empty = await admin.post("/portal/organisation/departments",
                             {"code": "", "language": "", "name": "Cardiology"})
    assert empty.status_code == 422 and 'id="f-code-error"' in empty.text
    assert 'value="Cardiology"' in empty.text  # what was typed is kept
    unknown = await admin.post("/portal/organisation/departments",
                               {"code": "CARD", "language": "xx", "name": "Cardiology"})
    assert unknown.status_code == 422 and "leave it empty for every language" in unknown.text
    page = (await admin.get("/portal/organisation")).text
    assert "Family medicine" in page and "Medicina familiar" in page
    assert "<code>10501</code>" in page
    async with ctx.db.read() as session:
        org = (await session.scalars(select(Organisation).where(
            Organisation.slug == "acme"))).one()
        spanish = await departments.display_name(session, organisation_id=org.id,
                                                 department="10501", language="es")
        czech = await departments.display_name(session, organisation_id=org.id,
                                               department="10501", language="cs")
    assert (spanish, czech) == ("Medicina familiar", "Family medicine")

    removed = await admin.post("/portal/organisation/departments/remove",
                               {"code": "10501", "language": "es"})
    assert removed.status_code == 303
    page = (await admin.get("/portal/organisation")).text
    assert "Medicina familiar" not in page and "Family medicine" in page
    reporter = await browser("reporter")
    refused = await reporter.post("/portal/organisation/departments",
                                  {"code": "CARD", "language": "", "name": "Cardiology"})
    assert refused.status_code == 403
    async with ctx.db.read() as session:
        actions = list(await session.scalars(select(AuditLog.action).where(
            AuditLog.action.like("department.%")).order_by(AuditLog.id)))
    assert actions == ["department.name", "department.name", "department.name_removed"]


async def test_it_keeps_the_chat_and_limits_patients_guests_from_the_portal(
        browser: BrowserFactory, ctx: AppContext) -> None:
    """Issue 15: the store_chat switch and the caregiver limit, beside the CLI's."""
    admin = await browser("admin")
    page = await admin.get("/portal/organisation")
    assert 'name="store_chat"' in page.text and 'name="patient_guests_max"' in page.text
    assert 'id="f-store_chat" aria-describedby="f-store_chat-help" >' in page.text  # off
    for bad in ("11", "two", "-1"):
        refused = await admin.post("/portal/organisation", org_form(patient_guests_max=bad))
        assert refused.status_code == 422, bad
        assert 'id="f-patient_guests_max-error"' in refused.text
    saved = await admin.post("/portal/organisation",
                             org_form(store_chat="on", patient_guests_max="0"))
    assert saved.status_code == 303, saved.text[:400]
    async with ctx.db.read() as session:
        org = (await session.scalars(select(Organisation).where(
            Organisation.slug == "acme"))).one()
        assert (org.store_chat, org.patient_guests_max) == (True, 0)
        changes = list(await session.scalars(select(AuditLog.after).where(
            AuditLog.action == "organisation.update")))
    assert any(c and c.get("store_chat") is True and c.get("patient_guests_max") == 0
               for c in changes)
    assert 'checked' in (await admin.get("/portal/organisation")).text.split(
        'name="store_chat"')[1][:80]
    off = await admin.post("/portal/organisation", org_form(patient_guests_max="3"))
    assert off.status_code == 303
    async with ctx.db.read() as session:
        org = (await session.scalars(select(Organisation).where(
            Organisation.slug == "acme"))).one()
        assert (org.store_chat, org.patient_guests_max) == (False, 3)


async def test_it_sets_how_long_records_are_kept(browser: BrowserFactory,
                                                ctx: AppContext) -> None:
    """Issue 18: the three retention periods, with the CLI's bounds, audited."""
    admin = await browser("admin")
    page = await admin.get("/portal/organisation")
    assert 'name="retention_visit_days"' in page.text and 'value="400"' in page.text
    for name, bad in (("retention_visit_days", "0"), ("retention_message_days", "4000"),
                      ("retention_audit_days", "7"), ("retention_visit_days", "a year")):
        refused = await admin.post("/portal/organisation", org_form(**{name: bad}))
        assert refused.status_code == 422, (name, bad)
        assert f'id="f-{name}-error"' in refused.text, (name, bad)
    saved = await admin.post("/portal/organisation", org_form(
        retention_visit_days="90", retention_message_days="180", retention_audit_days="3650"))
    assert saved.status_code == 303, saved.text[:400]
    async with ctx.db.read() as session:
        org = (await session.scalars(select(Organisation).where(
            Organisation.slug == "acme"))).one()
        assert (org.retention_visit_days, org.retention_message_days,
                org.retention_audit_days) == (90, 180, 3650)
        changes = list(await session.scalars(select(AuditLog.after).where(
            AuditLog.action == "organisation.update")))
    assert any(c and c.get("retention_visit_days") == 90 for c in changes)

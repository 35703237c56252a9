"""The SMS step: consents, number provisioning as jobs, linking, per-endpoint settings."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from sqlalchemy import select

from openvisit.context import AppContext
from openvisit.jobs.worker import Worker
from openvisit.models import Job, SmsSettings, utcnow
from openvisit.portal.sms.service import format_offsets, parse_offsets
from tests.portal.conftest import FHIR, Browser, endpoint_body

BrowserFactory = Callable[[str], Awaitable[Browser]]


async def _consent(admin: Browser) -> None:
    response = await admin.api(
        "PUT", "/api/portal/sms/consents", json={"send": True, "patients": True}
    )
    assert response.status_code == 200


async def _provision(admin: Browser, ctx: AppContext) -> dict[str, Any]:
    started = await admin.api("POST", "/api/portal/numbers")
    assert started.status_code == 202, started.text
    assert started.json()["state"] == "requested" and started.json()["progress"] == 0
    await Worker(ctx).run_until_empty(timeout=30)
    number = (await admin.api("GET", f"/api/portal/numbers/{started.json()['id']}")).json()
    assert isinstance(number, dict)
    return number


async def _endpoint(admin: Browser, **overrides: Any) -> str:
    response = await admin.api("POST", "/api/portal/endpoints", json=endpoint_body(**overrides))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_it_needs_both_consents_before_numbers(browser: BrowserFactory) -> None:
    admin = await browser("admin")
    refused = await admin.api("POST", "/api/portal/numbers")
    assert refused.status_code == 422 and "Give both SMS consents first" in refused.text
    await admin.api("PUT", "/api/portal/sms/consents", json={"send": True, "patients": False})
    page = await admin.post("/portal/sms/numbers")
    assert page.status_code == 422 and "Give both SMS consents first" in page.text


async def test_it_provisions_a_number_in_steps_with_visible_progress(
    browser: BrowserFactory,
    ctx: AppContext,
) -> None:
    admin = await browser("admin")
    await _consent(admin)
    page = await admin.post("/portal/sms/numbers")
    assert page.status_code == 303
    number_url = page.headers["location"]
    fragment = await admin.get(number_url + "/progress")
    assert 'hx-trigger="every 1s"' in fragment.text and "Searching the provider" in fragment.text
    # A minute between steps (as at a slow provider); time travel walks through them.
    object.__setattr__(ctx.settings, "portal_outbox_provision_step_seconds", 60.0)
    number_id = number_url.rsplit("/", 1)[1]
    seen, start = [], utcnow()
    for step in range(4):
        # 90 s apart for 60 s steps: a step that ran late under load (its next due time
        # counts from when it ran) is still due at the next stop.
        with time_machine.travel(start + timedelta(seconds=90 * step), tick=True):
            await Worker(ctx).run_until_empty(timeout=20)
        seen.append((await admin.api("GET", f"/api/portal/numbers/{number_id}")).json()["progress"])
        page = await admin.get(number_url + "/progress")
        assert "every 1s" in page.text or step == 3
    assert seen == [25, 60, 85, 100]
    done = await admin.get(number_url + "/progress")
    assert "every 1s" not in done.text  # polling stops
    assert "+1 202-555-0100" in done.text and "not required" in done.text
    object.__setattr__(ctx.settings, "portal_outbox_provision_step_seconds", 0.0)
    async with ctx.transaction() as session:
        kinds = list(await session.scalars(select(Job.idempotency_key).order_by(Job.id)))
        assert [k.rsplit(":", 1)[1] for k in kinds] == ["search", "purchase", "configure", "verify"]
    second = await _provision(admin, ctx)
    assert second["e164"] == "+12025550101" and second["state"] == "active"


async def test_it_runs_each_step_once_even_when_a_job_runs_twice(
    browser: BrowserFactory,
    ctx: AppContext,
) -> None:
    from openvisit.portal.sms import numbers

    admin = await browser("admin")
    await _consent(admin)
    number = await _provision(admin, ctx)
    async with ctx.transaction() as session:
        import uuid

        await numbers.run_step(
            session,
            app=ctx,
            number_id=uuid.UUID(number["id"]),
            step="search",
            idempotency_key="again",
        )
    again = (await admin.api("GET", f"/api/portal/numbers/{number['id']}")).json()
    assert again == number


async def test_it_links_one_number_to_several_endpoints(
    browser: BrowserFactory,
    ctx: AppContext,
) -> None:
    admin = await browser("admin")
    await _consent(admin)
    first = await _endpoint(admin)
    second = await _endpoint(
        admin, fhir_base=FHIR + "/prod", environment="test", save_failed_check=True
    )
    number = await _provision(admin, ctx)
    linked = await admin.post(
        f"/portal/sms/numbers/{number['id']}/links", {"endpoint_id": [first, second]}
    )
    assert linked.status_code == 303
    out = (await admin.api("GET", f"/api/portal/numbers/{number['id']}")).json()
    assert sorted(out["endpoint_ids"]) == sorted([first, second])
    unlinked = await admin.api(
        "PUT", f"/api/portal/numbers/{number['id']}/endpoints", json={"endpoint_ids": [first]}
    )
    assert unlinked.json()["endpoint_ids"] == [first]
    audit = (await admin.api("GET", "/api/portal/audit?action=number.link")).json()["entries"]
    assert audit[0]["before"]["endpoints"] == sorted([first, second])
    assert audit[0]["after"]["endpoints"] == [first]
    release = await admin.api("DELETE", f"/api/portal/numbers/{number['id']}")
    assert release.status_code == 409 and "choose another number" in release.text


async def test_it_saves_per_endpoint_sms_settings(browser: BrowserFactory, ctx: AppContext) -> None:
    admin = await browser("admin")
    await _consent(admin)
    endpoint_id = await _endpoint(admin)
    number = await _provision(admin, ctx)
    saved = await admin.post(
        f"/portal/endpoints/{endpoint_id}/sms",
        {
            "enabled": "on",
            "number_id": number["id"],
            "confirmations_enabled": "on",
            "reminder_offsets": "1d, 2h, 30",
            "quiet_hours_start": "21:00",
            "quiet_hours_end": "08:00",
            "default_language": "cs",
            "rate_limit_per_minute": "30",
        },
    )
    assert saved.status_code == 303, saved.text[:500]
    async with ctx.transaction() as session:
        row = await session.scalar(select(SmsSettings))
        assert row is not None and row.enabled and row.reminder_offsets_minutes == [1440, 120, 30]
        assert row.consent_terms_at is not None and row.consent_messaging_at is not None
        assert row.default_language == "cs" and row.quiet_hours_start == "21:00"
    api = (await admin.api("GET", f"/api/portal/endpoints/{endpoint_id}/sms")).json()
    assert api["number_id"] == number["id"] and api["reminder_offsets_minutes"] == [1440, 120, 30]
    withdrawn = await admin.api(
        "PUT", "/api/portal/sms/consents", json={"send": False, "patients": True}
    )
    assert withdrawn.status_code == 200
    assert (await admin.api("GET", f"/api/portal/endpoints/{endpoint_id}/sms")).json()[
        "enabled"
    ] is False


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"reminder_offsets": "tomorrow"}, "'tomorrow' is not a reminder time"),
        ({"reminder_offsets": "1m"}, "outside 5 minutes to 14 days"),
        ({"reminder_offsets": "15d"}, "outside 5 minutes to 14 days"),
        ({"reminder_offsets": "1d,2d,3d,4d,5d,6d"}, "At most 5 reminders"),
        ({"quiet_hours_start": "21:00"}, "both the start and the end of quiet hours"),
        ({"quiet_hours_start": "9pm", "quiet_hours_end": "07:00"}, "'9pm' is not a time"),
        ({"default_language": "xx"}, "Choose a language from"),
        ({"rate_limit_per_minute": "fast"}, "whole number of messages per minute"),
        ({"rate_limit_per_minute": "0"}, "1 to 6000 messages per minute"),
        ({"number_id": ""}, "Choose the phone number these SMS are sent from"),
    ],
)
async def test_it_says_what_is_wrong_with_sms_settings(
    browser: BrowserFactory,
    ctx: AppContext,
    fields: dict[str, str],
    message: str,
) -> None:
    admin = await browser("admin")
    await _consent(admin)
    endpoint_id = await _endpoint(admin)
    number = await _provision(admin, ctx)
    form = {
        "enabled": "on",
        "number_id": number["id"],
        "reminder_offsets": "1d",
        "default_language": "en",
        "rate_limit_per_minute": "60",
        **fields,
    }
    page = await admin.post(f"/portal/endpoints/{endpoint_id}/sms", form)
    assert page.status_code == 422, page.text[:300]
    assert message.replace("'", "&#39;") in page.text or message in page.text


async def test_it_refuses_sms_without_consents(browser: BrowserFactory) -> None:
    admin = await browser("admin")
    endpoint_id = await _endpoint(admin)
    page = await admin.post(f"/portal/endpoints/{endpoint_id}/sms", {"enabled": "on"})
    assert page.status_code == 422 and "Give both SMS consents on the SMS page" in page.text


def test_it_reads_and_writes_reminder_offsets() -> None:
    assert parse_offsets("1d, 2h 30m;90") == [1440, 120, 90, 30]
    assert parse_offsets("") == []
    assert format_offsets([1440, 120, 90, 30]) == "1d, 2h, 90m, 30m"


async def test_it_registers_an_existing_number_and_refuses_bad_ones(
    browser: BrowserFactory,
) -> None:
    admin = await browser("admin")
    await _consent(admin)
    ok = await admin.api("POST", "/api/portal/numbers/register", json={"e164": "(202) 555-0142"})
    assert ok.status_code == 201 and ok.json()["e164"] == "+12025550142"
    assert ok.json()["state"] == "active"
    again = await admin.post("/portal/sms/numbers/register", {"e164": "+1 202 555 0142"})
    assert again.status_code == 409 and "+12025550142 is already registered" in again.text
    bad = await admin.post("/portal/sms/numbers/register", {"e164": "12345"})
    assert bad.status_code == 422 and "is not a valid phone number" in bad.text


async def test_it_says_when_the_provider_cannot_buy_numbers(
    browser: BrowserFactory,
    ctx: AppContext,
) -> None:
    admin = await browser("admin")
    await _consent(admin)
    object.__setattr__(ctx.settings, "sms_provider", "smpp")
    try:
        refused = await admin.api("POST", "/api/portal/numbers")
        assert refused.status_code == 422
        assert "cannot buy numbers through OpenVisit" in refused.json()["error"]["message"]
        page = await admin.get("/portal/sms")
        assert "Get a new phone number" not in page.text
        assert "Register a number you already have" in page.text
    finally:
        object.__setattr__(ctx.settings, "sms_provider", "outbox")


@pytest.mark.parametrize("persona", ["approver", "reporter"])
async def test_it_lets_only_org_admins_change_sms(browser: BrowserFactory, persona: str) -> None:
    user = await browser(persona)
    for method, url, body in (
        ("PUT", "/api/portal/sms/consents", {"send": True, "patients": True}),
        ("POST", "/api/portal/numbers", None),
        ("POST", "/api/portal/numbers/register", {"e164": "+12025550142"}),
    ):
        response = await user.api(method, url, json=body)
        assert response.status_code == 403, (method, url)
    assert (await user.get("/portal/sms")).status_code == 200


async def test_it_hides_other_organisations_numbers(
    browser: BrowserFactory, ctx: AppContext
) -> None:
    admin, outsider = await browser("admin"), await browser("outsider")
    await _consent(admin)
    number = await _provision(admin, ctx)
    assert (await outsider.api("GET", f"/api/portal/numbers/{number['id']}")).status_code == 404
    assert (await outsider.get(f"/portal/sms/numbers/{number['id']}")).status_code == 404
    assert (await outsider.api("GET", "/api/portal/numbers")).json() == []

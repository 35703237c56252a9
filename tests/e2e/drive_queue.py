"""Issue 15 items 1 and 3 in Chromium, for ``drive_room.py``: the clinic queue's alerts, a
clinician opening the room early, and reopening a visit ended by mistake.

Scenarios: ``queue_alerts`` (a patient starts waiting: the queue's tab title and row change,
the chime plays, a desktop notification is shown; the row opens the visit; the mute is
remembered), ``early_open`` and ``reopen``. Screenshots (``queue-*.png``) at 1280×800 and
390×844.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page

from tests.e2e.room_stack import (
    DESKTOP,
    PHONE,
    Stack,
    admit_from_panel,
    decoding,
    new_page,
    on,
    patient_joins,
    seed,
    token_pid,
)
from tests.support.backend import TEST_KEYS, TEST_SECRET

CLINICIAN = "Practitioner/9"


async def seed_day(db_url: str, redis_url: str) -> dict[str, Any]:
    """A clinic day of one organisation: three visits of the clinician (one ended this
    morning, one now, one this afternoon) and one of a colleague; the links of each."""
    from openvisit.config import Settings
    from openvisit.context import AppContext
    from openvisit.models import Appointment, EhrEndpoint, Organisation
    from openvisit.models.base import utcnow
    from openvisit.visits import service

    settings = Settings(_env_file=None, environment="test", database_url=db_url,  # type: ignore[call-arg]
                        redis_url=redis_url, secret_key=TEST_SECRET,
                        field_encryption_keys=",".join(TEST_KEYS), auto_migrate=False)
    ctx = AppContext.create(settings)
    now = utcnow()
    plan = [("earlier", CLINICIAN, -50, "Cardiology"), ("now", CLINICIAN, 2, "Cardiology"),
            ("colleague", "Practitioner/10", 5, "Dermatology"),
            ("later", CLINICIAN, 25, "Family medicine"),
            ("afternoon", CLINICIAN, 240, "Family medicine")]
    out: dict[str, Any] = {}
    try:
        async with ctx.transaction() as session:
            org = Organisation(slug=f"q-{secrets.token_hex(4)}", display_name="E2E clinic",
                               timezone="UTC")
            session.add(org)
            await session.flush()
            endpoint = EhrEndpoint(organisation_id=org.id, name="E2E", client_id="ov",
                                   fhir_base="https://x/fhir")
            session.add(endpoint)
            await session.flush()
            for name, clinician, minutes, department in plan:
                # Late in the (UTC) day the plan would cross midnight: keep every row today.
                start = now + timedelta(minutes=minutes)
                if start.date() != now.date():
                    start = now.replace(hour=23, minute=30) if minutes > 0 else now
                appt = Appointment(organisation_id=org.id, endpoint_id=endpoint.id,
                                   ehr_appointment_id=secrets.token_hex(6),
                                   **ctx.refs.columns(f"Patient/{name}"),
                                   provider_ehr_id=clinician,
                                   department=department, start_at=start)
                session.add(appt)
                await session.flush()
                visit = await service.open_visit(session, app=ctx, appointment=appt)
                if name == "earlier":
                    visit.status, visit.started_at, visit.ended_at = "ended", start, now
                out[name] = {
                    "visit_id": str(visit.id),
                    "provider": await service.seat_link(session, app=ctx, visit=visit,
                                                        role="provider", ehr_user_id=clinician),
                    "patient": await service.seat_link(session, app=ctx, visit=visit,
                                                       role="patient",
                                                       patient_ref=f"Patient/{name}"),
                }
        return out
    finally:
        await ctx.close()


PROMPT = """(() => {
  let permission = "default";
  window.__asked = 0;
  Object.defineProperty(Notification, "permission", { get: () => permission });
  Notification.requestPermission = async () => {
    window.__asked += 1;
    permission = "granted";
    return permission;
  };
})();"""


async def queue_page(browser: Browser, url: str, *, phone: bool = False,
                     notifications: bool = True, prompt: bool = False) -> Page:
    context = await browser.new_context(
        **(PHONE if phone else DESKTOP), locale="en-US",
        permissions=["notifications"] if notifications else [], bypass_csp=True)
    if prompt:
        await context.add_init_script(PROMPT)
    page = await context.new_page()
    await page.goto(url)
    await page.wait_for_selector("[data-queue-body] .queue-list")
    return page


async def qshot(page: Page, shots: Path | None, name: str) -> None:
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(shots / f"queue-{name}.png"))


async def queue_alerts(browser: Browser, stack: Stack, shots: Path | None) -> dict[str, Any]:
    """The queue page alerts when a patient starts waiting, and opens the visit."""
    base = stack.web("a")
    day = await seed_day(stack.db_url, stack.redis_url)
    queue_url = on(base, day["now"]["provider"]) + "/queue"
    queue = await queue_page(browser, queue_url)
    rows = await queue.eval_on_selector_all("[data-queue-row]",
                                            "els => els.map(e => e.dataset.queueRow)")
    title_before = await queue.title()
    summary_before = await queue.inner_text(".queue-summary")
    notify_state = await queue.inner_text("[data-alert-notify-state]")
    await queue.click("h1")  # a first gesture on the page lets it play sound
    await qshot(queue, shots, "desktop")
    # Without a permission yet, the page does not ask on its own: only the button's click.
    # Headless Chromium answers "denied" and shows no prompt, so the prompt is stood in for
    # (it counts the asks and grants); what is checked is when the page asks.
    ask = await queue_page(browser, queue_url, notifications=False, prompt=True)
    asked = {"before": await ask.evaluate("window.__asked"),
             "button": await ask.is_visible("[data-alert-notify]")}
    await ask.click("[data-alert-notify]")
    await ask.wait_for_selector("[data-alert-notify]", state="hidden")
    asked["after"] = await ask.evaluate("window.__asked")
    asked["state"] = await ask.inner_text("[data-alert-notify-state]")
    await ask.context.close()

    # With PostgreSQL + Redis the patient is served by another web process: the queue hears
    # of them over the bus.
    patient_base = stack.web("b") if stack.redis_url else base
    patient = await new_page(browser, phone=True)
    await patient_joins(patient, on(patient_base, day["now"]["patient"]))
    joined = time.monotonic()
    row = f'[data-queue-row="{day["now"]["visit_id"]}"]'
    await queue.wait_for_function("document.title.startsWith('(1) ')", timeout=15000)
    alerted_after_s = round(time.monotonic() - joined, 2)
    await queue.wait_for_selector(f"{row}.is-waiting")
    await asyncio.sleep(1.2)  # "Waiting 0:01" ticks
    waiting_text = await queue.inner_text(f'{row} [data-seat-state="waiting"] [data-seat-text]')
    alerts = await queue.evaluate("window.__openvisitAlerts.log")
    live = await queue.inner_text("[data-live]")
    summary_waiting = await queue.inner_text(".queue-summary")
    title_waiting = await queue.title()
    await qshot(queue, shots, "waiting-desktop")
    phone = await queue_page(browser, queue_url, phone=True)
    await qshot(phone, shots, "waiting-phone")
    await phone.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    await qshot(phone, shots, "waiting-phone-end")
    await phone.context.close()

    # The row opens the visit (a tab of its own); the clinician admits; the queue follows.
    async with queue.expect_popup() as popup_info:
        await queue.click(f"{row} [data-open-visit]")
    room = await popup_info.value
    await room.wait_for_selector('[data-step="call"]:not([hidden])')
    await room.wait_for_function("document.title.startsWith('(1) ')", timeout=15000)
    room_title = await room.title()
    room_alerts = await room.evaluate("window.__openvisitAlerts.log")
    if shots is not None:
        await room.screenshot(path=str(shots / "queue-provider-alerts.png"))
    if shots is not None:  # the same page at phone width: the panel under the call
        await room.set_viewport_size({"width": 390, "height": 844})
        await room.eval_on_selector(".side-panel", "el => el.scrollIntoView()")
        await room.screenshot(path=str(shots / "queue-provider-alerts-phone.png"))
        await room.set_viewport_size(DESKTOP["viewport"])
    await admit_from_panel(room, token_pid(day["now"]["patient"]))
    await room.wait_for_function("!document.title.startsWith('(')", timeout=15000)
    await queue.wait_for_selector(f"{row}:not(.is-waiting) .badge-live", timeout=15000)
    title_after = await queue.title()
    badge_after = await queue.inner_text(f"{row} .queue-status")

    # Muting is remembered by the browser: reload, still muted; the next arrival is silent.
    await queue.click("[data-alert-sound]")
    await queue.reload()
    await queue.wait_for_selector("[data-queue-body] .queue-list")
    muted_label = await queue.inner_text("[data-alert-sound]")
    await queue.click("h1")
    later = await new_page(browser, phone=True)
    await patient_joins(later, on(patient_base, day["later"]["patient"]))
    await queue.wait_for_function("document.title.startsWith('(1) ')", timeout=15000)
    muted_alerts = await queue.evaluate("window.__openvisitAlerts.log")
    for page in (queue, patient, room, later):
        await page.context.close()
    mine = ("earlier", "now", "later", "afternoon")
    return {"rows": rows, "expected_rows": [day[n]["visit_id"] for n in mine],
            "colleague": day["colleague"]["visit_id"], "title_before": title_before,
            "summary_before": summary_before, "notify_state": notify_state,
            "title_waiting": title_waiting, "summary_waiting": summary_waiting,
            "waiting_text": waiting_text, "alerts": alerts, "live": live,
            "alerted_after_s": alerted_after_s, "room_title": room_title,
            "room_alerts": room_alerts, "title_after": title_after, "badge_after": badge_after,
            "muted_label": muted_label, "muted_alerts": muted_alerts,
            "bases": [base, patient_base], "asked": asked}


async def early_open(browser: Browser, stack: Stack, shots: Path | None) -> dict[str, Any]:
    """Three hours early: the clinician opens the room, the patient still waits for the
    window with the patient's wording."""
    base = stack.web("a")
    links = await seed(stack.db_url, stack.redis_url, start_minutes=180, department="Cardiology")
    phone = await new_page(browser, phone=True)
    await phone.goto(on(base, links["provider"]))
    await phone.wait_for_selector("[data-open-early]")
    await qshot(phone, shots, "early-phone")
    await phone.context.close()
    provider = await new_page(browser)
    await provider.goto(on(base, links["provider"]))
    await provider.wait_for_selector("[data-open-early]")
    early_title = await provider.inner_text("h1")
    early_text = await provider.inner_text(".lead")
    await qshot(provider, shots, "early-desktop")
    patient = await new_page(browser, phone=True)
    await patient.goto(on(base, links["patient"]))
    patient_before = await patient.inner_text("h1")
    await provider.click("[data-open-early]")
    await provider.wait_for_selector('[data-step="call"]:not([hidden])')
    await provider.wait_for_function(
        "document.querySelector('[data-visit-status]').textContent === 'Connected'")
    status = await provider.inner_text("[data-visit-status]")
    provider_url = provider.url
    await patient.reload()
    patient_after = await patient.inner_text("h1")
    patient_text = await patient.inner_text(".lead")
    for page in (provider, patient):
        await page.context.close()
    return {"early_title": early_title, "early_text": early_text, "status": status,
            "provider_url": provider_url, "patient_before": patient_before,
            "patient_after": patient_after, "patient_text": patient_text,
            "provider_link": on(base, links["provider"])}


async def reopen(browser: Browser, stack: Stack, shots: Path | None) -> dict[str, Any]:
    """End the visit by mistake, reopen it, and the patient joins again and is admitted."""
    base = stack.web("a")
    links = await seed(stack.db_url, stack.redis_url)
    patient_id = token_pid(links["patient"])
    provider = await new_page(browser)
    await provider.goto(on(base, links["provider"]))
    await provider.wait_for_selector('[data-step="call"]:not([hidden])')
    patient = await new_page(browser, phone=True)
    await patient_joins(patient, on(base, links["patient"]))
    await admit_from_panel(provider, patient_id)
    await decoding(provider, 1)
    await provider.click('[data-action="end"]')
    await provider.click("[data-confirm-end]")
    await provider.wait_for_selector("[data-reopen-form]:not([hidden])")
    await patient.wait_for_selector('[data-step="end"]:not([hidden])')
    patient_ended = await patient.inner_text("[data-end-title]")
    header = await provider.inner_text("[data-visit-status]")
    await qshot(provider, shots, "reopen-in-room")
    # A reload (or a relaunch) lands on the clinician's "ended" page, which offers it too.
    await provider.reload()
    await provider.wait_for_selector("[data-reopen]")
    ended_text = await provider.inner_text(".lead")
    await qshot(provider, shots, "reopen-desktop")
    phone = await new_page(browser, phone=True)
    await phone.goto(on(base, links["provider"]))
    await phone.wait_for_selector("[data-reopen]")
    await qshot(phone, shots, "reopen-phone")
    await phone.context.close()
    await provider.click("[data-reopen]")
    await provider.wait_for_selector('[data-step="call"]:not([hidden])')
    # The patient opens the same link again: lobby, admitted anew, video both ways.
    await patient.context.close()
    patient = await new_page(browser, phone=True)
    await patient_joins(patient, on(base, links["patient"]))
    await admit_from_panel(provider, patient_id)
    await patient.wait_for_selector('[data-step="call"]:not([hidden])')
    frames = {"patient": await decoding(patient, 1), "provider": await decoding(provider, 1)}
    for page in (provider, patient):
        await page.context.close()
    return {"patient_ended": patient_ended, "header": header, "ended_text": ended_text,
            "frames": frames}

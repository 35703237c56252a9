"""The device-test scenario for ``drive_room.py``: a phone in Spanish, then a desktop, each
run through camera, microphone, speaker and the loop-back test call to OpenVisit's aiortc peer.

aiortc leaves 127.0.0.1 out of its ICE candidates, so the scenario gives the namespace's ``lo``
a second address: the server peer then offers that one, still on loopback.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page

from tests.e2e.room_stack import Stack, new_page, shot
from tests.support.backend import TEST_KEYS, TEST_SECRET

LOOPBACK_EXTRA = "10.255.0.1/32"


async def seed_devicetest(db_url: str, redis_url: str) -> str:
    """An organisation, endpoint and live device-test token; returns the signed value."""
    from openvisit.config import Settings
    from openvisit.context import AppContext
    from openvisit.models import ContextToken, EhrEndpoint, Organisation
    from openvisit.portal.records.service import DEVICE_TEST, sign_context_token

    settings = Settings(_env_file=None, environment="test", database_url=db_url,  # type: ignore[call-arg]
                        redis_url=redis_url, secret_key=TEST_SECRET,
                        field_encryption_keys=",".join(TEST_KEYS), auto_migrate=False)
    ctx = AppContext.create(settings)
    try:
        async with ctx.transaction() as session:
            org = Organisation(slug=f"dt-{secrets.token_hex(4)}", display_name="E2E clinic")
            session.add(org)
            await session.flush()
            endpoint = EhrEndpoint(organisation_id=org.id, name="E2E", client_id="ov",
                                   fhir_base="https://ehr.example.org/fhir")
            session.add(endpoint)
            await session.flush()
            token = ContextToken(endpoint_id=endpoint.id, purpose=DEVICE_TEST)
            session.add(token)
            await session.flush()
            return sign_context_token(ctx, token)
    finally:
        await ctx.close()


async def stored_results(db_url: str) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from openvisit.db import Database
    from openvisit.models.visit import VisitEvent

    db = Database(db_url)
    try:
        async with db.read() as session:
            rows = await session.scalars(
                select(VisitEvent).where(VisitEvent.kind == "devicetest_result")
                .order_by(VisitEvent.at, VisitEvent.id))
            return [dict(row.data) for row in rows]
    finally:
        await db.dispose()


async def _run_test(page: Page, *, start: str = '[data-action="start"]') -> dict[str, Any]:
    await page.click(start)
    await page.wait_for_selector('[data-action="play"]:not([disabled])', timeout=30_000)
    await page.click('[data-action="play"]')
    await page.click('[data-action="heard"]')
    await page.wait_for_selector("[data-summary]:not([hidden]) [data-saved][data-saved]",
                                 timeout=60_000)
    states = await page.eval_on_selector_all(
        "[data-check]",
        "els => Object.fromEntries(els.map(e => [e.dataset.check, e.dataset.result]))",
    )
    return {
        "states": states,
        "call": await page.evaluate("window.__ovCall"),
        "summary": await page.inner_text("[data-summary-text]"),
        "saved": await page.get_attribute("[data-saved]", "data-saved"),
        "echo_width": await page.evaluate("document.querySelector('[data-echo]').videoWidth"),
    }


async def devicetest(browser: Browser, stack: Stack, shots: Path | None) -> dict[str, Any]:
    """The whole device test on a phone (Spanish) and on a desktop (English)."""
    subprocess.run(["ip", "addr", "add", LOOPBACK_EXTRA, "dev", "lo"], check=False,
                   capture_output=True)
    base = stack.web("devicetest")
    value = await seed_devicetest(stack.db_url, stack.redis_url)
    phone = await new_page(browser, phone=True, lang="es-ES")
    await phone.goto(f"{base}/devicetest?ctx={value}")
    title = await phone.inner_text("#dt-title")
    await shot(phone, shots, "devicetest-phone-es-start")
    on_phone = await _run_test(phone)
    await shot(phone, shots, "devicetest-phone-es-done")
    await phone.context.close()

    desktop = await new_page(browser)
    await desktop.goto(f"{base}/devicetest?ctx={value}&lang=en")
    on_desktop = await _run_test(desktop)
    await shot(desktop, shots, "devicetest-desktop-done")
    await desktop.context.close()

    # Camera and microphone blocked (the browser refuses, as after "Block" in its prompt):
    # the page says how to allow them and offers Try again, which then runs the whole test.
    blocked = await new_page(browser, lang="en-US")
    await blocked.add_init_script("""(() => {
      window.__block = true;
      const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
      navigator.mediaDevices.getUserMedia = (c) => window.__block
        ? Promise.reject(new DOMException("Permission denied", "NotAllowedError")) : real(c);
    })()""")
    await blocked.goto(f"{base}/devicetest?ctx={value}&lang=en")
    await blocked.click('[data-action="start"]')
    await blocked.wait_for_selector('[data-action="retry"]:not([hidden])', timeout=15_000)
    await blocked.wait_for_selector("[data-summary]:not([hidden]) [data-saved][data-saved]",
                                    timeout=30_000)
    blocked_help = await blocked.inner_text('[data-check="camera"] [data-help]')
    retry_focused = await blocked.evaluate(
        "document.activeElement && document.activeElement.dataset.action")
    start_label = await blocked.inner_text('[data-action="start"]')
    await shot(blocked, shots, "devicetest-blocked")
    await blocked.evaluate("window.__block = false")  # the person allowed the camera
    retried = await _run_test(blocked, start='[data-action="retry"]')
    retry_hidden = await blocked.is_hidden('[data-action="retry"]')
    await blocked.context.close()

    forged = await new_page(browser, lang="it-IT")
    response = await forged.goto(f"{base}/devicetest?ctx=forged")
    await shot(forged, shots, "devicetest-forged-it")
    forged_status = response.status if response else 0
    forged_text = await forged.inner_text("main")
    await forged.context.close()
    return {"title_es": title, "phone": on_phone, "desktop": on_desktop,
            "stored": await stored_results(stack.db_url),
            "forged_status": forged_status, "forged_text": forged_text,
            "blocked": {"help": blocked_help, "retry_focused": retry_focused,
                        "start_label": start_label, "retried": retried,
                        "retry_hidden_after": retry_hidden}}

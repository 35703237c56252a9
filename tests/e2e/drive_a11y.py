"""The accessibility scenario for ``drive_room.py``: axe-core on every page of a visit.

Patient on a phone in Spanish (pre-join, lobby with the caregiver panel open, the call with
the chat open), the clinician on a desktop (call with the roster, an invite link and its send
form, the patient's identity is not there without a launch), and the clinic queue. Returns
each page's serious and critical WCAG 2.1 A/AA violations (:mod:`tests.e2e.axe`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import Browser

from tests.e2e.axe import violations
from tests.e2e.room_stack import (
    Stack,
    admit_from_panel,
    new_page,
    on,
    patient_joins,
    seed,
    token_pid,
)


async def accessibility(browser: Browser, stack: Stack, shots: Path | None) -> dict[str, Any]:
    base = stack.web("a")
    links = await seed(stack.db_url, stack.redis_url, messaging=True)
    found: dict[str, Any] = {}
    patient = await new_page(browser, phone=True, lang="es-ES")
    await patient.goto(on(base, links["patient"]) + "?lang=es")
    await patient.wait_for_selector("video[data-preview]")
    found["patient-prejoin"] = await violations(patient)
    await patient_joins(patient, on(base, links["patient"]) + "?lang=es")
    await patient.click("[data-caregiver] summary")
    await patient.click("[data-caregiver-make]")
    await patient.wait_for_selector("[data-caregiver-result]:not([hidden])")
    found["patient-lobby"] = await violations(patient)

    provider = await new_page(browser)
    await provider.goto(on(base, links["provider"]))
    await provider.wait_for_selector('[data-step="call"]:not([hidden])')
    await provider.click('[data-invite="interpreter"]')
    await provider.wait_for_selector("[data-invite-send]")
    found["provider-call"] = await violations(provider)
    await admit_from_panel(provider, token_pid(links["patient"]))
    await patient.wait_for_selector('[data-step="call"]:not([hidden])', timeout=15000)
    await patient.click('[data-action="chat"]')
    found["patient-call-chat"] = await violations(patient)

    queue = await new_page(browser)
    await queue.goto(on(base, links["provider"]) + "/queue")
    await queue.wait_for_selector("[data-queue-body]")
    found["queue"] = await violations(queue)
    for page in (patient, provider, queue):
        await page.context.close()
    return {"violations": found}

"""The caregiver scenario for ``drive_room.py`` (issue 15 item 7).

A patient (phone, Spanish) sees "Bring a family member or caregiver" on the pre-join page and,
once waiting, in the lobby, opens it there
and creates a link; the caregiver opens it on their own phone and waits in the lobby; the
clinician (desktop) sees them marked "Invited by the patient", admits the patient and then the
caregiver, and the caregiver decodes video from both. With a Redis URL the clinician is on web
process A, patient and caregiver on B.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import Browser

from tests.e2e.room_stack import (
    Stack,
    admit_from_panel,
    decoding,
    new_page,
    on,
    patient_joins,
    seed,
    shot,
    token_pid,
)


async def caregiver(browser: Browser, stack: Stack, shots: Path | None) -> dict[str, Any]:
    two = bool(stack.redis_url)
    base_a = stack.web("A" if two else "a")
    base_b = stack.web("B") if two else base_a
    links = await seed(stack.db_url, stack.redis_url)
    provider = await new_page(browser)
    await provider.goto(on(base_a, links["provider"]))
    await provider.wait_for_selector('[data-step="call"]:not([hidden])')
    patient = await new_page(browser, phone=True, lang="es-ES")
    await patient.goto(on(base_b, links["patient"]) + "?lang=es")
    on_prejoin = await patient.is_visible('[data-step="prejoin"] [data-caregiver]')
    await patient.wait_for_selector("video[data-preview]")
    await patient.eval_on_selector("[data-caregiver]", "el => el.scrollIntoView()")
    await shot(patient, shots, "patient-caregiver-prejoin-phone")
    await patient.set_viewport_size({"width": 1280, "height": 800})
    await shot(patient, shots, "patient-caregiver-prejoin-desktop")
    await patient.set_viewport_size({"width": 390, "height": 844})
    await patient_joins(patient, on(base_b, links["patient"]) + "?lang=es")
    in_lobby = await patient.is_visible('[data-step="lobby"] [data-caregiver]')
    summary = await patient.inner_text("[data-caregiver] summary")
    await patient.click("[data-caregiver] summary")
    await patient.click("[data-caregiver-make]")
    await patient.wait_for_selector("[data-caregiver-result]:not([hidden])")
    status = await patient.inner_text("[data-caregiver-status]")
    link = await patient.input_value("[data-caregiver-link]")
    await shot(patient, shots, "patient-caregiver-link-phone")
    await patient.set_viewport_size({"width": 1280, "height": 800})
    await shot(patient, shots, "patient-caregiver-link-desktop")
    await patient.set_viewport_size({"width": 390, "height": 844})

    family = await new_page(browser, phone=True, lang="es-ES")
    await patient_joins(family, link)
    family_id = token_pid(link)
    item = f'[data-participant="{family_id}"]'
    await provider.wait_for_selector(f"{item}.state-waiting", timeout=15000)
    marked = await provider.inner_text(f"{item} .roster-by")
    await provider.eval_on_selector(item, "el => el.scrollIntoView({block: 'center'})")
    await shot(provider, shots, "provider-caregiver-waiting")
    await admit_from_panel(provider, token_pid(links["patient"]))
    await admit_from_panel(provider, family_id)
    family_frames = await decoding(family, 2)
    result = {"bases": [base_a, base_b], "summary": summary, "status": status,
              "on_prejoin": on_prejoin, "in_lobby": in_lobby,
              "link_host": link.split("/v/")[0], "marked": marked,
              "family_frames": family_frames}
    for page in (provider, patient, family):
        await page.context.close()
    return result

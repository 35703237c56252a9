"""The lobby-message and chat scenario for ``drive_room.py`` (issue 15 items 4 and 5).

A clinician (desktop, English) and a patient (phone, Spanish link). While the patient waits,
the clinician sends a preset from "Message to the waiting room": the patient's lobby shows it
in Spanish; then the clinician's own words, shown as typed (markup stays text). Once the
patient is admitted, chat both ways: the patient's closed chat button counts the new message,
the open panel shows who wrote what, and Enter sends. With a Redis URL (the PostgreSQL +
Redis pass) the clinician is on web process A and the patient on B, so every message crosses
the bus.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page

from tests.e2e.room_stack import (
    DESKTOP,
    PHONE,
    Stack,
    admit_from_panel,
    new_page,
    on,
    patient_joins,
    seed,
    shot,
    token_pid,
)

MESSAGE_JS = """el => ({
  who: el.querySelector(".chat-who").textContent,
  text: el.querySelector(".chat-text").textContent,
  link: el.querySelector(".chat-text a")?.getAttribute("href") || null })"""
OWN_WORDS = "<b>Room 4</b> is ready & waiting: see https://example.org/room-4"


async def both_sizes(page: Page, shots: Path | None, name: str, *, phone: bool,
                     reveal: str | None = None) -> None:
    """``name`` at the page's own size, then ``name-desktop``/``name-phone`` at the other
    (with ``reveal`` scrolled into view: the clinician's panel is below the call on a phone)."""
    await shot(page, shots, name)
    other = DESKTOP if phone else PHONE
    await page.set_viewport_size(other["viewport"])
    await page.wait_for_timeout(150)  # one layout pass after the resize, for the picture
    if reveal:
        await page.eval_on_selector(reveal, "el => el.scrollIntoView({block: 'center'})")
    await shot(page, shots, f"{name}-{'desktop' if phone else 'phone'}")
    if reveal:
        await page.evaluate("window.scrollTo(0, 0)")
    await page.set_viewport_size((PHONE if phone else DESKTOP)["viewport"])


async def lobby_and_chat(browser: Browser, stack: Stack, shots: Path | None) -> dict[str, Any]:
    two = bool(stack.redis_url)
    base_a = stack.web("A" if two else "a")
    base_b = stack.web("B") if two else base_a
    links = await seed(stack.db_url, stack.redis_url)
    patient_id = token_pid(links["patient"])
    provider = await new_page(browser)
    await provider.goto(on(base_a, links["provider"]))
    await provider.wait_for_selector('[data-step="call"]:not([hidden])')
    compose_hidden_alone = await provider.is_hidden("[data-lobby-compose]")

    patient = await new_page(browser, phone=True, lang="es-ES")
    await patient_joins(patient, on(base_b, links["patient"]) + "?lang=es")
    await provider.wait_for_selector("[data-lobby-compose]:not([hidden])")
    to_one = await provider.inner_text("[data-lobby-to-one]")
    presets = await provider.eval_on_selector_all(
        "[data-lobby-presets] label",
        "els => els.map((e) => [e.querySelector('input').value, e.textContent.trim()])")

    # A preset: sent as its id, shown in the patient's language.
    await provider.check("input[name=lobby-preset][value=late_10]")
    await provider.click("[data-lobby-form] button[type=submit]")
    await provider.wait_for_function(
        "document.querySelector('[data-lobby-sent]').textContent.length > 0")
    sent_note = await provider.inner_text("[data-lobby-sent]")
    await patient.wait_for_selector(".lobby-message-text")
    lobby_region = await patient.eval_on_selector("[data-lobby-message]", """el => ({
      live: el.getAttribute("aria-live"),
      label: el.querySelector(".lobby-message-label").textContent,
      text: el.querySelector(".lobby-message-text").textContent })""")
    await patient.wait_for_timeout(1100)  # "Esperando 0:01" in the picture
    await both_sizes(patient, shots, "patient-lobby-message-es", phone=True)

    # The clinician's own words: shown exactly as typed, as text.
    await provider.check("input[name=lobby-preset][value='']")
    await provider.fill("[data-lobby-text]", OWN_WORDS)
    await both_sizes(provider, shots, "provider-lobby-message", phone=False,
                     reveal="[data-lobby-compose]")
    await provider.click("[data-lobby-form] button[type=submit]")
    await patient.wait_for_function(
        "(t) => document.querySelector('.lobby-message-text')?.textContent === t", arg=OWN_WORDS)
    own = await patient.eval_on_selector(".lobby-message-text", """el => ({
      text: el.textContent, elements: el.querySelectorAll("*").length })""")

    # Admitted: the lobby message form goes (nobody waits), the chat works both ways.
    await admit_from_panel(provider, patient_id)
    await patient.wait_for_selector('[data-step="call"]:not([hidden])')
    await provider.wait_for_selector("[data-lobby-compose]", state="hidden")
    await provider.click('.controls [data-action="chat"]')
    await provider.wait_for_selector("[data-chat-panel]:not([hidden])")
    focused = await provider.evaluate("document.activeElement?.id")
    await provider.keyboard.type("Can you hear me? Notes: https://example.org/after-care")
    await provider.keyboard.press("Enter")
    await provider.wait_for_selector(".chat-msg.is-mine")
    await patient.wait_for_function(
        "document.querySelector('[data-chat-label]').textContent !== 'Chat'")
    unread_label = await patient.inner_text("[data-chat-label]")
    await patient.wait_for_function(
        "document.querySelector('[data-live]').textContent.includes('Can you hear me?')")
    announced = await patient.inner_text("[data-live]")
    await patient.click('.controls [data-action="chat"]')
    await patient.wait_for_selector("[data-chat-panel]:not([hidden]) .chat-msg")
    got = await patient.eval_on_selector(".chat-msg", MESSAGE_JS)
    await patient.fill("[data-chat-input]", "Sí, le oigo bien.")
    await patient.press("[data-chat-input]", "Enter")
    await provider.wait_for_selector(".chat-msg:not(.is-mine)")
    back = await provider.eval_on_selector(".chat-msg:not(.is-mine)", MESSAGE_JS)
    await patient.wait_for_selector(".chat-msg.is-mine")
    panel = await patient.evaluate("""() => {
      const log = document.querySelector("[data-chat-log]");
      const input = document.querySelector("[data-chat-input]");
      const panel = document.querySelector("[data-chat-panel]").getBoundingClientRect();
      return { role: log.getAttribute("role"), live: log.getAttribute("aria-live"),
               label: document.querySelector(`label[for="${input.id}"]`)?.textContent,
               width: panel.width, right: panel.right, vw: window.innerWidth,
               scroll: document.documentElement.scrollWidth,
               // Controls whose label is wider than the button (cut or spilling over).
               cut: [...document.querySelectorAll(".controls .ctl")]
                 .filter((b) => b.offsetParent
                   && b.querySelector(".ctl-label").scrollWidth > b.clientWidth)
                 .map((b) => b.querySelector(".ctl-label").textContent) };
    }""")
    await both_sizes(patient, shots, "patient-chat-es", phone=True)
    await both_sizes(provider, shots, "provider-chat", phone=False)
    for page in (provider, patient):
        await page.context.close()
    return {"bases": [base_a, base_b], "compose_hidden_alone": compose_hidden_alone,
            "to_one": to_one, "presets": presets, "sent_note": sent_note,
            "lobby_region": lobby_region, "own": own, "focused": focused,
            "unread_label": unread_label, "announced": announced, "got": got, "back": back,
            "panel": panel}

"""The "send the invite link" scenario for ``drive_room.py`` (issue 15 item 6).

A clinician (desktop, English) invites a guest, types an Italian mobile number the way people
write it and presses "Send link". A real job worker (``python -m openvisit worker``) sends it
through the outbox provider; the scenario reads the SMS from the outbox as the phone would
receive it, and the guest opens the link in it on a phone (Italian): the guest waits in the
lobby, the clinician admits them, and both decode each other's video. With a Redis URL (the
PostgreSQL + Redis pass) the clinician is on web process A, the guest on B.
"""

from __future__ import annotations

import asyncio
import re
import time
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
from tests.support.backend import TEST_KEYS, TEST_SECRET

GUEST_NUMBER = "312 345 6789"  # Italian mobile, written without the country code


async def outbox_sms(db_url: str, redis_url: str, *, to: str,
                     timeout: float = 30.0) -> dict[str, str]:
    """The SMS the outbox holds for ``to`` (decrypted), waiting for the worker to send it."""
    from sqlalchemy import select

    from openvisit.config import Settings
    from openvisit.context import AppContext
    from openvisit.models import MessageLog, OutboxMessage

    settings = Settings(_env_file=None, environment="test", database_url=db_url,  # type: ignore[call-arg]
                        redis_url=redis_url, secret_key=TEST_SECRET,
                        field_encryption_keys=",".join(TEST_KEYS), auto_migrate=False)
    ctx = AppContext.create(settings)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            async with ctx.transaction() as session:
                for row in (await session.scalars(select(OutboxMessage))).all():
                    if ctx.cipher.decrypt(row.recipient_enc) == to:
                        log = await session.scalar(select(MessageLog).where(
                            MessageLog.template == "invite"))
                        return {"text": ctx.cipher.decrypt(row.text_enc),
                                "sender": row.sender, "masked": row.recipient_masked,
                                "log_status": log.status if log else ""}
            await asyncio.sleep(0.25)
        raise AssertionError(f"no SMS for the guest in the outbox after {timeout} s")
    finally:
        await ctx.close()


async def invite_by_sms(browser: Browser, stack: Stack, shots: Path | None) -> dict[str, Any]:
    two = bool(stack.redis_url)
    base_a = stack.web("A" if two else "a")
    base_b = stack.web("B") if two else base_a
    links = await seed(stack.db_url, stack.redis_url, messaging=True)
    # Links the worker writes point at the guest's web process.
    stack.worker(base_b)
    provider = await new_page(browser)
    await provider.goto(on(base_a, links["provider"]))
    await provider.wait_for_selector('[data-step="call"]:not([hidden])')
    await provider.click('[data-invite="guest"]')
    await provider.wait_for_selector("[data-invite-send]")
    label = await provider.inner_text('label[for="invite-to"]')
    await provider.fill("[data-invite-to]", "")
    await provider.click("[data-invite-send] button[type=submit]")
    empty_note = await provider.inner_text("[data-invite-sent]")
    await provider.fill("[data-invite-to]", "12")
    await provider.click("[data-invite-send] button[type=submit]")
    await provider.wait_for_function(
        "document.querySelector('[data-invite-sent]').textContent.includes('country code')")
    bad_note = await provider.inner_text("[data-invite-sent]")
    await provider.fill("[data-invite-to]", GUEST_NUMBER)
    asked = time.monotonic()
    await provider.press("[data-invite-to]", "Enter")
    await provider.wait_for_function(
        "document.querySelector('[data-invite-sent]').textContent.startsWith('Link on its way')")
    sent_note = await provider.inner_text("[data-invite-sent]")
    field_after = await provider.input_value("[data-invite-to]")
    await provider.eval_on_selector("[data-invite-send]", "el => el.scrollIntoView()")
    await shot(provider, shots, "provider-invite-sent")
    await provider.set_viewport_size({"width": 390, "height": 844})
    await provider.eval_on_selector("[data-invite-send]", "el => el.scrollIntoView()")
    await shot(provider, shots, "provider-invite-sent-phone")
    await provider.set_viewport_size({"width": 1280, "height": 800})

    sms = await outbox_sms(stack.db_url, stack.redis_url, to="+393123456789")
    in_outbox_s = round(time.monotonic() - asked, 1)
    found = re.search(r"https?://\S+/v/\S+", sms["text"])
    assert found, sms["text"]
    guest_link = found.group(0)
    guest = await new_page(browser, phone=True, lang="it-IT")
    await patient_joins(guest, guest_link)
    lobby_text = await guest.inner_text('[data-step="lobby"]')
    await shot(guest, shots, "guest-lobby-from-sms")
    guest_id = token_pid(guest_link)
    await admit_from_panel(provider, guest_id)
    provider_frames = await decoding(provider, 1)
    guest_frames = await decoding(guest, 1)
    result = {
        "bases": [base_a, base_b], "label": label, "empty_note": empty_note,
        "bad_note": bad_note, "sent_note": sent_note, "field_after": field_after,
        "sms": sms["text"], "sms_masked": sms["masked"], "log_status": sms["log_status"],
        "in_outbox_s": in_outbox_s, "guest_host": guest_link.split("/v/")[0],
        "lobby_text": lobby_text, "provider_frames": provider_frames,
        "guest_frames": guest_frames,
    }
    for page in (provider, guest):
        await page.context.close()
    return result

"""What comes back from providers: delivery receipts and STOP/START replies.

Opt-outs are scoped to the organisation that sends from the number the patient replied to,
and keyed by the keyed hash of the patient's number, never the number itself. A shared
default sender (no number of the organisation's own) is shared by every organisation
using it, so a STOP to it stops all of them: a carrier enforces STOP per sending number.
"""

from __future__ import annotations

import uuid
from typing import Literal

from openvisit.context import AppContext
from openvisit.logs import get_logger
from openvisit.models import ProviderReceipt, utcnow
from openvisit.notify import repository as repo

log = get_logger(__name__)

Keyword = Literal["stop", "start", "help"]

#: Carrier-standard keywords (CTIA; Twilio's defaults) plus the words our Spanish, Czech and
#: Italian templates could lead a patient to reply with.
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT",
                        "REVOKE", "BAJA", "ALTO", "KONEC", "ODHLASIT"})
START_WORDS = frozenset({"START", "UNSTOP", "YES", "SUBSCRIBE", "ALTA"})
HELP_WORDS = frozenset({"HELP", "INFO", "AYUDA", "POMOC", "AIUTO"})
_PROVIDER_KEYWORDS: dict[str, Keyword] = {"STOP": "stop", "START": "start", "HELP": "help"}


def keyword(text: str) -> Keyword | None:
    """The keyword a reply is, if its first word is one (case and punctuation ignored)."""
    words = text.strip().split()
    if not words:
        return None
    word = "".join(ch for ch in words[0] if ch.isalnum()).upper()
    if word in STOP_WORDS:
        return "stop"
    if word in START_WORDS:
        return "start"
    if word in HELP_WORDS:
        return "help"
    return None


async def apply_reply(
    app: AppContext, *, from_number: str, to_number: str, text: str,
    opt_out_type: str | None = None,
) -> Keyword | None:
    """Record a STOP/START reply from ``from_number`` to our ``to_number``; returns it.

    ``opt_out_type`` is the provider's own verdict when it has one (Twilio's Advanced
    Opt-Out sends ``OptOutType``); it wins over our reading of the text.
    """
    word = _PROVIDER_KEYWORDS.get((opt_out_type or "").upper()) or keyword(text)
    if word not in ("stop", "start"):
        return word
    async with app.transaction() as session:
        organisations: list[uuid.UUID] = await repo.organisations_for_sender(session, to_number)
        await repo.set_opt_out(session, organisation_ids=organisations,
                               recipient_hash=app.hasher.hash(from_number),
                               opted_out=word == "stop", now=utcnow())
    log.info("sms_reply_applied", keyword=word, organisations=len(organisations))
    return word


async def apply_status(
    app: AppContext, *, provider: str, provider_message_id: str, status: str | None,
    job_key: str | None = None, tag: int | None = None, recipient: str | None = None,
    error: str | None = None,
) -> bool:
    """Record a delivery status; True if a message log row was updated.

    With ``job_key`` (when the provider echoes our reference) the row is found even if the
    worker has not yet recorded the provider's id. A receipt that matches no row yet is kept
    (:class:`ProviderReceipt`, with the recipient's hash and the SMPP ``tag``) so the sender
    can apply it, or reconcile with it, later.
    """
    if status is None:
        return False
    async with app.transaction() as session:
        await repo.lock_provider_message(session, provider=provider,
                                         provider_message_id=provider_message_id)
        row = None
        if job_key:
            row = await repo.message_log_by_key(session, job_key)
        if row is None:
            row = await repo.message_log_by_provider_id(
                session, provider=provider, provider_message_id=provider_message_id)
        if row is not None:
            if row.provider_message_id is None:
                row.provider_message_id = provider_message_id
            moved = repo.advance(row, status)
            if moved and error:
                row.error = error[:200]
            await session.flush()
            log.info("message_status", message_log_id=str(row.id), status=row.status,
                     provider=provider)
            return True
        await repo.add_receipt(session, ProviderReceipt(
            provider=provider, provider_message_id=provider_message_id,
            recipient_hash=app.hasher.hash(recipient) if recipient else "",
            reference=str(tag) if tag is not None else None,
            status=status,
        ))
    log.info("receipt_kept_for_later", provider=provider)
    return False

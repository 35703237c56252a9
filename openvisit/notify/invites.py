"""A clinician sends an interpreter's or guest's join link by SMS or e-mail (issue 15 item 6).

The link is the seat's own, sent by the same ``notify.send`` job as the patient's messages
(:mod:`openvisit.notify.delivery`), so it inherits exactly-once delivery across crashes, the
sending number's rate limit, STOP opt-outs, the message log (masked recipient only) and the
write-back ``Communication``. What differs from a patient's message:

- **the address is typed by the clinician**, not read from the feed: it is checked here (a
  mobile number in the organisation's region or with a country code, or an e-mail address),
  kept encrypted in the job's :class:`~openvisit.models.Notification` row only until the
  message is handed over (or a day at most), and never logged;
- **no quiet hours**: the clinician sends it for a visit that is about to happen;
- **limits**: one visit sends at most ``invite_sends_per_hour`` links an hour; the same link to
  the same address within two minutes is one message (a double click, a retried request);
- the link is read when the message is **rendered**: a seat removed, or a visit ended, by then
  sends nothing (the message log says why).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.context import AppContext
from openvisit.crypto import mask_email, mask_phone
from openvisit.errors import Conflict, InvalidInput, TooManyRequests
from openvisit.hl7v2.contact import normalise_phone
from openvisit.i18n import gettext as _
from openvisit.jobs import enqueue
from openvisit.models import Notification, Organisation
from openvisit.models.base import utcnow
from openvisit.models.choices import ContactKind
from openvisit.notify import repository as repo

SEND_JOB = "notify.send"
#: How long a typed address may wait, encrypted, for its message to go out.
KEEP_ADDRESS = timedelta(days=1)
WINDOW = timedelta(hours=1)
#: The same link to the same address again within this is the same message (a double click);
#: later, it is sent again (the first did not arrive, the guest deleted it).
RESEND_AFTER = timedelta(minutes=2)
MAX_ADDRESS = 254  # RFC 5321's path limit; no phone number comes near it
#: Deliberately plain: one @, no spaces, a dot in the domain. The provider has the last word.
_EMAIL = re.compile(r"^[^@\s<>()\[\],;:\"]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")


@dataclass(frozen=True)
class Queued:
    """What the clinician's page shows: where it goes (masked) and whether it is new."""

    channel: ContactKind
    masked: str
    repeated: bool


def parse_address(text: str, *, region: str) -> tuple[ContactKind, str]:
    """(channel, address) for what a clinician typed; raises InvalidInput saying what to fix."""
    text = text.strip()
    if not text:
        raise InvalidInput(_("Enter a mobile number or an e-mail address."))
    if len(text) > MAX_ADDRESS:
        raise InvalidInput(_("That is too long for a mobile number or an e-mail address."))
    if "@" in text:
        local, _at, domain = text.rpartition("@")
        address = f"{local}@{domain.lower()}"
        if not _EMAIL.match(address) or ".." in address:
            raise InvalidInput(_("That does not look like an e-mail address "
                                 "(for example name@example.org)."))
        return "email", address
    number = normalise_phone(text, region=region)
    if number is None:
        raise InvalidInput(_("That is not a mobile number a text can be sent to. Check it, or "
                             "write it with the country code (for example +44 7400 123456)."))
    return "sms", number


async def channels_open(session: AsyncSession, *, organisation_id: uuid.UUID,
                        appointment_id: uuid.UUID | None) -> bool:
    """Whether this visit can send links at all (messaging on for its clinic)."""
    settings = await repo.messaging_settings(session, organisation_id=organisation_id,
                                             appointment_id=appointment_id)
    return settings is not None and settings.enabled


async def queue_invite(
    session: AsyncSession, *, app: AppContext, organisation_id: uuid.UUID,
    visit_id: uuid.UUID, appointment_id: uuid.UUID | None, participant_id: uuid.UUID,
    token_version: int, address: str,
) -> Queued:
    """Check ``address`` and the limits, then add the ``notify.send`` job to the caller's
    transaction (it exists only if that commits)."""
    if not await channels_open(session, organisation_id=organisation_id,
                               appointment_id=appointment_id):
        raise Conflict(_("Sending links needs text messages and e-mail set up for this clinic "
                         "in the portal. Copy the link and send it yourself."))
    org = await session.get(Organisation, organisation_id)
    channel, to = parse_address(address, region=org.default_phone_region if org else "US")
    masked = mask_phone(to) if channel == "sms" else mask_email(to)
    prefix = f"invite:{visit_id}:"
    same = f"{prefix}{participant_id}:{token_version}:{app.hasher.hash(to)[:24]}:"
    now = utcnow()
    latest = await repo.latest_invite(session, key_prefix=same)
    if latest is not None and latest.created_at >= now - RESEND_AFTER:
        return Queued(channel=channel, masked=masked, repeated=True)
    limit = app.settings.invite_sends_per_hour
    if await repo.invites_sent(session, key_prefix=prefix, since=now - WINDOW) >= limit:
        raise TooManyRequests(_("This visit has sent %(n)s links in the last hour, the most it "
                                "may. Copy the link and send it yourself.") % {"n": limit})
    key = f"{same}{int(now.timestamp())}"
    try:
        async with session.begin_nested():
            session.add(Notification(
                appointment_id=None, job_key=key, purpose="invite", message="invite",
                fingerprint="", start_at=now, created_at=now, purge_at=now + KEEP_ADDRESS,
                content_enc=app.cipher.encrypt(json.dumps({"channel": channel, "to": to}))))
    except IntegrityError:  # the same request twice in one second: one message
        return Queued(channel=channel, masked=masked, repeated=True)
    await enqueue(session, SEND_JOB, idempotency_key=key, payload={
        "message": "invite", "organisation_id": str(organisation_id),
        "visit_id": str(visit_id), "participant_id": str(participant_id),
        "appointment_id": str(appointment_id) if appointment_id else None,
        "token_version": token_version,
    })
    return Queued(channel=channel, masked=masked, repeated=False)

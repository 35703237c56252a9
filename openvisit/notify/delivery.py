"""The ``notify.send`` job: decide, render, and send one message exactly once.

**Two phases.** (1) In a transaction of its own, the job checks everything (opt-out, purge,
cancellation, quiet hours, rate limit), renders the message, freezes the text (encrypted) and
commits a :class:`~openvisit.models.MessageLog` row in state ``sending``. (2) It calls the
provider with the job's idempotency key, then marks the row ``sent`` with the provider's id
in the job's own transaction, which also completes the job.

**After a crash** the job runs again and finds one of:

- no row, or ``queued`` (a failure known to have sent nothing): start afresh;
- ``sending``: the call's outcome is unknown. The frozen text is *reconciled* with the
  provider (:meth:`SmsTransport.reconcile`): a message found there is recorded as sent; none
  found means send again, the same text with the same reference. What "found" can mean is
  the provider's business and is documented in each transport (exact for the outbox and for
  Azure within five minutes; a message list for Twilio; delivery receipts for SMPP; nothing
  for SMTP, which therefore relies on a stable Message-ID);
- ``sent`` or later: the job had finished its work; nothing is sent.

The job's session is touched only in phase 2: on SQLite a transaction holds the database's
single write lock, and phase 1 must commit before the network call.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.context import AppContext
from openvisit.crypto import mask_email, mask_phone
from openvisit.errors import OutboundError
from openvisit.jobs import Defer, JobContext
from openvisit.logs import get_logger
from openvisit.models import (
    Appointment,
    EhrEndpoint,
    MessageLog,
    Notification,
    Organisation,
    SmsSettings,
    utcnow,
)
from openvisit.models.choices import ENDED_STATUSES, ContactKind, EmailProvider, SmsProvider
from openvisit.models.visit import Participant, Visit
from openvisit.notify import departments, render
from openvisit.notify import repository as repo
from openvisit.notify.plan import QuietHours, release_time
from openvisit.notify.providers import SMS_PROVIDERS, email_transport, sms_transport
from openvisit.notify.transport import CheckLater, OutcomeUnknown, RecipientRejected, SendResult
from openvisit.writeback import service as writeback

log = get_logger(__name__)

OUTBOX_SENDER = "OpenVisit"
OUTBOX_FROM = "notifications@openvisit.invalid"


@dataclass(frozen=True)
class Prepared:
    """A message ready to hand over (or to reconcile): the frozen content and its route."""

    channel: ContactKind
    provider: SmsProvider | EmailProvider
    to: str
    sender: str
    sender_name: str
    text: str
    subject: str | None
    html: str | None
    first_attempt_at: datetime
    retain_until: datetime | None
    reconcile: bool
    #: The visit's calendar file (e-mail with a join link only; :mod:`openvisit.notify.ics`).
    calendar: str | None = None


async def send_notification(job: JobContext) -> None:
    """Run one ``notify.send`` job (see the module docstring for the contract)."""
    app, key = job.app, job.idempotency_key
    prepared = await _prepare(app, key=key, payload=job.payload)
    if prepared is None:
        return
    result: SendResult | None = None
    if prepared.reconcile:
        try:
            found = await _reconcile(app, prepared, key=key)
        except CheckLater as wait:
            raise Defer(wait.until, reason=wait.reason) from wait
        result = await _first_unclaimed(app, found, provider=prepared.provider, key=key)
        log.info("notification_reconciled", job_id=job.job_id, found=result is not None)
    if result is None:
        try:
            result = await _hand_over(app, prepared, key=key)
        except RecipientRejected as exc:
            await _record_rejected(app, key=key, error=exc)
            log.info("notification_rejected", job_id=job.job_id, provider=prepared.provider)
            return
        except OutcomeUnknown:
            raise  # the row stays "sending": the next attempt reconciles
        except OutboundError as exc:
            await _record_not_sent(app, key=key, error=exc)
            raise
    await _record_sent(job.session, key=key, provider=prepared.provider, result=result)
    log.info("notification_sent", job_id=job.job_id, channel=prepared.channel,
             provider=prepared.provider, parts=result.parts)


# --------------------------------------------------------------------------- phase 1

async def _prepare(app: AppContext, *, key: str, payload: dict[str, Any]) -> Prepared | None:
    """Check, render, freeze and commit ``sending``; None when there is nothing to send."""
    now = utcnow()
    async with app.transaction() as session:
        row = await repo.message_log_by_key(session, key)
        if row is not None and row.status in repo.FINAL:
            return None
        note = await repo.notification_by_key(session, key)
        if row is not None and row.status == "sending":
            return _frozen(app, row=row, note=note)
        if payload["message"] == "invite":
            return await _prepare_invite(session, app, key=key, payload=payload, row=row,
                                         note=note, now=now)

        appointment = await session.get(Appointment, uuid.UUID(payload["appointment_id"]))
        base = dict(organisation_id=uuid.UUID(payload["organisation_id"]),
                    appointment_id=uuid.UUID(payload["appointment_id"]),
                    template=payload["message"], job_key=key)
        if appointment is None:
            return await _suppressed(session, row, base, reason="appointment_gone")
        if _stale(appointment, payload):
            return await _suppressed(session, row, base, reason="appointment_changed")
        settings = await repo.sms_settings(session, appointment.endpoint_id)
        if settings is None or not settings.enabled:
            return await _suppressed(session, row, base, reason="notifications_off")
        endpoint = await session.get(EhrEndpoint, appointment.endpoint_id)
        tz = endpoint.timezone if endpoint else "UTC"
        quiet = QuietHours.parse(settings.quiet_hours_start, settings.quiet_hours_end, tz=tz)
        start_at = datetime.fromisoformat(payload["start_at"])
        release = release_time(now, quiet=quiet, start_at=start_at)
        if release > now:
            raise Defer(release, reason="quiet hours")

        language = render.language_of(appointment.language, settings.default_language)
        route = await _route(app, session, appointment=appointment)
        if isinstance(route, str):
            return await _suppressed(session, row, {**base, "language": language}, reason=route)
        channel, to, contact_purge_at = route
        org = await session.get(Organisation, appointment.organisation_id)
        sender, provider = await _sender(app, session, channel=channel, settings=settings,
                                         now=now)
        link = None
        if payload["message"] in render.WITH_LINK:
            link = await _join_link(session, app=app, appointment=appointment, language=language)
        department = await departments.display_name(
            session, organisation_id=appointment.organisation_id,
            department=payload.get("department"), language=language)
        facts = render.Facts(organisation=org.display_name if org else "", link=link,
                             department=department, start_at=start_at, timezone=tz)
        if channel == "sms":
            subject = html = None
            text = render.render_sms(payload["message"], language=language, facts=facts,
                                     transliterate=settings.sms_transliterate)
        calendar = None
        if channel != "sms":
            mail = render.render_email(payload["message"], language=language, facts=facts)
            subject, text, html = mail.subject, mail.text, mail.html
            if link is not None:
                calendar = render.render_calendar(facts, language=language,
                                                  uid=f"appointment-{appointment.id}",
                                                  end_at=appointment.end_at, now=now)
        if note is None:
            note = Notification(appointment_id=appointment.id, job_key=key, purpose="other",
                                message=payload["message"], fingerprint="", start_at=start_at)
            session.add(note)
        prepared = Prepared(channel=channel, provider=provider, to=to, sender=sender,
                            sender_name=org.display_name if org else "", text=text,
                            subject=subject, html=html, first_attempt_at=now,
                            retain_until=contact_purge_at, reconcile=False, calendar=calendar)
        await _freeze(session, app, prepared, note=note, row=row, base=base, language=language)
    return prepared


async def _freeze(session: AsyncSession, app: AppContext, prepared: Prepared, *,
                  note: Notification, row: MessageLog | None, base: dict[str, Any],
                  language: str) -> None:
    """Phase 1's end: the rendered message encrypted on ``note``, the log row ``sending``."""
    content = {"channel": prepared.channel, "provider": prepared.provider, "to": prepared.to,
               "sender": prepared.sender, "sender_name": prepared.sender_name,
               "text": prepared.text, "subject": prepared.subject, "html": prepared.html,
               "calendar": prepared.calendar}
    note.content_enc = app.cipher.encrypt(json.dumps(content))
    note.purge_at = prepared.retain_until
    if row is None:
        row = MessageLog(**base)
        session.add(row)
    to = prepared.to
    row.channel, row.provider, row.language = prepared.channel, prepared.provider, language
    row.recipient_masked = mask_phone(to) if prepared.channel == "sms" else mask_email(to)
    row.recipient_hash = app.hasher.hash(to)
    row.status, row.error, row.created_at = "sending", None, prepared.first_attempt_at
    await session.flush()


async def _prepare_invite(session: AsyncSession, app: AppContext, *, key: str,
                          payload: dict[str, Any], row: MessageLog | None,
                          note: Notification | None, now: datetime) -> Prepared | None:
    """Phase 1 of a clinician's invite link (:mod:`openvisit.notify.invites`)."""
    from openvisit.visits.service import link_for  # the adapter to visits, as _join_link

    base = dict(organisation_id=uuid.UUID(payload["organisation_id"]),
                appointment_id=uuid.UUID(payload["appointment_id"])
                if payload.get("appointment_id") else None,
                template="invite", job_key=key)
    if note is None or note.content_enc is None:
        return await _suppressed(session, row, base, reason="contact_purged")
    visit = await session.get(Visit, uuid.UUID(payload["visit_id"]))
    seat = await session.get(Participant, uuid.UUID(payload["participant_id"]))
    if visit is None or visit.status == "ended":
        return await _suppressed(session, row, base, reason="visit_ended")
    if (seat is None or seat.visit_id != visit.id or seat.lobby_state == "removed"
            or seat.token_version != payload["token_version"]):
        return await _suppressed(session, row, base, reason="invite_withdrawn")
    settings = await repo.messaging_settings(session, organisation_id=visit.organisation_id,
                                             appointment_id=visit.appointment_id)
    if settings is None or not settings.enabled:
        return await _suppressed(session, row, base, reason="notifications_off")
    address = json.loads(app.cipher.decrypt(note.content_enc))
    channel, to = address["channel"], address["to"]
    language = render.language_of(seat.language, settings.default_language)
    if channel == "sms":
        if await repo.is_opted_out(session, organisation_id=visit.organisation_id,
                                   recipient_hash=app.hasher.hash(to)):
            return await _suppressed(session, row, {**base, "language": language},
                                     reason="opted_out")
    sender, provider = await _sender(app, session, channel=channel, settings=settings, now=now)
    endpoint = await session.get(EhrEndpoint, settings.endpoint_id)
    appointment = (await session.get(Appointment, visit.appointment_id)
                   if visit.appointment_id else None)
    start_at = appointment.start_at if appointment and appointment.start_at else now
    department = await departments.display_name(
        session, organisation_id=visit.organisation_id,
        department=appointment.department if appointment else None, language=language)
    org = await session.get(Organisation, visit.organisation_id)
    facts = render.Facts(organisation=org.display_name if org else "", link=link_for(app, seat),
                         department=department, start_at=max(start_at, now),
                         timezone=endpoint.timezone if endpoint else "UTC", role=seat.role)
    subject = html = None
    if channel == "sms":
        text = render.render_sms("invite", language=language, facts=facts,
                                 transliterate=settings.sms_transliterate)
    else:
        mail = render.render_email("invite", language=language, facts=facts)
        subject, text, html = mail.subject, mail.text, mail.html
    prepared = Prepared(channel=channel, provider=provider, to=to, sender=sender,
                        sender_name=facts.organisation, text=text, subject=subject, html=html,
                        first_attempt_at=now, retain_until=note.purge_at, reconcile=False)
    await _freeze(session, app, prepared, note=note, row=row, base=base, language=language)
    return prepared


def _stale(appointment: Appointment, payload: dict[str, Any]) -> bool:
    """A reminder or confirmation about a visit that is off, or at another time now."""
    if payload["message"] == "cancelled":
        return False
    if appointment.status in ENDED_STATUSES:
        return True
    return payload["message"] == "reminder" and (
        appointment.start_at is None
        or appointment.start_at != datetime.fromisoformat(payload["start_at"])
    )


def _frozen(app: AppContext, *, row: MessageLog, note: Notification | None) -> Prepared | None:
    if note is None or note.content_enc is None:
        # The contact was purged while the outcome was unknown: nothing left to compare with
        # or resend to. Recorded as failed so reports show it.
        row.status, row.error = "failed", "outcome unknown; contact purged"
        return None
    content = json.loads(app.cipher.decrypt(note.content_enc))
    return Prepared(channel=content["channel"], provider=content["provider"], to=content["to"],
                    sender=content["sender"], sender_name=content["sender_name"],
                    text=content["text"], subject=content["subject"], html=content["html"],
                    calendar=content.get("calendar"),
                    first_attempt_at=row.created_at, retain_until=note.purge_at,
                    reconcile=True)


async def _route(
    app: AppContext, session: AsyncSession, *, appointment: Appointment
) -> tuple[ContactKind, str, datetime] | str:
    """(channel, address, purge_at): SMS to a mobile that has not opted out, else e-mail.

    Returns the suppression reason instead when there is nobody to write to. STOP governs
    text messages from the organisation; the e-mail fallback keeps the link reaching a
    patient who asked for no more SMS.
    """
    contacts = await repo.contacts(session, appointment.id)
    opted_out = False
    sms = contacts.get("sms")
    if sms is not None:
        number = app.cipher.decrypt(sms.value_enc)
        opted_out = await repo.is_opted_out(session, organisation_id=appointment.organisation_id,
                                            recipient_hash=app.hasher.hash(number))
        if not opted_out:
            return "sms", number, sms.purge_at
    email = contacts.get("email")
    if email is not None:
        return "email", app.cipher.decrypt(email.value_enc), email.purge_at
    return "opted_out" if opted_out else "no_contact"


async def _sender(app: AppContext, session: AsyncSession, *, channel: str,
                  settings: SmsSettings, now: datetime) -> tuple[str, SmsProvider | EmailProvider]:
    """(sender, provider) of one message: for SMS the endpoint's sending number, after a
    slot of its per-minute rate (else :class:`Defer` to the slot); for e-mail the From."""
    if channel != "sms":
        return app.settings.smtp_from or OUTBOX_FROM, app.settings.email_provider
    sender, provider = await _sms_sender(app, session, endpoint_id=settings.endpoint_id)
    retry_at = await repo.take_send_slot(session, sender=sender, now=now,
                                         per_minute=settings.rate_limit_per_minute)
    if retry_at is not None:
        raise Defer(retry_at, reason="sending number rate limit")
    return sender, provider


async def _sms_sender(app: AppContext, session: AsyncSession, *,
                      endpoint_id: uuid.UUID) -> tuple[str, SmsProvider]:
    """(sender, provider): the endpoint's own number through its provider, else defaults."""
    number = await repo.sending_number(session, endpoint_id)
    if number is not None and number.e164:
        provider = number.provider if number.provider in SMS_PROVIDERS else None
        return number.e164, provider or app.settings.sms_provider
    return app.settings.sms_sender or OUTBOX_SENDER, app.settings.sms_provider


async def _suppressed(session: AsyncSession, row: MessageLog | None, base: dict[str, Any],
                      *, reason: str) -> Prepared | None:
    """Record that the message will not be sent, and why; returns None (nothing to send)."""
    if row is None:
        row = MessageLog(channel="none", provider="none", recipient_masked="",
                         recipient_hash="", **base)
        session.add(row)
    row.status, row.error = "suppressed", reason
    await session.flush()
    log.info("notification_suppressed", reason=reason, template=base.get("template"))
    return None


async def _join_link(
    session: AsyncSession, *, app: AppContext, appointment: Appointment, language: str
) -> str:
    """ADAPTER to the visits service: the patient's join link for this appointment.

    The one place notifications meet visits (``open_visit`` + ``seat_link``, issue 5
    contract). Links are deterministic per seat, so a reminder repeats the confirmation's
    link; the text is frozen per send anyway, so a retry never depends on that.
    """
    from openvisit.visits.service import open_visit, seat_link

    visit = await open_visit(session, app=app, appointment=appointment)
    return await seat_link(session, app=app, visit=visit, role="patient",
                           patient_ref=app.refs.read(appointment), language=language)


# ----------------------------------------------------------------------- the network

async def _hand_over(app: AppContext, prepared: Prepared, *, key: str) -> SendResult:
    if prepared.channel == "sms":
        return await sms_transport(app, prepared.provider).send(
            to=prepared.to, body=prepared.text, sender=prepared.sender, reference=key,
            retain_until=prepared.retain_until, first_attempt_at=prepared.first_attempt_at)
    return await email_transport(app, prepared.provider).send(
        to=prepared.to, subject=prepared.subject or "", text=prepared.text,
        html=prepared.html, sender=prepared.sender, sender_name=prepared.sender_name,
        reference=key, retain_until=prepared.retain_until, calendar=prepared.calendar)


async def _reconcile(app: AppContext, prepared: Prepared, *, key: str) -> list[SendResult]:
    if prepared.channel == "sms":
        return await sms_transport(app, prepared.provider).reconcile(
            to=prepared.to, body=prepared.text, sender=prepared.sender, reference=key,
            since=prepared.first_attempt_at)
    return await email_transport(app, prepared.provider).reconcile(
        to=prepared.to, subject=prepared.subject or "", text=prepared.text,
        sender=prepared.sender, reference=key, since=prepared.first_attempt_at)


async def _first_unclaimed(app: AppContext, found: list[SendResult], *, provider: str,
                           key: str) -> SendResult | None:
    """The oldest found message no other message log row already owns."""
    if not found:
        return None
    async with app.transaction() as session:
        claimed = await repo.claimed_provider_ids(
            session, provider=provider, ids=[f.provider_message_id for f in found],
            except_key=key)
    return next((f for f in found if f.provider_message_id not in claimed), None)


# --------------------------------------------------------------------------- phase 2

async def _record_sent(session: AsyncSession, *, key: str, provider: str,
                       result: SendResult) -> None:
    """Mark the row sent (in the job's transaction) and apply receipts that came early."""
    await repo.lock_provider_message(session, provider=provider,
                                     provider_message_id=result.provider_message_id)
    row = await repo.message_log_by_key(session, key)
    if row is None:
        return
    row.provider_message_id = row.provider_message_id or result.provider_message_id
    row.error = None
    repo.advance(row, "sent")
    for receipt in await repo.receipts_for(session, provider=provider,
                                           provider_message_id=result.provider_message_id):
        repo.advance(row, receipt.status)
        await session.delete(receipt)
    note = await repo.notification_by_key(session, key)
    if note is not None:
        note.content_enc = None  # sent: the text is no longer needed anywhere
    await session.flush()
    if row.appointment_id is not None:  # write-back's seam: a Communication (issue 13)
        appointment = await session.get(Appointment, row.appointment_id)
        if appointment is not None:
            await writeback.on_message_sent(session, appointment=appointment,
                                            channel=row.channel, template=row.template,
                                            message_key=row.id.hex)


async def _record_rejected(app: AppContext, *, key: str, error: RecipientRejected) -> None:
    async with app.transaction() as session:
        row = await repo.message_log_by_key(session, key)
        if row is None:
            return
        row.status, row.error = "failed", error.code
        if error.opted_out:
            await repo.set_opt_out(session, organisation_ids=[row.organisation_id],
                                   recipient_hash=row.recipient_hash, opted_out=True,
                                   now=utcnow())
        note = await repo.notification_by_key(session, key)
        if note is not None:
            note.content_enc = None


async def _record_not_sent(app: AppContext, *, key: str, error: OutboundError) -> None:
    """Nothing reached the provider: the next attempt may start afresh (no reconcile)."""
    async with app.transaction() as session:
        row = await repo.message_log_by_key(session, key)
        if row is not None and row.status == "sending":
            row.status, row.error = "queued", error.code

"""Every query of the notify package (services and tasks call these, never build SQL)."""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.db import insert_ignoring_conflicts, rowcount
from openvisit.models import (
    Appointment,
    Contact,
    DepartmentName,
    EhrEndpoint,
    Job,
    MessageLog,
    Notification,
    OptOut,
    Organisation,
    OutboxMessage,
    PhoneNumber,
    PhoneNumberEndpoint,
    ProviderReceipt,
    SenderRate,
    SmsSettings,
)
from openvisit.models.base import utcnow
from openvisit.models.choices import MESSAGE_STATUSES, MessageStatus, is_one_of

#: Message log statuses by progress; a status only ever moves forward.
STATUS_RANK: dict[MessageStatus, int] = {
    "queued": 0, "sending": 1, "sent": 2, "delivered": 3, "undelivered": 3, "failed": 3,
    "suppressed": 3}
FINAL: frozenset[MessageStatus] = frozenset(
    {"sent", "delivered", "undelivered", "failed", "suppressed"})


def advance(row: MessageLog, status: str) -> bool:
    """Move ``row`` to ``status`` unless it is already as far or further; True if moved.

    A status outside the message log's vocabulary (a provider's own word) never moves it.
    """
    if not is_one_of(status, MESSAGE_STATUSES):
        return False
    if STATUS_RANK[status] <= STATUS_RANK.get(row.status, -1):
        return False
    row.status = status
    if status in ("delivered", "undelivered"):
        row.receipt_at = utcnow()
    return True


# --------------------------------------------------------------------- scheduling side

async def sms_settings(session: AsyncSession, endpoint_id: uuid.UUID) -> SmsSettings | None:
    return await session.get(SmsSettings, endpoint_id)


async def contacts(session: AsyncSession, appointment_id: uuid.UUID) -> dict[str, Contact]:
    """The appointment's contacts by kind ("sms", "email")."""
    rows = await session.scalars(select(Contact).where(Contact.appointment_id == appointment_id))
    return {row.kind: row for row in rows}


async def notifications_for(
    session: AsyncSession, appointment_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[tuple[Notification, str | None]]]:
    """Every message planned for each appointment, oldest first, with its job's state."""
    found: dict[uuid.UUID, list[tuple[Notification, str | None]]] = {}
    if not appointment_ids:
        return found
    rows = await session.execute(
        select(Notification, Job.state)
        .join(Job, Job.idempotency_key == Notification.job_key, isouter=True)
        .where(Notification.appointment_id.in_(appointment_ids))
        .order_by(Notification.id)
    )
    for note, state in rows.all():
        if note.appointment_id is not None:
            found.setdefault(note.appointment_id, []).append((note, state))
    return found


async def contact_kinds(
    session: AsyncSession, appointment_ids: list[uuid.UUID]
) -> dict[uuid.UUID, set[str]]:
    """The kinds of contact ("sms", "email") each appointment has."""
    found: dict[uuid.UUID, set[str]] = {}
    if not appointment_ids:
        return found
    rows = await session.execute(
        select(Contact.appointment_id, Contact.kind).where(
            Contact.appointment_id.in_(appointment_ids))
    )
    for appointment_id, kind in rows.all():
        found.setdefault(appointment_id, set()).add(kind)
    return found


async def insert_notifications(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert planned notifications in one statement; a job key already planned is skipped."""
    await insert_ignoring_conflicts(session, Notification, rows, on=("job_key",))


async def messaging_settings(
    session: AsyncSession, *, organisation_id: uuid.UUID, appointment_id: uuid.UUID | None
) -> SmsSettings | None:
    """The messaging settings a visit sends under: its appointment's endpoint, or (a visit
    with no appointment) the organisation's first endpoint, by name, with messaging on."""
    if appointment_id is not None:
        endpoint_id = await session.scalar(
            select(Appointment.endpoint_id).where(Appointment.id == appointment_id))
        return None if endpoint_id is None else await session.get(SmsSettings, endpoint_id)
    return await session.scalar(
        select(SmsSettings).join(EhrEndpoint, EhrEndpoint.id == SmsSettings.endpoint_id)
        .where(EhrEndpoint.organisation_id == organisation_id, SmsSettings.enabled.is_(True))
        .order_by(EhrEndpoint.name, EhrEndpoint.id).limit(1))


async def latest_invite(session: AsyncSession, *, key_prefix: str) -> Notification | None:
    """The newest invite message whose job key starts with ``key_prefix``."""
    return await session.scalar(
        select(Notification)
        .where(Notification.purpose == "invite", Notification.job_key.startswith(key_prefix))
        .order_by(Notification.created_at.desc(), Notification.id.desc()).limit(1))


async def invites_sent(session: AsyncSession, *, key_prefix: str, since: datetime) -> int:
    """Invite messages whose job key starts with ``key_prefix`` created since ``since``."""
    return int(await session.scalar(
        select(func.count()).select_from(Notification)
        .where(Notification.purpose == "invite", Notification.job_key.startswith(key_prefix),
               Notification.created_at >= since)) or 0)


async def notification_by_key(session: AsyncSession, job_key: str) -> Notification | None:
    return await session.scalar(select(Notification).where(Notification.job_key == job_key))


# ------------------------------------------------------------------------ sending side

async def message_log_by_key(session: AsyncSession, job_key: str) -> MessageLog | None:
    return await session.scalar(select(MessageLog).where(MessageLog.job_key == job_key))


async def message_log_by_provider_id(
    session: AsyncSession, *, provider: str, provider_message_id: str
) -> MessageLog | None:
    return await session.scalar(
        select(MessageLog).where(MessageLog.provider == provider,
                                 MessageLog.provider_message_id == provider_message_id)
    )


async def claimed_provider_ids(
    session: AsyncSession, *, provider: str, ids: Iterable[str], except_key: str
) -> set[str]:
    """Which of ``ids`` another message log row already records as its own."""
    wanted = list(ids)
    if not wanted:
        return set()
    rows = await session.scalars(
        select(MessageLog.provider_message_id).where(
            MessageLog.provider == provider, MessageLog.provider_message_id.in_(wanted),
            MessageLog.job_key != except_key)
    )
    return {r for r in rows if r}


async def is_opted_out(
    session: AsyncSession, *, organisation_id: uuid.UUID, recipient_hash: str
) -> bool:
    found = await session.get(OptOut, (organisation_id, recipient_hash))
    return found is not None


async def sending_number(session: AsyncSession, endpoint_id: uuid.UUID) -> PhoneNumber | None:
    """The active number linked to the endpoint (the oldest, if several)."""
    return await session.scalar(
        select(PhoneNumber)
        .join(PhoneNumberEndpoint, PhoneNumberEndpoint.phone_number_id == PhoneNumber.id)
        .where(PhoneNumberEndpoint.endpoint_id == endpoint_id, PhoneNumber.state == "active",
               PhoneNumber.e164.is_not(None))
        .order_by(PhoneNumber.created_at, PhoneNumber.id)
        .limit(1)
    )


async def take_send_slot(
    session: AsyncSession, *, sender: str, per_minute: int, now: datetime
) -> datetime | None:
    """Take one send from ``sender``'s budget; None if taken, else when to try again.

    GCRA (the "virtual scheduling" form of a leaky bucket): sends are spaced 60/limit
    seconds apart with a burst of one second's worth, so a batch is paced evenly rather than
    fired in a burst and then stalled for the rest of the minute. The row is changed with a
    compare-and-set, so concurrent workers never both take the same slot.
    """
    interval = timedelta(seconds=60 / max(1, per_minute))
    burst = max(1, math.ceil(per_minute / 60))
    tolerance = interval * (burst - 1)
    for _ in range(20):
        row = await session.get(SenderRate, sender, populate_existing=True)
        if row is None:
            try:
                async with session.begin_nested():
                    session.add(SenderRate(sender=sender, tat=now + interval))
                    await session.flush()
                return None
            except IntegrityError:
                continue
        tat = max(row.tat, now)
        if tat - now > tolerance:
            return tat - tolerance
        result = await session.execute(
            update(SenderRate)
            .where(SenderRate.sender == sender, SenderRate.tat == row.tat)
            .values(tat=tat + interval)
            .execution_options(synchronize_session=False)
        )
        if rowcount(result):
            return None
    return now + interval


# ------------------------------------------------------------------------ inbound side

async def organisations_for_sender(session: AsyncSession, number: str) -> list[uuid.UUID]:
    """Who sends from ``number``: its owner, or (for the shared default sender) every
    organisation without an active number of its own."""
    owner = await session.scalar(select(PhoneNumber.organisation_id)
                                 .where(PhoneNumber.e164 == number))
    if owner is not None:
        return [owner]
    with_numbers = select(PhoneNumber.organisation_id).where(PhoneNumber.state == "active")
    rows = await session.scalars(
        select(Organisation.id).where(Organisation.id.not_in(with_numbers)))
    return list(rows)


async def set_opt_out(
    session: AsyncSession, *, organisation_ids: Iterable[uuid.UUID], recipient_hash: str,
    opted_out: bool, now: datetime,
) -> None:
    for org in organisation_ids:
        existing = await session.get(OptOut, (org, recipient_hash))
        if opted_out and existing is None:
            try:
                async with session.begin_nested():
                    session.add(OptOut(organisation_id=org, recipient_hash=recipient_hash,
                                       opted_out_at=now))
                    await session.flush()
            except IntegrityError:
                pass  # a concurrent STOP recorded it
        elif not opted_out and existing is not None:
            await session.delete(existing)
            await session.flush()


async def lock_provider_message(
    session: AsyncSession, *, provider: str, provider_message_id: str
) -> None:
    """Serialise "record a send's provider id" with "record a receipt for that id".

    Without it, on PostgreSQL a receipt could arrive while the sender's transaction is still
    open: it would find no row, be kept for later, and the sender's look for early receipts
    would have run just before - the receipt stranded. A transaction-scoped advisory lock
    on the id makes one wait for the other. SQLite already runs one writer at a time.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.sha256(f"{provider}:{provider_message_id}".encode()).digest()
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                          {"key": int.from_bytes(digest[:8], "big", signed=True)})


async def add_receipt(session: AsyncSession, receipt: ProviderReceipt) -> None:
    session.add(receipt)
    await session.flush()


async def receipts_for(
    session: AsyncSession, *, provider: str, provider_message_id: str
) -> list[ProviderReceipt]:
    rows = await session.scalars(
        select(ProviderReceipt)
        .where(ProviderReceipt.provider == provider,
               ProviderReceipt.provider_message_id == provider_message_id)
        .order_by(ProviderReceipt.id)
    )
    return list(rows)


async def receipts_by_reference(
    session: AsyncSession, *, provider: str, recipient_hash: str, reference: str,
    since: datetime,
) -> list[ProviderReceipt]:
    """Receipts of ``provider`` from this recipient echoing ``reference``, oldest first."""
    rows = await session.scalars(
        select(ProviderReceipt)
        .where(ProviderReceipt.provider == provider,
               ProviderReceipt.recipient_hash == recipient_hash,
               ProviderReceipt.reference == reference,
               ProviderReceipt.received_at >= since)
        .order_by(ProviderReceipt.received_at, ProviderReceipt.id)
    )
    return list(rows)


async def outbox_id(session: AsyncSession, reference: str) -> int | None:
    """The id of the outbox message stored for this send reference."""
    return await session.scalar(
        select(OutboxMessage.id).where(OutboxMessage.reference == reference))


# -------------------------------------------------------------------- purge and views

async def purge(
    session: AsyncSession, *, now: datetime, receipts_before: datetime
) -> dict[str, int]:
    """Delete contact details whose time is up, with every copy of a message kept for them."""
    counts: dict[str, int] = {}
    for name, statement in (
        ("contacts", delete(Contact).where(Contact.purge_at <= now)),
        ("outbox", delete(OutboxMessage).where(OutboxMessage.purge_at <= now)),
        ("receipts", delete(ProviderReceipt).where(ProviderReceipt.received_at < receipts_before)),
        ("contents", update(Notification)
         .where(Notification.purge_at <= now, Notification.content_enc.is_not(None))
         .values(content_enc=None)),
    ):
        result = await session.execute(statement.execution_options(synchronize_session=False))
        counts[name] = rowcount(result)
    return counts


async def recent_outbox(
    session: AsyncSession, *, organisation_id: uuid.UUID, limit: int
) -> list[tuple[OutboxMessage, MessageLog]]:
    """The organisation's newest outbox messages with their message log rows.

    The outbox row is the provider's side of the wire and names no organisation; its
    reference is the send job's key, which the message log row (organisation, template,
    status) carries too.
    """
    rows = await session.execute(
        select(OutboxMessage, MessageLog)
        .join(MessageLog, MessageLog.job_key == OutboxMessage.reference)
        .where(MessageLog.organisation_id == organisation_id)
        .order_by(OutboxMessage.id.desc()).limit(limit)
    )
    return [(outbox, log) for outbox, log in rows.all()]


async def count_outbox(session: AsyncSession, *, organisation_id: uuid.UUID) -> int:
    return int(await session.scalar(
        select(func.count()).select_from(OutboxMessage)
        .join(MessageLog, MessageLog.job_key == OutboxMessage.reference)
        .where(MessageLog.organisation_id == organisation_id)) or 0)


async def department_names(session: AsyncSession, *, organisation_id: uuid.UUID,
                           code: str | None = None) -> list[DepartmentName]:
    """The organisation's department names (of one code, if given), by code and language."""
    query = select(DepartmentName).where(DepartmentName.organisation_id == organisation_id)
    if code is not None:
        query = query.where(DepartmentName.code == code)
    rows = await session.scalars(query.order_by(DepartmentName.code, DepartmentName.language))
    return list(rows)


async def delete_department_names(session: AsyncSession, *, organisation_id: uuid.UUID,
                                  code: str, language: str | None = None) -> int:
    """Remove a code's names (only ``language``'s, if given); how many rows went."""
    query = delete(DepartmentName).where(DepartmentName.organisation_id == organisation_id,
                                         DepartmentName.code == code)
    if language is not None:
        query = query.where(DepartmentName.language == language)
    return rowcount(await session.execute(query))

"""SQL of retention, erasure and re-keying (issue 18): deletes in bounded batches."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.db import rowcount
from openvisit.models import EhrEndpoint, MessageLog, Organisation, QualitySample, Writeback
from openvisit.models.notify import Notification
from openvisit.models.ops import AuditLog
from openvisit.models.visit import (
    Appointment,
    ChatMessage,
    Contact,
    Participant,
    Visit,
    VisitEvent,
)


async def organisations(session: AsyncSession) -> Sequence[Organisation]:
    return (await session.scalars(select(Organisation).order_by(Organisation.slug))).all()


async def organisation_by_slug(session: AsyncSession, slug: str) -> Organisation | None:
    return (await session.scalars(select(Organisation).where(Organisation.slug == slug))).first()


# ---------------------------------------------------------------------------- retention

async def old_visit_ids(session: AsyncSession, *, organisation_id: uuid.UUID,
                        before: datetime, limit: int) -> list[uuid.UUID]:
    """Visits (any kind) that ended, or were made and never ended, before ``before``."""
    stmt = (select(Visit.id)
            .where(Visit.organisation_id == organisation_id,
                   func.coalesce(Visit.ended_at, Visit.window_end, Visit.created_at) < before,
                   Visit.created_at < before)
            .order_by(Visit.created_at).limit(limit))
    return list((await session.scalars(stmt)).all())


async def old_appointment_ids(session: AsyncSession, *, organisation_id: uuid.UUID,
                              before: datetime, limit: int) -> list[uuid.UUID]:
    stmt = (select(Appointment.id)
            .where(Appointment.organisation_id == organisation_id,
                   func.coalesce(Appointment.end_at, Appointment.start_at,
                                 Appointment.created_at) < before,
                   Appointment.updated_at < before)
            .order_by(Appointment.created_at).limit(limit))
    return list((await session.scalars(stmt)).all())


async def delete_visits(session: AsyncSession, visit_ids: Sequence[uuid.UUID]) -> int:
    """Delete visits with everything under them (seats, events, samples, chat, and their
    write-back rows); foreign keys cascade on both databases, deleted here explicitly too
    so the counts are right and nothing depends on a pragma."""
    if not visit_ids:
        return 0
    keys = [str(v) for v in visit_ids]
    for statement in (
        delete(Writeback).where(Writeback.order_key.in_(keys)),
        delete(QualitySample).where(QualitySample.visit_id.in_(visit_ids)),
        delete(ChatMessage).where(ChatMessage.visit_id.in_(visit_ids)),
        delete(VisitEvent).where(VisitEvent.visit_id.in_(visit_ids)),
        delete(Participant).where(Participant.visit_id.in_(visit_ids)),
    ):
        await session.execute(statement.execution_options(synchronize_session=False))
    result = await session.execute(delete(Visit).where(Visit.id.in_(visit_ids))
                                   .execution_options(synchronize_session=False))
    return rowcount(result)


async def delete_appointments(session: AsyncSession,
                              appointment_ids: Sequence[uuid.UUID], *,
                              with_messages: bool) -> int:
    """Delete appointments with their contacts, notifications and appointment-level
    write-back rows, and (``with_messages``: an erasure) their message-log rows, which
    retention otherwise keeps for their own period. A visit of theirs is deleted by
    :func:`delete_visits` or keeps going without it (``visit.appointment_id`` set NULL)."""
    if not appointment_ids:
        return 0
    keys = [f"appt:{a}" for a in appointment_ids]
    statements = [
        delete(Writeback).where(Writeback.order_key.in_(keys)),
        delete(Notification).where(Notification.appointment_id.in_(appointment_ids)),
        delete(Contact).where(Contact.appointment_id.in_(appointment_ids)),
    ]
    if with_messages:
        statements.append(delete(MessageLog).where(
            MessageLog.appointment_id.in_(appointment_ids)))
    for statement in statements:
        await session.execute(statement.execution_options(synchronize_session=False))
    result = await session.execute(delete(Appointment).where(Appointment.id.in_(appointment_ids))
                                   .execution_options(synchronize_session=False))
    return rowcount(result)


async def delete_old_messages(session: AsyncSession, *, organisation_id: uuid.UUID,
                              before: datetime, limit: int) -> int:
    """Message-log rows and write-back rows older than ``before`` (write-backs that are
    still pending or failing are kept: a person may still need to see them)."""
    ids = select(MessageLog.id).where(MessageLog.organisation_id == organisation_id,
                                      MessageLog.created_at < before).limit(limit)
    n = rowcount(await session.execute(delete(MessageLog).where(MessageLog.id.in_(ids))
                                       .execution_options(synchronize_session=False)))
    endpoints = select(EhrEndpoint.id).where(EhrEndpoint.organisation_id == organisation_id)
    rows = (select(Writeback.id)
            .where(Writeback.endpoint_id.in_(endpoints), Writeback.created_at < before,
                   Writeback.state.in_(("sent", "skipped")))
            .limit(limit))
    n += rowcount(await session.execute(delete(Writeback).where(Writeback.id.in_(rows))
                                        .execution_options(synchronize_session=False)))
    return n


async def delete_old_audit(session: AsyncSession, *, organisation_id: uuid.UUID,
                           before: datetime, limit: int) -> int:
    ids = select(AuditLog.id).where(AuditLog.organisation_id == organisation_id,
                                    AuditLog.at < before).limit(limit)
    return rowcount(await session.execute(delete(AuditLog).where(AuditLog.id.in_(ids))
                                          .execution_options(synchronize_session=False)))


# ------------------------------------------------------------------------------ erasure

async def appointments_of_patient(session: AsyncSession, *, organisation_id: uuid.UUID,
                                  hashes: Sequence[str]) -> list[Appointment]:
    stmt = select(Appointment).where(Appointment.organisation_id == organisation_id,
                                     Appointment.patient_ref_hash.in_(hashes))
    return list((await session.scalars(stmt)).all())


async def seats_of_patient(session: AsyncSession, *, organisation_id: uuid.UUID,
                           hashes: Sequence[str]) -> list[Participant]:
    stmt = (select(Participant).join(Visit, Visit.id == Participant.visit_id)
            .where(Visit.organisation_id == organisation_id,
                   Participant.patient_ref_hash.in_(hashes)))
    return list((await session.scalars(stmt)).all())


async def visits_of_appointments(session: AsyncSession,
                                 appointment_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    if not appointment_ids:
        return []
    stmt = select(Visit.id).where(Visit.appointment_id.in_(appointment_ids))
    return list((await session.scalars(stmt)).all())


async def other_patient_seats(session: AsyncSession, *, visit_id: uuid.UUID,
                              hashes: Sequence[str]) -> int:
    """Patient seats of the visit that belong to someone else (a group visit)."""
    stmt = (select(func.count()).select_from(Participant)
            .where(Participant.visit_id == visit_id, Participant.role == "patient",
                   or_(Participant.patient_ref_hash.is_(None),
                       Participant.patient_ref_hash.not_in(hashes))))
    return int(await session.scalar(stmt) or 0)


async def forget_seat(session: AsyncSession, seat: Participant) -> int:
    """Remove what one seat of a shared visit says about its person: its events, samples
    and chat, and its reference. The seat stays as "Patient N" so the visit adds up."""
    n = 0
    for statement in (
        delete(VisitEvent).where(VisitEvent.participant_id == seat.id),
        delete(QualitySample).where(QualitySample.participant_id == seat.id),
        delete(ChatMessage).where(ChatMessage.participant_id == seat.id),
    ):
        n += rowcount(await session.execute(statement.execution_options(
            synchronize_session=False)))
    seat.patient_ref_hash = seat.patient_ref_enc = None
    return n


# ------------------------------------------------------------------------------ re-keying

async def rows_with_refs(session: AsyncSession, model: type[Appointment] | type[Participant],
                         *, after: uuid.UUID | None, limit: int
                         ) -> Sequence[Appointment | Participant]:
    stmt = select(model).where(model.patient_ref_enc.is_not(None))
    if after is not None:
        stmt = stmt.where(model.id > after)
    rows = (await session.scalars(stmt.order_by(model.id).limit(limit))).all()
    return [row for row in rows if isinstance(row, (Appointment, Participant))]

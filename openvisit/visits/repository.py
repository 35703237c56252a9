"""Queries of the visits package: the only place here that builds SQL."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.db import rowcount
from openvisit.models import EhrEndpoint, Organisation, QualitySample
from openvisit.models.visit import Appointment, ChatMessage, Participant, Visit, VisitEvent


async def visit_by_id(session: AsyncSession, visit_id: uuid.UUID, *,
                      for_update: bool = False) -> Visit | None:
    stmt = select(Visit).where(Visit.id == visit_id)
    if for_update:
        # Re-read under the lock: the identity map may hold an older copy of the row.
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def visit_by_appointment(session: AsyncSession, appointment_id: uuid.UUID) -> Visit | None:
    stmt = select(Visit).where(Visit.appointment_id == appointment_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def appointment_by_id(session: AsyncSession,
                            appointment_id: uuid.UUID) -> Appointment | None:
    return await session.get(Appointment, appointment_id)


async def endpoint_timezone(session: AsyncSession, endpoint_id: uuid.UUID) -> str | None:
    """The IANA zone of the endpoint (where the clinic is), if the endpoint still exists."""
    endpoint = await session.get(EhrEndpoint, endpoint_id)
    return endpoint.timezone if endpoint else None


async def organisation_by_id(session: AsyncSession,
                             organisation_id: uuid.UUID) -> Organisation | None:
    return await session.get(Organisation, organisation_id)


async def organisation_by_slug(session: AsyncSession, slug: str) -> Organisation | None:
    stmt = select(Organisation).where(Organisation.slug == slug)
    return (await session.execute(stmt)).scalar_one_or_none()


async def participant_by_id(session: AsyncSession, participant_id: uuid.UUID, *,
                            for_update: bool = False) -> Participant | None:
    """One seat; ``for_update`` locks the row (PostgreSQL) so ``rev`` increments serialise."""
    stmt = select(Participant).where(Participant.id == participant_id)
    if for_update:
        # Re-read under the lock: the identity map may hold an older copy of the row.
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def seat_with_visit(session: AsyncSession, participant_id: uuid.UUID, *,
                          for_update: bool = False) -> tuple[Participant, Visit] | None:
    """A seat and its visit in one query; ``for_update`` locks the seat row (PostgreSQL)."""
    stmt = (
        select(Participant, Visit)
        .join(Visit, Visit.id == Participant.visit_id)
        .where(Participant.id == participant_id)
    )
    if for_update:
        stmt = stmt.with_for_update(of=Participant).execution_options(populate_existing=True)
    row = (await session.execute(stmt)).first()
    return (row[0], row[1]) if row is not None else None


async def participants_of(session: AsyncSession, visit_id: uuid.UUID) -> Sequence[Participant]:
    stmt = (
        select(Participant)
        .where(Participant.visit_id == visit_id)
        .order_by(Participant.created_at, Participant.id)
    )
    return (await session.execute(stmt)).scalars().all()


async def find_seat(session: AsyncSession, *, visit_id: uuid.UUID, role: str,
                    ehr_user_id: str | None = None,
                    patient_hashes: Sequence[str] | None = None) -> Participant | None:
    """The existing seat of a clinician (by EHR user id) or a patient (by reference)."""
    stmt = select(Participant).where(Participant.visit_id == visit_id, Participant.role == role)
    if ehr_user_id is not None:
        stmt = stmt.where(Participant.ehr_user_id == ehr_user_id)
    elif patient_hashes:
        stmt = stmt.where(Participant.patient_ref_hash.in_(patient_hashes))
    else:
        return None
    return (await session.execute(stmt)).scalar_one_or_none()


async def first_seat(session: AsyncSession, *, visit_id: uuid.UUID,
                     role: str) -> Participant | None:
    stmt = (
        select(Participant)
        .where(Participant.visit_id == visit_id, Participant.role == role)
        .order_by(Participant.seat_no)
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def next_seat_no(session: AsyncSession, *, visit_id: uuid.UUID, role: str) -> int:
    stmt = select(func.max(Participant.seat_no)).where(
        Participant.visit_id == visit_id, Participant.role == role
    )
    current = (await session.execute(stmt)).scalar_one_or_none()
    return int(current or 0) + 1


async def count_caregivers(session: AsyncSession, *, visit_id: uuid.UUID) -> int:
    """Seats the patient invited (family, caregivers) that were not removed."""
    stmt = select(func.count()).select_from(Participant).where(
        Participant.visit_id == visit_id, Participant.invited_by == "patient",
        Participant.lobby_state != "removed")
    return int((await session.execute(stmt)).scalar_one())


async def count_admitted(session: AsyncSession, visit_id: uuid.UUID) -> int:
    stmt = select(func.count()).select_from(Participant).where(
        Participant.visit_id == visit_id, Participant.lobby_state == "admitted"
    )
    return int((await session.execute(stmt)).scalar_one())


async def staff_in_call(session: AsyncSession, visit_id: uuid.UUID,
                        staff_roles: Collection[str]) -> bool:
    """Whether a clinician (or other staff seat) of the visit is in the call right now."""
    stmt = select(Participant.id).where(
        Participant.visit_id == visit_id, Participant.role.in_(staff_roles),
        Participant.lobby_state == "admitted", Participant.connected.is_(True)).limit(1)
    return (await session.execute(stmt)).first() is not None


async def events_of(session: AsyncSession, visit_id: uuid.UUID) -> Sequence[VisitEvent]:
    stmt = select(VisitEvent).where(VisitEvent.visit_id == visit_id).order_by(VisitEvent.id)
    return (await session.execute(stmt)).scalars().all()


async def bump_token_version(session: AsyncSession, participant_id: uuid.UUID) -> None:
    await session.execute(
        update(Participant)
        .where(Participant.id == participant_id)
        .values(token_version=Participant.token_version + 1)
    )


def add_quality(session: AsyncSession, sample: QualitySample) -> None:
    session.add(sample)


async def touch_seat(session: AsyncSession, *, participant_id: uuid.UUID, connection_id: str,
                     now: datetime) -> int:
    """A heartbeat: ``last_seen_at = now`` if ``connection_id`` still holds the seat (no
    ``rev`` bump, no event: nothing anyone sees changed). Returns the rows updated."""
    result = await session.execute(
        update(Participant)
        .where(Participant.id == participant_id, Participant.connection_id == connection_id,
               Participant.connected.is_(True))
        .values(last_seen_at=now)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)


async def stale_seats(session: AsyncSession, *, seen_before: datetime,
                      limit: int) -> Sequence[tuple[Participant, Visit]]:
    """Seats still marked connected whose socket has not been heard from since
    ``seen_before`` (its web process died), locked; on PostgreSQL rows another sweep holds
    are skipped rather than waited for."""
    stmt = (
        select(Participant, Visit)
        .join(Visit, Visit.id == Participant.visit_id)
        .where(Participant.connected.is_(True),
               or_(Participant.last_seen_at.is_(None), Participant.last_seen_at < seen_before))
        .order_by(Participant.last_seen_at)
        .limit(limit)
        .with_for_update(of=Participant, skip_locked=True)
        .execution_options(populate_existing=True)
    )
    return [(row[0], row[1]) for row in (await session.execute(stmt)).all()]


async def has_event(session: AsyncSession, *, participant_id: uuid.UUID, kind: str) -> bool:
    """Whether the seat already has an event of ``kind`` (ix_visit_event_participant_kind)."""
    stmt = select(VisitEvent.id).where(VisitEvent.participant_id == participant_id,
                                       VisitEvent.kind == kind).limit(1)
    return (await session.execute(stmt)).first() is not None


async def visit_has_event(session: AsyncSession, *, visit_id: uuid.UUID, kind: str) -> bool:
    """Whether the visit has an event of ``kind`` (ix_visit_event_visit_at)."""
    stmt = select(VisitEvent.id).where(VisitEvent.visit_id == visit_id,
                                       VisitEvent.kind == kind).limit(1)
    return (await session.execute(stmt)).first() is not None


async def clinician_visits(
    session: AsyncSession, *, organisation_id: uuid.UUID, ehr_user_id: str, since: datetime,
    until: datetime, staff_roles: Collection[str], skip_statuses: Collection[str], limit: int,
    visit_id: uuid.UUID | None = None,
) -> Sequence[tuple[Visit, Appointment | None]]:
    """The organisation's visits (not device tests) between ``since`` and ``until`` (by the
    appointment's start, else the visit's window or creation) where ``ehr_user_id`` holds a
    staff seat or is the appointment's provider; by time. ``visit_id`` narrows to one."""
    has_seat = (
        select(Participant.id)
        .where(Participant.visit_id == Visit.id, Participant.role.in_(staff_roles),
               Participant.ehr_user_id == ehr_user_id)
        .exists()
    )
    when = func.coalesce(Appointment.start_at, Visit.window_start, Visit.created_at)
    stmt = (
        select(Visit, Appointment)
        .outerjoin(Appointment, Appointment.id == Visit.appointment_id)
        .where(Visit.organisation_id == organisation_id, Visit.kind == "visit",
               or_(Appointment.provider_ehr_id == ehr_user_id, has_seat),
               or_(Appointment.id.is_(None), Appointment.status.not_in(skip_statuses)),
               when >= since, when < until)
        .order_by(when, Visit.id)
        .limit(limit)
    )
    if visit_id is not None:
        stmt = stmt.where(Visit.id == visit_id)
    return [(row[0], row[1]) for row in (await session.execute(stmt)).all()]


async def organisation_visits(
    session: AsyncSession, *, organisation_id: uuid.UUID, since: datetime, until: datetime,
    skip_statuses: Collection[str], limit: int,
) -> Sequence[tuple[Visit, Appointment | None]]:
    """The organisation's visits (not device tests) between ``since`` and ``until``, by
    time (the front desk's queue; :func:`clinician_visits` narrowed to no one)."""
    when = func.coalesce(Appointment.start_at, Visit.window_start, Visit.created_at)
    stmt = (
        select(Visit, Appointment)
        .outerjoin(Appointment, Appointment.id == Visit.appointment_id)
        .where(Visit.organisation_id == organisation_id, Visit.kind == "visit",
               or_(Appointment.id.is_(None), Appointment.status.not_in(skip_statuses)),
               when >= since, when < until)
        .order_by(when, Visit.id)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in (await session.execute(stmt)).all()]


async def participants_of_visits(session: AsyncSession, visit_ids: Collection[uuid.UUID],
                                 ) -> dict[uuid.UUID, list[Participant]]:
    """Every seat of the given visits, by visit."""
    out: dict[uuid.UUID, list[Participant]] = {}
    if not visit_ids:
        return out
    stmt = (select(Participant).where(Participant.visit_id.in_(list(visit_ids)))
            .order_by(Participant.role, Participant.seat_no))
    for seat in (await session.execute(stmt)).scalars():
        out.setdefault(seat.visit_id, []).append(seat)
    return out


# -------------------------------------------------------------------- chat (issue 15 item 5)

def add_chat_message(session: AsyncSession, message: ChatMessage) -> None:
    session.add(message)


async def chat_messages_of(session: AsyncSession, visit_id: uuid.UUID) -> Sequence[ChatMessage]:
    """The visit's stored chat messages, oldest first."""
    rows = await session.execute(select(ChatMessage).where(ChatMessage.visit_id == visit_id)
                                 .order_by(ChatMessage.at, ChatMessage.id))
    return rows.scalars().all()


async def set_chat_purge_at(session: AsyncSession, *, visit_id: uuid.UUID,
                            purge_at: datetime) -> None:
    """Bring the purge time of the visit's stored chat forward to ``purge_at``."""
    await session.execute(update(ChatMessage)
                          .where(ChatMessage.visit_id == visit_id,
                                 ChatMessage.purge_at > purge_at)
                          .values(purge_at=purge_at)
                          .execution_options(synchronize_session=False))


async def purge_chat(session: AsyncSession, *, now: datetime) -> int:
    """Delete stored chat messages whose time is up; how many."""
    result = await session.execute(delete(ChatMessage).where(ChatMessage.purge_at <= now)
                                   .execution_options(synchronize_session=False))
    return rowcount(result)

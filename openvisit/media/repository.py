"""Queries of the media package: a seat with its visit, locked while its grant changes."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.models.visit import Participant, Visit


async def locked_seat(session: AsyncSession,
                      participant_id: uuid.UUID) -> tuple[Participant, Visit] | None:
    """The seat (row locked on PostgreSQL, so grant jobs of one seat run one at a time)."""
    stmt = (
        select(Participant, Visit)
        .join(Visit, Visit.id == Participant.visit_id)
        .where(Participant.id == participant_id)
        .with_for_update(of=Participant)
        .execution_options(populate_existing=True)
    )
    row = (await session.execute(stmt)).first()
    return (row[0], row[1]) if row is not None else None


async def visit_by_id(session: AsyncSession, visit_id: uuid.UUID) -> Visit | None:
    return await session.get(Visit, visit_id)


async def live_rooms(session: AsyncSession) -> list[tuple[str, int]]:
    """``(media backend, seats in the call and connected)`` for each active visit with any."""
    stmt = (
        select(Visit.media_backend, func.count())
        .select_from(Participant)
        .join(Visit, Visit.id == Participant.visit_id)
        .where(Visit.status == "active", Participant.lobby_state == "admitted",
               Participant.connected.is_(True))
        .group_by(Visit.id, Visit.media_backend)
    )
    return [(str(row[0]), int(row[1])) for row in (await session.execute(stmt)).all()]

"""Queries of the media package: a seat with its visit, locked while its grant changes."""

from __future__ import annotations

import uuid

from sqlalchemy import select
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

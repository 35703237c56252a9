"""The queries of write-back: order within a visit, portal lists (waking the next write's job
is :func:`openvisit.jobs.wake`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.models import Job, Writeback

DONE = ("sent", "skipped")
WAITING = ("pending", "retrying", "blocked")


async def predecessor(session: AsyncSession, row: Writeback) -> Writeback | None:
    """The earliest write of the same visit before ``row`` that has not landed yet."""
    found = await session.scalars(
        select(Writeback).where(Writeback.order_key == row.order_key, Writeback.id < row.id,
                                Writeback.state.not_in(DONE))
        .order_by(Writeback.id).limit(1))
    return found.first()


async def successor(session: AsyncSession, row: Writeback) -> Writeback | None:
    """The next write of the same visit after ``row`` still waiting to be sent."""
    found = await session.scalars(
        select(Writeback).where(Writeback.order_key == row.order_key, Writeback.id > row.id,
                                Writeback.state.in_(WAITING))
        .order_by(Writeback.id).limit(1))
    return found.first()


async def job_due_at(session: AsyncSession, job_key: str) -> datetime | None:
    """When the job of a write runs next (None when it is not pending)."""
    found = await session.scalars(
        select(Job.due_at).where(Job.idempotency_key == job_key, Job.state == "pending"))
    return found.first()


async def by_key(session: AsyncSession, key: str) -> Writeback | None:
    found = await session.scalars(select(Writeback).where(Writeback.key == key))
    return found.first()


async def recent(session: AsyncSession, *, endpoint_id: uuid.UUID,
                 limit: int) -> Sequence[Writeback]:
    found = await session.scalars(
        select(Writeback).where(Writeback.endpoint_id == endpoint_id)
        .order_by(Writeback.id.desc()).limit(limit))
    return found.all()


async def for_order_key(session: AsyncSession, order_key: str) -> Sequence[Writeback]:
    found = await session.scalars(
        select(Writeback).where(Writeback.order_key == order_key).order_by(Writeback.id))
    return found.all()


async def count_failed(session: AsyncSession) -> int:
    found = await session.scalar(
        select(func.count()).select_from(Writeback).where(Writeback.state == "failed"))
    return int(found or 0)


async def state_counts(session: AsyncSession, *, endpoint_id: uuid.UUID) -> dict[str, int]:
    """How many of the endpoint's write-backs are in each state."""
    found = await session.execute(
        select(Writeback.state, func.count()).where(Writeback.endpoint_id == endpoint_id)
        .group_by(Writeback.state))
    return {str(state): int(n) for state, n in found.all()}

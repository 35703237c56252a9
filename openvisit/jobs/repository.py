"""Every query of the job table: the queue's (enqueue, cancel, list) and the worker's (claim
with a lease, renew, complete, fail).

Every state change after the claim is conditional on ``locked_by`` and ``attempts``: a worker
whose lease expired (it stalled, or was presumed dead) can no longer touch the job that
another worker has taken over.

A running job's ``due_at`` is the one it was claimed at, until :func:`wake` moves it to the
moment of the wake: the deferral the run ends with (:func:`defer`) then keeps it, so a wake
that arrives while the handler is deciding to wait is not lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.db import insert_ignoring_conflicts, rowcount
from openvisit.models import Job


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    payload: dict[str, Any]
    idempotency_key: str
    attempt: int
    max_attempts: int
    #: When the job was due as claimed (a later value in the row means it was woken since).
    due_at: datetime


def _claimable(now: datetime) -> Any:
    return or_(
        and_(Job.state == "pending", Job.due_at <= now),
        and_(Job.state == "running", Job.lease_until < now),
    )


async def claim(
    session: AsyncSession, *, worker_id: str, now: datetime, lease: timedelta, limit: int
) -> list[ClaimedJob]:
    """Atomically take up to ``limit`` due jobs (and jobs whose lease expired).

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` so concurrent workers never take the same row and
    never wait on each other. SQLite ignores the clause; its single writer serialises claims.
    """
    candidates = (
        select(Job.id)
        .where(_claimable(now))
        .order_by(Job.due_at, Job.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    result = await session.execute(
        update(Job)
        .where(Job.id.in_(candidates), _claimable(now))
        .values(
            state="running",
            attempts=Job.attempts + 1,
            locked_by=worker_id,
            lease_until=now + lease,
        )
        .returning(
            Job.id, Job.kind, Job.payload, Job.idempotency_key, Job.attempts, Job.max_attempts,
            Job.due_at,
        )
        .execution_options(synchronize_session=False)
    )
    return [ClaimedJob(*row) for row in result.all()]


def _mine(job: ClaimedJob, worker_id: str) -> Any:
    return and_(
        Job.id == job.id,
        Job.locked_by == worker_id,
        Job.attempts == job.attempt,
        Job.state == "running",
    )


async def renew(
    session: AsyncSession, job: ClaimedJob, *, worker_id: str, lease_until: datetime
) -> bool:
    """Extend the lease of a job still running here; False if it was taken over."""
    result = await session.execute(
        update(Job)
        .where(_mine(job, worker_id))
        .values(lease_until=lease_until)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) > 0


async def complete(
    session: AsyncSession, job: ClaimedJob, *, worker_id: str, now: datetime
) -> bool:
    result = await session.execute(
        update(Job)
        .where(_mine(job, worker_id))
        .values(state="done", finished_at=now, lease_until=None, last_error=None)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) > 0


async def fail(
    session: AsyncSession,
    job: ClaimedJob,
    *,
    worker_id: str,
    now: datetime,
    error: str,
    retry_at: datetime | None,
) -> bool:
    """Record a failure: back to pending at ``retry_at``, or dead when ``retry_at`` is None."""
    values: dict[str, Any] = {"last_error": error[:2000], "lease_until": None, "locked_by": None}
    if retry_at is None:
        values.update(state="dead", finished_at=now)
    else:
        values.update(state="pending", due_at=retry_at)
    result = await session.execute(
        update(Job)
        .where(_mine(job, worker_id))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) > 0


async def defer(
    session: AsyncSession, job: ClaimedJob, *, worker_id: str, until: datetime, reason: str
) -> bool:
    """Put the job back to pending at ``until`` and give back the attempt it used; at the
    time of a :func:`wake` instead when one came while it ran and that is sooner."""
    woken = and_(Job.due_at > job.due_at, Job.due_at < until)
    result = await session.execute(
        update(Job)
        .where(_mine(job, worker_id))
        .values(
            state="pending",
            due_at=case((woken, Job.due_at), else_=until),
            attempts=Job.attempts - 1,
            locked_by=None,
            lease_until=None,
            last_error=f"deferred: {reason}"[:2000],
        )
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) > 0


async def wake(session: AsyncSession, idempotency_key: str, *, now: datetime) -> int:
    """Make the job of this key due at ``now``: a pending one waiting for later runs now; a
    running one, should it defer, is due at ``now`` rather than when it asks (see
    :func:`defer`). Returns how many jobs it changed (0 or 1)."""
    result = await session.execute(
        update(Job)
        .where(
            Job.idempotency_key == idempotency_key,
            or_(
                and_(Job.state == "pending", Job.due_at > now),
                and_(Job.state == "running", Job.due_at < now),
            ),
        )
        .values(due_at=now)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)


async def counts_by_state(session: AsyncSession) -> dict[str, int]:
    """How many jobs are in each state (states without jobs are absent)."""
    rows = await session.execute(select(Job.state, func.count()).group_by(Job.state))
    return {state: count for state, count in rows.all()}


# ------------------------------------------------------------------------------ the queue

async def job_by_key(session: AsyncSession, idempotency_key: str) -> Job | None:
    return await session.scalar(select(Job).where(Job.idempotency_key == idempotency_key))


async def insert_many(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert job rows in one statement, skipping those whose idempotency key is taken."""
    await insert_ignoring_conflicts(session, Job, rows, on=("idempotency_key",))


async def cancel_pending(session: AsyncSession, idempotency_keys: list[str], *,
                         now: datetime, refresh_loaded: bool = False) -> int:
    """Cancel the jobs of these keys that have not started; returns how many were.

    ``refresh_loaded`` also updates jobs this session already holds (costly for long lists).
    """
    result = await session.execute(
        update(Job)
        .where(Job.idempotency_key.in_(idempotency_keys), Job.state == "pending")
        .values(state="cancelled", finished_at=now)
        .execution_options(synchronize_session="auto" if refresh_loaded else False)
    )
    return rowcount(result)


async def latest(session: AsyncSession, *, state: str | None, kind: str | None,
                 limit: int) -> list[Job]:
    """The newest ``limit`` jobs, optionally of one state and/or kind."""
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if state:
        query = query.where(Job.state == state)
    if kind:
        query = query.where(Job.kind == kind)
    return list((await session.scalars(query)).all())

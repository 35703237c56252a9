"""Enqueue, cancel and re-run jobs inside the caller's transaction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.errors import InvalidInput, NotFound
from openvisit.jobs import repository
from openvisit.models import Job, utcnow


async def enqueue(
    session: AsyncSession,
    kind: str,
    *,
    payload: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    due_at: datetime | None = None,
    max_attempts: int = 8,
) -> Job:
    """Add a job to the caller's transaction; it exists only if that transaction commits.

    With an ``idempotency_key`` that is already taken, the existing job is returned and
    nothing new is written: enqueueing the same effect twice cannot send it twice.
    """
    key = idempotency_key or f"{kind}:{uuid.uuid4()}"
    existing = await repository.job_by_key(session, key)
    if existing is not None:
        return existing
    job = Job(
        kind=kind,
        payload=payload or {},
        idempotency_key=key,
        due_at=due_at or utcnow(),
        max_attempts=max_attempts,
    )
    try:
        async with session.begin_nested():
            session.add(job)
            await session.flush()
    except IntegrityError:
        # Another transaction took the key between our look-up and insert.
        existing = await repository.job_by_key(session, key)
        if existing is None:
            raise
        return existing
    session.info["openvisit.jobs_enqueued"] = True
    return job


def job_row(
    kind: str,
    *,
    idempotency_key: str,
    payload: dict[str, Any] | None = None,
    due_at: datetime | None = None,
    max_attempts: int = 8,
    now: datetime | None = None,
) -> dict[str, Any]:
    """One row for :func:`enqueue_many` (every column named, as a bulk insert needs)."""
    now = now or utcnow()
    return {
        "kind": kind,
        "payload": payload or {},
        "idempotency_key": idempotency_key,
        "state": "pending",
        "due_at": due_at or now,
        "attempts": 0,
        "max_attempts": max_attempts,
        "created_at": now,
        "finished_at": None,
    }


async def enqueue_many(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """:func:`enqueue` for many jobs in one statement (rows from :func:`job_row`).

    A row whose idempotency key is already taken is skipped, exactly as :func:`enqueue`
    returns the existing job: the same effect enqueued twice still runs once.
    """
    if not rows:
        return
    await repository.insert_many(session, rows)
    session.info["openvisit.jobs_enqueued"] = True


async def cancel_many(session: AsyncSession, idempotency_keys: list[str]) -> int:
    """:func:`cancel` for many keys in one statement; returns how many were cancelled."""
    if not idempotency_keys:
        return 0
    return await repository.cancel_pending(session, idempotency_keys, now=utcnow())


async def cancel(session: AsyncSession, *, idempotency_key: str) -> bool:
    """Cancel a job that has not started; returns whether one was cancelled."""
    cancelled = await repository.cancel_pending(
        session, [idempotency_key], now=utcnow(), refresh_loaded=True)
    return cancelled > 0


async def wake(session: AsyncSession, *, idempotency_key: str) -> bool:
    """Run the job of this key now rather than at its ``due_at`` (it was waiting for
    something that has just happened). A job running right now that then defers (``Defer``)
    is due now instead of when it asked. Workers are woken after the caller's commit. Returns
    whether a job was changed."""
    woken = await repository.wake(session, idempotency_key, now=utcnow()) > 0
    if woken:
        session.info["openvisit.jobs_enqueued"] = True
    return woken


async def retry_dead(session: AsyncSession, job_id: int) -> Job:
    """Put a dead-lettered job back in the queue with a fresh attempt budget."""
    job = await session.get(Job, job_id)
    if job is None:
        raise NotFound(f"There is no job {job_id}.")
    if job.state != "dead":
        raise InvalidInput(f"Job {job_id} is {job.state}, not dead; only dead jobs are re-run.")
    job.state = "pending"
    job.attempts = 0
    job.due_at = utcnow()
    job.locked_by = None
    job.lease_until = None
    session.info["openvisit.jobs_enqueued"] = True
    await session.flush()
    return job


async def list_jobs(
    session: AsyncSession, *, state: str | None = None, kind: str | None = None, limit: int = 50
) -> list[Job]:
    """The newest ``limit`` jobs, optionally only of one state and/or kind."""
    return await repository.latest(session, state=state, kind=kind, limit=limit)


async def counts_by_state(session: AsyncSession) -> dict[str, int]:
    """How many jobs are in each state (for the metrics page)."""
    return await repository.counts_by_state(session)

"""Expired launch states and nonces are deleted by a periodic, bounded, idempotent job."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from openvisit import nonces
from openvisit.context import AppContext
from openvisit.jobs.registry import load_modules, periodic_jobs
from openvisit.jobs.service import enqueue
from openvisit.jobs.worker import Worker
from openvisit.launch.tasks import PURGE_KIND
from openvisit.models import Job, SeenNonce, utcnow


async def _seed(ctx: AppContext, *, expired: int, live: int) -> None:
    async with ctx.transaction() as session:
        for i in range(expired):
            await nonces.put(session, scope="smart_state", value=f"old-{i}", data={},
                             ttl=timedelta(minutes=-(i + 1)))
        for i in range(live):
            await nonces.put(session, scope="idp_state", value=f"live-{i}", data={"i": i},
                             ttl=timedelta(minutes=10))


async def _left(ctx: AppContext) -> dict[str, int]:
    async with ctx.transaction() as session:
        rows = await session.execute(
            select(SeenNonce.scope, func.count()).group_by(SeenNonce.scope))
        return {scope: int(count) for scope, count in rows.all()}


async def test_it_deletes_expired_nonces_in_bounded_batches_oldest_first(ctx: AppContext) -> None:
    await _seed(ctx, expired=7, live=3)
    async with ctx.transaction() as session:
        assert await nonces.purge_expired(session, limit=5) == 5
    async with ctx.transaction() as session:
        # The five oldest went (expired 3..7 minutes ago); the two most recent remain.
        kept = (await session.scalars(select(SeenNonce.expires_at).where(
            SeenNonce.scope == "smart_state"))).all()
        assert len(kept) == 2 and all(at > utcnow() - timedelta(minutes=2, seconds=30)
                                      for at in kept)
    async with ctx.transaction() as session:
        assert await nonces.purge_expired(session, limit=5) == 2
    async with ctx.transaction() as session:
        assert await nonces.purge_expired(session, limit=5) == 0  # idempotent
    assert await _left(ctx) == {"idp_state": 3}
    async with ctx.transaction() as session:
        assert await nonces.take(session, scope="idp_state", value="live-1") == {"i": 1}


async def test_it_runs_the_purge_as_a_periodic_job_of_the_worker(ctx: AppContext) -> None:
    load_modules([])
    assert periodic_jobs()[PURGE_KIND] <= timedelta(hours=1)
    await _seed(ctx, expired=4, live=1)
    async with ctx.transaction() as session:
        await enqueue(session, PURGE_KIND, idempotency_key="periodic:test:1")
        await enqueue(session, PURGE_KIND, idempotency_key="periodic:test:2")  # twice is fine
    await Worker(ctx).run_until_empty(timeout=30)
    assert await _left(ctx) == {"idp_state": 1}
    async with ctx.transaction() as session:
        states = (await session.scalars(select(Job.state).where(Job.kind == PURGE_KIND))).all()
    assert list(states) == ["done", "done"]

"""Durable jobs in one process: enqueue-in-transaction, retry, dead letter, scheduling."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from openvisit.context import AppContext
from openvisit.jobs import cancel, enqueue, retry_dead, wake
from openvisit.jobs.worker import Worker, backoff_delay
from openvisit.models import Job, utcnow
from tests.support.backend import make_settings
from tests.support.sink import Sink


@pytest.fixture
async def app(settings, ctx: AppContext) -> AppContext:  # type: ignore[no-untyped-def]
    ctx.settings = make_settings(
        settings.database_url, redis_url=settings.redis_url, job_modules=["tests.support.sinkjobs"]
    )
    return ctx


async def test_it_writes_a_job_only_when_the_transaction_commits(app: AppContext) -> None:
    with pytest.raises(RuntimeError):
        async with app.transaction() as session:
            await enqueue(session, "test.sink", payload={"url": "x"})
            raise RuntimeError("the change failed")
    async with app.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Job)) == 0
        await enqueue(session, "test.sink", payload={"url": "x"})
    async with app.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Job)) == 1


async def test_it_enqueues_an_idempotency_key_once(app: AppContext) -> None:
    async with app.transaction() as session:
        first = await enqueue(session, "test.sink", idempotency_key="sms:appt-1:confirm")
    async with app.transaction() as session:
        second = await enqueue(session, "test.sink", idempotency_key="sms:appt-1:confirm")
        assert second.id == first.id
        assert await session.scalar(select(func.count()).select_from(Job)) == 1


async def test_it_runs_a_job_and_passes_its_idempotency_key_outside(app: AppContext) -> None:
    with Sink() as sink:
        async with app.transaction() as session:
            await enqueue(session, "test.sink", payload={"url": sink.url}, idempotency_key="k-1")
        await Worker(app).run_until_empty(timeout=10)
        assert sink.keys_requested() == ["k-1"]
    async with app.transaction() as session:
        job = await session.scalar(select(Job))
        assert job is not None and job.state == "done" and job.attempts == 1


async def test_it_retries_a_passing_failure_with_backoff(app: AppContext) -> None:
    with Sink() as sink:
        sink.fail_next = 2
        async with app.transaction() as session:
            await enqueue(session, "test.sink", payload={"url": sink.url})
        worker = Worker(app)
        for _ in range(40):
            await worker.run_until_empty(timeout=5)
            async with app.transaction() as session:
                job = await session.scalar(select(Job))
            assert job is not None
            if job.state == "done":
                break
            import asyncio

            await asyncio.sleep(0.05)
        assert job.state == "done" and job.attempts == 3
        assert len(sink.requests) == 3 and sum(sink.applied.values()) == 1


async def test_it_moves_a_job_to_the_dead_letter_after_max_attempts(app: AppContext) -> None:
    async with app.transaction() as session:
        job = await enqueue(session, "test.fail", max_attempts=3)
        job_id = job.id
    worker = Worker(app)
    import asyncio

    for _ in range(100):
        await worker.run_until_empty(timeout=5)
        async with app.transaction() as session:
            row = await session.get(Job, job_id)
        assert row is not None
        if row.state == "dead":
            break
        await asyncio.sleep(0.05)
    assert row.state == "dead" and row.attempts == 3
    assert row.last_error and "told to fail" in row.last_error
    async with app.transaction() as session:
        again = await retry_dead(session, job_id)
        assert again.state == "pending" and again.attempts == 0


async def test_it_dead_letters_a_permanent_failure_at_once(app: AppContext) -> None:
    async with app.transaction() as session:
        job = await enqueue(session, "test.fail", payload={"permanent": True})
        job_id = job.id
    await Worker(app).run_until_empty(timeout=5)
    async with app.transaction() as session:
        row = await session.get(Job, job_id)
        assert row is not None and row.state == "dead" and row.attempts == 1


async def test_it_holds_a_scheduled_job_until_it_is_due(app: AppContext) -> None:
    with Sink() as sink:
        async with app.transaction() as session:
            await enqueue(
                session,
                "test.sink",
                payload={"url": sink.url},
                due_at=utcnow() + timedelta(hours=1),
                idempotency_key="later",
            )
            await enqueue(
                session,
                "test.sink",
                payload={"url": sink.url},
                due_at=utcnow() - timedelta(seconds=1),
                idempotency_key="now",
            )
        await Worker(app).run_until_empty(timeout=5)
        assert sink.keys_requested() == ["now"]
    async with app.transaction() as session:
        assert await cancel(session, idempotency_key="later") is True
        assert await cancel(session, idempotency_key="now") is False


async def test_it_does_not_let_a_worker_that_lost_its_lease_complete_the_job(
    app: AppContext,
) -> None:
    from openvisit.jobs import repository

    async with app.transaction() as session:
        await enqueue(session, "test.fail")
    now = utcnow()
    async with app.transaction() as session:
        [mine] = await repository.claim(
            session, worker_id="a", now=now, lease=timedelta(seconds=1), limit=5
        )
    later = now + timedelta(seconds=2)
    async with app.transaction() as session:
        [theirs] = await repository.claim(
            session, worker_id="b", now=later, lease=timedelta(seconds=30), limit=5
        )
    assert theirs.id == mine.id and theirs.attempt == 2
    async with app.transaction() as session:
        assert await repository.complete(session, mine, worker_id="a", now=later) is False
        assert await repository.complete(session, theirs, worker_id="b", now=later) is True


def test_it_spreads_retries_with_jitter_under_a_cap() -> None:
    delays = [backoff_delay(4, base=5, cap=3600) for _ in range(200)]
    assert all(20 <= d <= 40 for d in delays) and len(set(delays)) > 150
    assert backoff_delay(30, base=5, cap=60) <= 60


async def test_it_defers_a_job_without_spending_an_attempt(app: AppContext) -> None:
    until = utcnow() + timedelta(hours=2)
    async with app.transaction() as session:
        job = await enqueue(session, "test.defer", payload={"until": until.isoformat()})
        job_id = job.id
    await Worker(app).run_until_empty(timeout=5)
    async with app.transaction() as session:
        row = await session.get(Job, job_id)
        assert row is not None
        assert (row.state, row.attempts, row.due_at) == ("pending", 0, until)
        assert row.last_error == "deferred: quiet hours"


async def test_it_wakes_a_job_that_waits_for_later(app: AppContext) -> None:
    async with app.transaction() as session:
        await enqueue(session, "test.defer", idempotency_key="behind",
                      due_at=utcnow() + timedelta(hours=1))
        await enqueue(session, "test.defer", idempotency_key="done", payload={"done": True})
    await Worker(app).run_until_empty(timeout=5)
    async with app.transaction() as session:
        assert await wake(session, idempotency_key="behind") is True
        assert session.info.get("openvisit.jobs_enqueued")  # workers woken after commit
        assert await wake(session, idempotency_key="done") is False  # finished: untouched
    await Worker(app).run_until_empty(timeout=5)
    async with app.transaction() as session:
        states = dict((await session.execute(select(Job.idempotency_key, Job.state))).all())
    assert states == {"behind": "done", "done": "done"}


@pytest.mark.parametrize("woken", [True, False])
async def test_it_keeps_a_wake_that_comes_while_the_job_decides_to_defer(
    app: AppContext, woken: bool
) -> None:
    """The handler read "not yet", the thing it waits for happened and woke it, then it
    deferred: it is due at the wake, not at the time it asked (else the wake is lost)."""
    from openvisit.jobs import repository

    async with app.transaction() as session:
        await enqueue(session, "test.defer", idempotency_key="k")
    async with app.transaction() as session:
        [job] = await repository.claim(
            session, worker_id="a", now=utcnow(), lease=timedelta(seconds=30), limit=1
        )
    if woken:
        async with app.transaction() as session:
            assert await wake(session, idempotency_key="k") is True
    woke = utcnow()
    until = woke + timedelta(hours=1)
    async with app.transaction() as session:
        assert await repository.defer(session, job, worker_id="a", until=until, reason="x")
    async with app.transaction() as session:
        row = await session.scalar(select(Job))
        assert row is not None and row.state == "pending" and row.attempts == 0
        assert (row.due_at <= woke) if woken else (row.due_at == until)

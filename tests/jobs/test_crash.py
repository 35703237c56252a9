"""Durable jobs across real worker processes: kill -9, leases, two workers, 10,000 jobs."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from openvisit.db import Database
from openvisit.jobs import enqueue
from openvisit.models import Job, utcnow
from tests.support.backend import BACKEND, subprocess_env
from tests.support.procs import Proc, wait_for
from tests.support.sink import Sink

WORKER_ENV = {
    "OPENVISIT_JOB_MODULES": '["tests.support.sinkjobs"]',
    "OPENVISIT_JOB_LEASE_SECONDS": "2",
    "OPENVISIT_JOB_POLL_SECONDS": "0.1",
    "OPENVISIT_JOB_BACKOFF_BASE_SECONDS": "0.1",
}


async def _enqueue(db_url: str, kind: str, payloads: list[dict[str, object]]) -> None:
    db = Database(db_url)
    async with db.transaction() as session:
        for i, payload in enumerate(payloads):
            await enqueue(session, kind, payload=payload, idempotency_key=f"{kind}:{i}")
    await db.dispose()


async def _bulk_enqueue(db_url: str, kind: str, payload: dict[str, object], n: int) -> None:
    db = Database(db_url)
    async with db.transaction() as session:
        await session.execute(
            insert(Job),
            [
                {
                    "kind": kind,
                    "payload": payload,
                    "idempotency_key": f"{kind}:{i}",
                    "state": "pending",
                    "due_at": utcnow(),
                    "attempts": 0,
                    "max_attempts": 8,
                    "created_at": utcnow(),
                }
                for i in range(n)
            ],
        )
    await db.dispose()


async def _states(db_url: str) -> Counter[str]:
    db = Database(db_url)
    async with db.transaction() as session:
        # Only this test's jobs: workers also schedule the product's periodic jobs.
        rows = await session.execute(
            select(Job.state, func.count()).where(Job.kind.like("test.%")).group_by(Job.state)
        )
        result = Counter({state: count for state, count in rows.all()})
    await db.dispose()
    return result


@pytest.mark.parametrize("stall", ["stall_after_on", "stall_before_on"])
def test_it_retakes_a_job_after_kill_9_and_its_effect_happens_once(
    db_url: str, tmp_path: Path, stall: str
) -> None:
    """Killed after (or before) the outside call: the job runs again after its lease and the
    outside system, told the same idempotency key, applies the effect exactly once."""
    env = subprocess_env(db_url, **WORKER_ENV)
    with Sink() as sink:
        asyncio.run(_enqueue(db_url, "test.sink", [{"url": sink.url, stall: [1]}]))
        first = Proc(["worker"], env=env, log=tmp_path / "worker1.log")
        try:
            if stall == "stall_after_on":
                wait_for(
                    lambda: len(sink.requests) == 1,
                    timeout=30,
                    what="the first attempt's outside call",
                    proc=first,
                )
            else:
                wait_for(
                    lambda: asyncio.run(_states(db_url))["running"] == 1,
                    timeout=30,
                    what="the job to be claimed",
                    proc=first,
                )
            first.kill9()
        finally:
            first.stop()
        second = Proc(["worker"], env=env, log=tmp_path / "worker2.log")
        try:
            wait_for(
                lambda: asyncio.run(_states(db_url))["done"] == 1,
                timeout=30,
                what="the job to be done by the second worker",
                proc=second,
            )
        finally:
            second.stop()
        keys = sink.keys_requested()
        expected_requests = 2 if stall == "stall_after_on" else 1
        assert len(keys) == expected_requests and len(set(keys)) == 1
        assert sink.applied == Counter({"test.sink:0": 1})
    assert "attempt=2" in second.tail(200)


@pytest.mark.skipif(BACKEND != "postgres", reason="SKIP LOCKED contention is a PostgreSQL matter")
def test_it_never_runs_a_job_in_two_workers_and_drains_10000(db_url: str, tmp_path: Path) -> None:
    effects = tmp_path / "effects.log"
    total = 10_000
    asyncio.run(_bulk_enqueue(db_url, "test.append", {"path": str(effects)}, total))
    env = subprocess_env(
        db_url,
        **{
            **WORKER_ENV,
            "OPENVISIT_JOB_CONCURRENCY": "16",
            "OPENVISIT_JOB_LEASE_SECONDS": "60",
            "OPENVISIT_LOG_LEVEL": "WARNING",
        },
    )
    workers = [Proc(["worker"], env=env, log=tmp_path / f"w{i}.log") for i in range(2)]
    try:
        wait_for(
            lambda: asyncio.run(_states(db_url))["done"] == total,
            timeout=240,
            what=f"{total} jobs to drain",
            proc=workers[0],
        )
    finally:
        for w in workers:
            w.stop()
    ran = Counter(effects.read_text().split())
    assert len(ran) == total, "a job was lost"
    assert max(ran.values()) == 1, f"jobs run twice: {[k for k, v in ran.items() if v > 1][:5]}"
    assert asyncio.run(_states(db_url)) == Counter({"done": total})

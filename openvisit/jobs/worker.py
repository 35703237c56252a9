"""The worker loop: claim, run with a renewed lease, complete or retry.

Run by ``openvisit worker`` (any number of processes) and inside ``openvisit serve``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter, Histogram

from openvisit.context import JOBS_CHANNEL, AppContext
from openvisit.errors import OpenVisitError
from openvisit.jobs import repository
from openvisit.jobs.registry import Defer, JobContext, get_handler, load_modules, periodic_jobs
from openvisit.jobs.service import enqueue
from openvisit.logs import get_logger, scrub
from openvisit.models import utcnow

log = get_logger(__name__)

JOBS_RUN = Counter("openvisit_jobs_total", "Jobs run, by kind and outcome", ["kind", "outcome"])
JOB_SECONDS = Histogram("openvisit_job_seconds", "Job run time", ["kind"])


class LeaseLost(Exception):
    """Another worker took the job over; this run's database work is rolled back."""


def backoff_delay(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff with jitter: between half and all of ``base * 2**(attempt-1)``.

    The jitter spreads retries of many jobs that failed together (an SMS provider outage)
    so they do not all hit the provider again at the same instant.
    """
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return float(ceiling / 2 + random.uniform(0, ceiling / 2))


def describe_error(exc: BaseException) -> tuple[str, bool]:
    """A PHI-free description for the job row, and whether the failure is permanent."""
    if isinstance(exc, OpenVisitError):
        return f"{exc.code}: {scrub(exc.message)}", exc.permanent
    return f"{type(exc).__name__}: {scrub(str(exc))[:500]}", False


class Worker:
    """Claims and runs jobs until ``stop`` is set."""

    def __init__(
        self,
        app: AppContext,
        *,
        worker_id: str | None = None,
        concurrency: int | None = None,
        lease_seconds: float | None = None,
        poll_seconds: float | None = None,
    ) -> None:
        settings = app.settings
        self.app = app
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.concurrency = concurrency or settings.job_concurrency
        self.lease = timedelta(seconds=lease_seconds or settings.job_lease_seconds)
        self.poll = poll_seconds or settings.job_poll_seconds
        self._running: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._last_periodic = 0.0
        load_modules(settings.job_modules)

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until ``stop``; on stop, finish the jobs in hand before returning."""
        log.info("worker_started", worker=self.worker_id, concurrency=self.concurrency)
        async with self.app.bus.subscribe(JOBS_CHANNEL) as wakeups:
            listener = asyncio.create_task(self._listen(wakeups))
            try:
                while not stop.is_set():
                    await self._schedule_periodic()
                    claimed = await self.claim_and_start()
                    if claimed == 0:
                        await self._idle(stop)
            finally:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
                if self._running:
                    await asyncio.gather(*self._running, return_exceptions=True)
        log.info("worker_stopped", worker=self.worker_id)

    async def _listen(self, wakeups: object) -> None:
        from openvisit.bus import Subscription

        assert isinstance(wakeups, Subscription)
        async for _ in wakeups:
            self._wake.set()

    async def _idle(self, stop: asyncio.Event) -> None:
        self._wake.clear()
        waiters: set[asyncio.Future[Any]] = {
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(stop.wait()),
            *self._running,
        }
        _done, pending = await asyncio.wait(
            waiters, timeout=self.poll, return_when=asyncio.FIRST_COMPLETED
        )
        for fut in pending:
            if fut not in self._running:
                fut.cancel()

    async def claim_and_start(self) -> int:
        """Claim as many jobs as there are free slots and start them; returns how many."""
        free = self.concurrency - len(self._running)
        if free <= 0:
            return 0
        async with self.app.transaction() as session:
            jobs = await repository.claim(
                session, worker_id=self.worker_id, now=utcnow(), lease=self.lease, limit=free
            )
        for job in jobs:
            task = asyncio.create_task(self.execute(job), name=f"job-{job.id}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return len(jobs)

    async def run_until_empty(self, *, timeout: float = 60.0) -> None:
        """Run jobs until none is due (tests and `openvisit worker --once`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            started = await self.claim_and_start()
            if self._running:
                await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
            elif started == 0:
                return
        raise TimeoutError("jobs still due after the timeout")

    async def execute(self, job: repository.ClaimedJob) -> None:
        """Run one claimed job to done, retry or dead letter."""
        handler = get_handler(job.kind)
        started = time.perf_counter()
        if job.attempt > job.max_attempts:
            await self._record_failure(
                job, "lease expired on the final attempt (worker lost)", permanent=True
            )
            return
        if handler is None:
            await self._record_failure(
                job, f"no handler for job kind {job.kind!r} in this worker", permanent=False
            )
            return
        renewer = asyncio.create_task(self._renew(job))
        try:
            async with self.app.transaction() as session:
                await handler(
                    JobContext(
                        job_id=job.id,
                        kind=job.kind,
                        payload=job.payload,
                        idempotency_key=job.idempotency_key,
                        attempt=job.attempt,
                        session=session,
                        app=self.app,
                    )
                )
                if not await repository.complete(
                    session, job, worker_id=self.worker_id, now=utcnow()
                ):
                    raise LeaseLost
        except Defer as deferral:
            async with self.app.transaction() as session:
                await repository.defer(
                    session,
                    job,
                    worker_id=self.worker_id,
                    until=deferral.until,
                    reason=deferral.reason,
                )
            JOBS_RUN.labels(job.kind, "deferred").inc()
            log.info("job_deferred", job_id=job.id, kind=job.kind, reason=deferral.reason)
        except LeaseLost:
            JOBS_RUN.labels(job.kind, "lease_lost").inc()
            log.warning("job_lease_lost", job_id=job.id, kind=job.kind)
        except Exception as exc:  # every failure is recorded; nothing escapes the worker
            message, permanent = describe_error(exc)
            await self._record_failure(job, message, permanent=permanent)
        else:
            JOBS_RUN.labels(job.kind, "done").inc()
            log.info("job_done", job_id=job.id, kind=job.kind, attempt=job.attempt)
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            JOB_SECONDS.labels(job.kind).observe(time.perf_counter() - started)

    async def _record_failure(
        self, job: repository.ClaimedJob, message: str, *, permanent: bool
    ) -> None:
        settings = self.app.settings
        now = utcnow()
        retry_at: datetime | None = None
        if not permanent and job.attempt < job.max_attempts:
            delay = backoff_delay(
                job.attempt,
                base=settings.job_backoff_base_seconds,
                cap=settings.job_backoff_max_seconds,
            )
            retry_at = now + timedelta(seconds=delay)
        async with self.app.transaction() as session:
            await repository.fail(
                session, job, worker_id=self.worker_id, now=now, error=message, retry_at=retry_at
            )
        outcome = "retry" if retry_at else "dead"
        JOBS_RUN.labels(job.kind, outcome).inc()
        log.warning(
            "job_failed",
            job_id=job.id,
            kind=job.kind,
            attempt=job.attempt,
            outcome=outcome,
            error_code=message.split(":", 1)[0],
        )

    async def _renew(self, job: repository.ClaimedJob) -> None:
        interval = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            try:
                async with self.app.transaction() as session:
                    kept = await repository.renew(
                        session, job, worker_id=self.worker_id, lease_until=utcnow() + self.lease
                    )
            except Exception:
                log.exception("job_lease_renew_failed", job_id=job.id)
                continue
            if not kept:
                return

    async def _schedule_periodic(self) -> None:
        """Enqueue each periodic job once per its period (the key makes it idempotent)."""
        now = time.time()
        if now - self._last_periodic < 30:
            return
        self._last_periodic = now
        jobs = periodic_jobs()
        if not jobs:
            return
        async with self.app.transaction() as session:
            for kind, every in jobs.items():
                bucket = int(now // every.total_seconds())
                await enqueue(session, kind, idempotency_key=f"periodic:{kind}:{bucket}")

"""The ``writeback.send`` job: one write into the EHR, in order per visit, never twice.

Three phases, so no transaction is open while the EHR is called (on SQLite a transaction
holds the one write lock):

1. read (no lock): the row, its endpoint, the earliest write of its visit not landed yet.
   If there is one, wait: ``Defer`` until :data:`~openvisit.writeback.service.WAIT_BEHIND`
   after that write's job runs next. The wait normally ends sooner: the write just before
   this one wakes it (:func:`openvisit.jobs.wake`, workers woken through the bus) when it
   lands, is skipped or fails for good, and a wake that comes while this job is deciding to
   wait is kept by the deferral; the timeout only bounds a wake that was lost. If the earlier
   write failed for good, this row is ``blocked``, the next one woken to block too, and the
   job ends (a re-run of the failed write unblocks them).
2. send through the endpoint's adapter with a backend-services token.
3. in the job's own transaction: the row ``sent`` with the server's ``Type/id``, and the
   next write of the visit woken. A crash before 3 runs the job again; the adapter's
   conditional create / idempotent update finds what landed.

Failures: ``retry`` with ``Retry-After`` → ``Defer`` until then (no attempt spent); other
passing faults → the row ``retrying`` with the EHR's message, the job backs off; permanent
(or out of attempts) → the row ``failed`` with the EHR's message, the job dead-letters.
"""

from __future__ import annotations

from datetime import timedelta
from typing import NoReturn

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.errors import OpenVisitError, OutboundError
from openvisit.jobs import Defer, JobContext, job_handler, wake
from openvisit.logs import get_logger
from openvisit.models import EhrEndpoint, Writeback, utcnow
from openvisit.writeback import adapter as a
from openvisit.writeback import repository as repo
from openvisit.writeback.adapters import adapter_for
from openvisit.writeback.fhir import FhirWriteError
from openvisit.writeback.service import (
    MAX_ATTEMPTS,
    SEND_JOB,
    WAIT_BEHIND,
    job_key,
    rerun,
    target_for,
)
from openvisit.writeback.settings import settings_of
from openvisit.writeback.tokens import backend_tokens

log = get_logger(__name__)

WRITES = Counter("openvisit_writeback_total", "Write-backs by profile, kind and outcome",
                 ["profile", "what", "outcome"])


async def _mark(job: JobContext, row_id: int, *, wake_next: bool = False,
                **values: object) -> None:
    """Set ``values`` on the row in a transaction of its own (and wake the next write)."""
    async with job.app.transaction() as session:
        row = await session.get(Writeback, row_id)
        if row is None:
            return
        for name, value in values.items():
            setattr(row, name, value)
        row.updated_at = utcnow()
        if wake_next:
            await _wake_next_in(job, row, session=session)


@job_handler(SEND_JOB)
async def send(job: JobContext) -> None:
    """Send one write-back row (see the module docstring)."""
    row_id = int(job.payload["row_id"])
    now = utcnow()
    async with job.app.db.read() as session:
        row = await session.get(Writeback, row_id)
        if row is None or row.state in ("sent", "skipped"):
            return
        before = await repo.predecessor(session, row)
        waits_for = await repo.job_due_at(session, job_key(before)) if before else None
        blocker = (before.id, before.state) if before is not None else None
        # The endpoint only for a row that goes now: most runs behind an earlier write
        # (a backlog after an outage) end in the Defer below.
        endpoint = await session.get(EhrEndpoint, row.endpoint_id) if before is None else None
        write = a.Write(key=row.key, what=row.what, event_kind=row.event_kind,
                        payload=job.app.refs.open_payload(row.payload))
        attempts = row.attempts
        if endpoint is not None:
            session.expunge(endpoint)
    if blocker is not None:
        if blocker[1] in ("failed", "blocked"):
            await _mark(job, row_id, state="blocked", wake_next=True,
                        error=f"Waits for write-back {blocker[0]} of the same visit, which "
                        "failed.")
            return
        raise Defer(max(now, waits_for or now) + WAIT_BEHIND,
                    reason="an earlier write of the visit is not sent yet")
    if endpoint is None:
        return
    settings = settings_of(endpoint)
    profile = settings.profile_for(endpoint)
    if not settings.enabled:
        await _mark(job, row_id, state="skipped", error="Write-back was turned off.",
                    wake_next=True)
        return
    try:
        target = await target_for(job.app, endpoint, settings)
        ref = await adapter_for(profile).write(write, target)
    except FhirWriteError as exc:
        if exc.http_status == 401:
            backend_tokens(job.app).forget(endpoint.id)
        await _failed(job, row_id, exc, attempts=attempts, profile=profile, what=write.what)
    except OpenVisitError as exc:  # the token request (SmartTokenError, discovery)
        await _failed(job, row_id, FhirWriteError(
            exc.message, outcome="permanent" if exc.permanent else "retry", http_status=None),
            attempts=attempts, profile=profile, what=write.what)
    row = await job.session.get(Writeback, row_id)
    assert row is not None
    row.state, row.server_ref, row.error = "sent", ref, None
    row.attempts, row.sent_at, row.updated_at = attempts + 1, utcnow(), utcnow()
    await _wake_next_in(job, row)
    WRITES.labels(profile, write.what, "sent").inc()
    log.info("writeback_sent", row_id=row_id, what=write.what, kind=write.event_kind)


async def _failed(job: JobContext, row_id: int, exc: FhirWriteError, *, attempts: int,
                  profile: str, what: str) -> NoReturn:
    message = exc.ehr_message or exc.message
    give_up = exc.outcome == "permanent" or job.attempt >= MAX_ATTEMPTS
    state = "failed" if give_up else "retrying"
    await _mark(job, row_id, state=state, attempts=attempts + 1, http_status=exc.http_status,
                error=exc.message if not exc.ehr_message else f"HTTP {exc.http_status}: {message}",
                wake_next=give_up)  # the writes behind it are blocked now: tell them
    WRITES.labels(profile, what, state).inc()
    log.warning("writeback_failed", row_id=row_id, what=what, outcome=exc.outcome,
                http_status=exc.http_status, final=give_up)
    if give_up:
        raise OutboundError(exc.message, permanent=True)
    if exc.retry_after is not None:
        raise Defer(utcnow() + timedelta(seconds=exc.retry_after), reason="EHR Retry-After")
    raise OutboundError(exc.message, permanent=False)


async def _wake_next_in(job: JobContext, row: Writeback, *,
                        session: AsyncSession | None = None) -> None:
    """Wake the next write of the visit: its job runs now (workers are woken after the
    commit); a blocked one gets a new job, unless ``row`` itself did not land."""
    db = session or job.session
    nxt = await repo.successor(db, row)
    if nxt is None:
        return
    if nxt.state == "blocked":
        if row.state in ("sent", "skipped"):
            await rerun(db, row_id=nxt.id)
        return
    await wake(db, idempotency_key=job_key(nxt))

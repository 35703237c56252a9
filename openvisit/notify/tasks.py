"""Job handlers of the notify package (loaded by every worker via jobs.registry).

- ``notify.send`` - one SMS or e-mail, exactly once (:mod:`openvisit.notify.delivery`).
- ``notify.purge`` - every few minutes: delete contact details whose appointment is over
  (``Contact.purge_at``), every copy of a message kept for them (outbox rows, frozen text),
  and receipts too old to reconcile anything.
"""

from __future__ import annotations

from datetime import timedelta

from openvisit.jobs import JobContext, job_handler, periodic_job
from openvisit.logs import get_logger
from openvisit.models import utcnow
from openvisit.notify import repository as repo
from openvisit.notify.delivery import send_notification
from openvisit.notify.service import SEND_JOB

log = get_logger(__name__)

PURGE_JOB = "notify.purge"
PURGE_EVERY = timedelta(minutes=10)
#: Receipts older than this cannot help any reconciliation (SMPP waits minutes, not days).
RECEIPT_RETENTION = timedelta(days=7)


@job_handler(SEND_JOB)
async def send(job: JobContext) -> None:
    """Send one planned message (payload written by :mod:`openvisit.notify.service`)."""
    await send_notification(job)


@job_handler(PURGE_JOB)
async def purge(job: JobContext) -> None:
    """Delete expired contact details and everything derived from them."""
    now = utcnow()
    counts = await repo.purge(job.session, now=now, receipts_before=now - RECEIPT_RETENTION)
    log.info("notify_purged", **counts)


periodic_job(PURGE_JOB, every=PURGE_EVERY)

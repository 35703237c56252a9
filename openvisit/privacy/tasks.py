"""The ``privacy.retention`` periodic job (:mod:`openvisit.privacy.retention`)."""

from __future__ import annotations

from datetime import timedelta

from openvisit.jobs import JobContext, job_handler, periodic_job
from openvisit.privacy import retention

RETENTION_KIND = "privacy.retention"
RETENTION_EVERY = timedelta(hours=1)


@job_handler(RETENTION_KIND)
async def enforce_retention(job: JobContext) -> None:
    """One batch per kind and organisation of what is kept beyond its retention."""
    await retention.enforce(job.session)


periodic_job(RETENTION_KIND, every=RETENTION_EVERY)

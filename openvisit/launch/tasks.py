"""Periodic job of the launch package: delete expired launch states and nonces.

Every SMART ``state``, pending IdP sign-in, provider proof and JWT ``jti`` is a
:class:`~openvisit.models.SeenNonce` row with an expiry; without this job the table grows by a
row per launch for ever. Each run deletes at most ``nonce_purge_batch`` expired rows (oldest
first) in the job's transaction; a backlog clears over the next runs.
"""

from __future__ import annotations

from datetime import timedelta

from openvisit import nonces
from openvisit.jobs import JobContext, job_handler, periodic_job
from openvisit.logs import get_logger

log = get_logger(__name__)

PURGE_KIND = "nonces.purge"
PURGE_EVERY = timedelta(minutes=10)


@job_handler(PURGE_KIND)
async def purge_nonces(job: JobContext) -> None:
    """Delete one bounded batch of expired rows (safe to run twice: expired is expired)."""
    deleted = await nonces.purge_expired(job.session, limit=job.app.settings.nonce_purge_batch)
    log.info("nonces_purged", deleted=deleted, job_id=job.job_id)


periodic_job(PURGE_KIND, every=PURGE_EVERY)

"""Periodic jobs of the visits package: the presence sweep (:mod:`openvisit.visits.presence`)
and the purge of stored chat (:mod:`openvisit.visits.chat`).

Runs on any worker; two workers sweeping at once skip each other's locked rows
(PostgreSQL), and sweeping a seat twice finds it already disconnected: safe to run twice.
Purging twice finds nothing left the second time.
"""

from __future__ import annotations

from datetime import timedelta

from openvisit.jobs import JobContext, job_handler, periodic_job
from openvisit.logs import get_logger
from openvisit.visits import chat, presence

log = get_logger(__name__)

SWEEP_KIND = "visits.presence_sweep"
SWEEP_EVERY = timedelta(seconds=30)
CHAT_PURGE_KIND = "visits.chat_purge"
CHAT_PURGE_EVERY = timedelta(minutes=10)


@job_handler(SWEEP_KIND)
async def sweep_presence(job: JobContext) -> None:
    await presence.sweep(job.session, app=job.app)


@job_handler(CHAT_PURGE_KIND)
async def purge_chat(job: JobContext) -> None:
    """Delete stored chat messages whose visit is over (plus the grace period)."""
    purged = await chat.purge(job.session)
    if purged:
        log.info("visits_chat_purged", messages=purged)


periodic_job(SWEEP_KIND, every=SWEEP_EVERY)
periodic_job(CHAT_PURGE_KIND, every=CHAT_PURGE_EVERY)

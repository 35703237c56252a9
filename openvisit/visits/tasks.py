"""Periodic job of the visits package: the presence sweep (:mod:`openvisit.visits.presence`).

Runs on any worker; two workers sweeping at once skip each other's locked rows
(PostgreSQL), and sweeping a seat twice finds it already disconnected: safe to run twice.
"""

from __future__ import annotations

from datetime import timedelta

from openvisit.jobs import JobContext, job_handler, periodic_job
from openvisit.visits import presence

SWEEP_KIND = "visits.presence_sweep"
SWEEP_EVERY = timedelta(seconds=30)


@job_handler(SWEEP_KIND)
async def sweep_presence(job: JobContext) -> None:
    await presence.sweep(job.session, app=job.app)


periodic_job(SWEEP_KIND, every=SWEEP_EVERY)

"""Durable jobs: the outbox for every side effect on the outside world.

A job is written in the same transaction as the change that causes it (:func:`enqueue`), so
the two commit or vanish together. Workers claim jobs with a lease (``FOR UPDATE SKIP LOCKED``
on PostgreSQL), run the handler registered for the job's kind, and mark it done in the same
transaction as the handler's own database work. A worker that dies mid-job loses its lease and
another worker takes the job again; the job's idempotency key goes with every outside call so
the outside system can recognise the retry. Failures retry with exponential backoff and jitter
and move to the dead letter (state ``dead``) after ``max_attempts``.
"""

from openvisit.jobs.registry import Defer, JobContext, job_handler, periodic_job
from openvisit.jobs.service import (
    cancel,
    cancel_many,
    enqueue,
    enqueue_many,
    job_row,
    retry_dead,
    wake,
)

__all__ = [
    "Defer",
    "JobContext",
    "cancel",
    "cancel_many",
    "enqueue",
    "enqueue_many",
    "job_handler",
    "job_row",
    "periodic_job",
    "retry_dead",
    "wake",
]

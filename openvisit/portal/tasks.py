"""Job handlers of the portal: number provisioning (see :mod:`openvisit.portal.sms.numbers`)."""

from __future__ import annotations

import uuid

from openvisit.errors import OpenVisitError
from openvisit.jobs import JobContext, job_handler
from openvisit.portal.sms import numbers


@job_handler(numbers.JOB_KIND)
async def provision_number(job: JobContext) -> None:
    """One provisioning step; a permanent provider error (or the last attempt) fails the number.

    The failure is written in this job's transaction, so the job completes and the progress
    page shows the provider's reason instead of spinning forever.
    """
    number_id = uuid.UUID(job.payload["number_id"])
    try:
        async with job.session.begin_nested():  # a failed step leaves nothing half-written
            await numbers.run_step(job.session, app=job.app, number_id=number_id,
                                   step=job.payload["step"], idempotency_key=job.idempotency_key)
    except OpenVisitError as exc:
        if not exc.permanent and job.attempt < numbers.MAX_ATTEMPTS:
            raise
        await numbers.fail(job.session, number_id=number_id, message=exc.message)

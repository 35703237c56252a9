"""Job handlers for tests, loaded by workers through OPENVISIT_JOB_MODULES.

``test.sink`` makes one outside call: an HTTP POST to a sink that applies each idempotency
key once (as Stripe-style APIs and our SMS providers do). Payload options make the handler
stall before or after that call on chosen attempts, so a test can kill the worker there.
``test.append`` appends the job id to a file (an outside effect with no idempotency), to prove
two workers never run the same job. ``test.fail`` fails as told.
"""

from __future__ import annotations

import asyncio
import os

from openvisit.errors import OutboundError
from openvisit.jobs import Defer, JobContext, job_handler


@job_handler("test.sink")
async def sink(ctx: JobContext) -> None:
    payload = ctx.payload
    if ctx.attempt in payload.get("stall_before_on", []):
        await asyncio.sleep(3600)
    response = await ctx.app.http.post(
        payload["url"],
        json={"job": ctx.job_id, "attempt": ctx.attempt},
        headers={"Idempotency-Key": ctx.idempotency_key},
    )
    if response.status_code >= 500:
        raise OutboundError(f"sink answered {response.status_code}")
    if ctx.attempt in payload.get("stall_after_on", []):
        await asyncio.sleep(3600)


@job_handler("test.append")
async def append(ctx: JobContext) -> None:
    line = f"{ctx.job_id}\n".encode()
    fd = os.open(ctx.payload["path"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@job_handler("test.defer")
async def defer(ctx: JobContext) -> None:
    if ctx.payload.get("until") and not ctx.payload.get("done"):
        from datetime import datetime

        until = datetime.fromisoformat(ctx.payload["until"])
        from openvisit.models import utcnow

        if utcnow() < until:
            raise Defer(until, reason="quiet hours")


@job_handler("test.fail")
async def fail(ctx: JobContext) -> None:
    raise OutboundError("told to fail", permanent=bool(ctx.payload.get("permanent")))

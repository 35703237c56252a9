"""What each kind of provider failure does to the message and the job.

A scripted transport stands in for the provider here: the point is our state machine
(rejected, passing failure, unknown outcome), which no real peer can be told to exercise.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar

from sqlalchemy import select

from openvisit.context import AppContext
from openvisit.errors import OutboundError
from openvisit.models import Job, OptOut, utcnow
from openvisit.notify import providers
from openvisit.notify.transport import OutcomeUnknown, RecipientRejected, SendResult, SmsTransport
from tests.notify.support import logs, make_appointment, make_site, run_jobs


class Scripted(SmsTransport):
    """Plays a script: each send pops the next step (an exception, or None to accept)."""

    name: ClassVar[str] = "scripted"

    def __init__(self, script: list[Exception | None], *, found: bool = False) -> None:
        self.script = script
        self.found = found
        self.accepted: list[str] = []
        self.reconciled = 0

    async def send(self, *, to: str, body: str, sender: str, reference: str,
                   retain_until: datetime | None = None,
                   first_attempt_at: datetime | None = None) -> SendResult:
        step = self.script.pop(0) if self.script else None
        if step is not None:
            raise step
        self.accepted.append(reference)
        return SendResult(f"scripted-{len(self.accepted)}")

    async def reconcile(self, *, to: str, body: str, sender: str, reference: str,
                        since: datetime) -> list[SendResult]:
        self.reconciled += 1
        return [SendResult("scripted-found")] if self.found else []


async def run(app: AppContext, script: Scripted) -> tuple[list[tuple[str, str | None]], Job]:
    providers.install(app, channel="sms", provider="outbox", transport=script)
    site = await make_site(app, offsets=[])
    appt = await make_appointment(app, site, start_at=utcnow() + timedelta(days=2))
    for _ in range(5):
        await run_jobs(app)
        async with app.transaction() as session:
            job = await session.scalar(select(Job))
        assert job is not None
        if job.state != "pending":
            break
        async with app.transaction() as session:  # skip the backoff
            await session.execute(Job.__table__.update().values(due_at=utcnow()))
    return [(m.status, m.error) for m in await logs(app, appt)], job


async def test_it_fails_the_message_not_the_job_when_the_number_is_rejected(
    app: AppContext,
) -> None:
    script = Scripted([RecipientRejected("no such number", opted_out=True)])
    statuses, job = await run(app, script)
    assert statuses == [("failed", "recipient_rejected")] and job.state == "done"
    async with app.transaction() as session:
        assert await session.scalar(select(OptOut)) is not None  # the provider said STOP


async def test_it_sends_afresh_after_a_failure_that_sent_nothing(app: AppContext) -> None:
    script = Scripted([OutboundError("connection refused")])
    statuses, job = await run(app, script)
    assert statuses == [("sent", None)] and job.state == "done" and job.attempts == 2
    assert script.reconciled == 0 and len(script.accepted) == 1


async def test_it_reconciles_before_sending_again_after_an_unknown_outcome(
    app: AppContext,
) -> None:
    script = Scripted([OutcomeUnknown("read timeout")], found=True)
    statuses, job = await run(app, script)
    assert statuses == [("sent", None)] and job.state == "done"
    assert script.reconciled == 1 and script.accepted == []  # found at the provider


async def test_it_sends_again_when_reconciling_finds_nothing(app: AppContext) -> None:
    script = Scripted([OutcomeUnknown("read timeout")], found=False)
    statuses, job = await run(app, script)
    assert statuses == [("sent", None)] and job.state == "done" and script.reconciled == 1
    assert len(script.accepted) == 1


async def test_it_dead_letters_what_an_operator_must_fix(app: AppContext) -> None:
    script = Scripted([OutboundError("refused: bad sender id", permanent=True)])
    statuses, job = await run(app, script)
    assert job.state == "dead" and statuses == [("queued", "outbound_error")]

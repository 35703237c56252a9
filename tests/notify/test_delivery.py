"""The notify.send job through the embedded outbox: once, in the right language, respecting
opt-outs, quiet hours and the per-number rate, surviving a crash, purged on time."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta

from sqlalchemy import func, select, update

from openvisit.context import AppContext
from openvisit.jobs import enqueue
from openvisit.jobs.worker import Worker
from openvisit.models import (
    Appointment,
    Contact,
    Job,
    MessageLog,
    Notification,
    OptOut,
    OutboxMessage,
    utcnow,
)
from openvisit.notify import delivery, providers
from openvisit.notify.tasks import PURGE_JOB
from tests.notify.support import (
    logs,
    make_appointment,
    make_due,
    make_site,
    planned,
    run_jobs,
)

NUMBER = "+420601123456"


async def outbox_texts(app: AppContext) -> list[str]:
    async with app.transaction() as session:
        rows = (await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all()
        return [app.cipher.decrypt(r.text_enc) for r in rows]


async def test_it_sends_a_confirmation_once_and_keeps_no_number_or_text(app: AppContext) -> None:
    site = await make_site(app, offsets=[])
    appt = await make_appointment(app, site, start_at=utcnow() + timedelta(days=2))
    await run_jobs(app)
    await run_jobs(app)
    [log] = await logs(app, appt)
    assert (log.status, log.channel, log.provider, log.template, log.language) == (
        "sent", "sms", "outbox", "booked", "en")
    assert log.recipient_masked == "+42*******456"
    assert log.recipient_hash == app.hasher.hash(NUMBER)
    assert log.provider_message_id and log.provider_message_id.startswith("outbox-")
    stored = " ".join(str(getattr(log, c.key)) for c in MessageLog.__table__.columns)
    assert "601123456" not in stored and "Cardiology" not in stored
    [text] = await outbox_texts(app)
    assert "https://visits.example.test/v/" in text and "Cardiology" in text
    assert text.startswith("Example Hospital: your video visit (Cardiology) is booked")
    async with app.transaction() as session:
        note = await session.scalar(select(Notification))
        assert note is not None and note.content_enc is None  # sent: the text is gone


async def test_it_writes_in_the_patients_language_else_the_endpoints(app: AppContext) -> None:
    site = await make_site(app, offsets=[], language="es")
    start = utcnow() + timedelta(days=2)
    await make_appointment(app, site, start_at=start, language="cs")
    await make_appointment(app, site, start_at=start, mobile="+420601123457")
    await run_jobs(app)
    texts = await outbox_texts(app)
    assert any("videokonzultace" in t for t in texts)
    assert any("videoconsulta" in t for t in texts)


async def test_it_honours_stop_for_that_organisation_only(app: AppContext) -> None:
    stopped = await make_site(app, slug="stopped", offsets=[])
    other = await make_site(app, slug="other", offsets=[])
    async with app.transaction() as session:
        session.add(OptOut(organisation_id=stopped.organisation_id,
                           recipient_hash=app.hasher.hash(NUMBER)))
    start = utcnow() + timedelta(days=2)
    quiet = await make_appointment(app, stopped, start_at=start)
    heard = await make_appointment(app, other, start_at=start)
    await run_jobs(app)
    assert [(m.status, m.error) for m in await logs(app, quiet)] == [("suppressed", "opted_out")]
    assert [m.status for m in await logs(app, heard)] == ["sent"]


async def test_it_falls_back_to_e_mail_for_a_patient_who_stopped_texts(app: AppContext) -> None:
    site = await make_site(app, offsets=[])
    async with app.transaction() as session:
        session.add(OptOut(organisation_id=site.organisation_id,
                           recipient_hash=app.hasher.hash(NUMBER)))
    appt = await make_appointment(app, site, start_at=utcnow() + timedelta(days=2),
                                  email="alex.sample@example.org")
    await run_jobs(app)
    [log] = await logs(app, appt)
    assert (log.channel, log.recipient_masked, log.status) == ("email", "a***@example.org", "sent")
    async with app.transaction() as session:
        row = await session.scalar(select(OutboxMessage))
        assert row is not None and row.subject_enc is not None
        assert app.cipher.decrypt(row.subject_enc).startswith("Your video visit on ")


async def test_it_suppresses_a_message_whose_contact_is_gone(app: AppContext) -> None:
    site = await make_site(app, offsets=[])
    appt = await make_appointment(app, site, start_at=utcnow() + timedelta(days=2))
    async with app.transaction() as session:
        await session.execute(Contact.__table__.delete())
    await run_jobs(app)
    assert [(m.status, m.error) for m in await logs(app, appt)] == [("suppressed", "no_contact")]
    assert await outbox_texts(app) == []


async def test_it_suppresses_a_reminder_once_the_visit_is_cancelled(app: AppContext) -> None:
    site = await make_site(app, offsets=[60], confirmations=False)
    appt = await make_appointment(app, site, start_at=utcnow() + timedelta(days=2))
    async with app.transaction() as session:  # cancelled behind the scheduler's back
        await session.execute(update(Appointment).values(status="cancelled"))
    await make_due(app, appt)
    await run_jobs(app)
    assert [(m.template, m.status, m.error) for m in await logs(app, appt)] == [
        ("reminder", "suppressed", "appointment_changed")]


async def test_it_paces_sends_from_one_number(app: AppContext) -> None:
    site = await make_site(app, offsets=[], rate_limit=60, number="+420700000001")
    start = utcnow() + timedelta(days=2)
    for i in range(3):
        await make_appointment(app, site, start_at=start, mobile=f"+42060112340{i}")
    stop = asyncio.Event()
    runner = asyncio.create_task(Worker(app, poll_seconds=0.05).run(stop))
    for _ in range(100):
        if len([log for log in await logs(app) if log.status == "sent"]) == 3:
            break
        await asyncio.sleep(0.1)
    stop.set()
    await runner
    sent = sorted(log.created_at for log in await logs(app) if log.status == "sent")
    assert len(sent) == 3
    # 60 a minute from one number: one a second, never a burst.
    assert all(b - a >= timedelta(seconds=0.95) for a, b in itertools.pairwise(sent))


async def test_it_waits_for_the_end_of_quiet_hours(app: AppContext) -> None:
    # Quiet all day except one minute from now: whatever the clock says, now is quiet.
    local = utcnow() + timedelta(hours=1)  # the site's zone is UTC+1 or +2; use UTC here
    end = (utcnow() + timedelta(minutes=2)).strftime("%H:%M")
    start = (utcnow() + timedelta(minutes=3)).strftime("%H:%M")
    site = await make_site(app, offsets=[], quiet=(start, end), tz="UTC")
    appt = await make_appointment(app, site, start_at=local + timedelta(days=2), change=None)
    async with app.transaction() as session:
        await enqueue(session, "notify.send", idempotency_key="notify:quiet-test", payload={
            "appointment_id": str(appt), "organisation_id": str(site.organisation_id),
            "message": "booked", "start_at": (local + timedelta(days=2)).isoformat(),
            "department": None})
    await run_jobs(app, timeout=5)
    async with app.transaction() as session:
        job = await session.scalar(select(Job))
    assert job is not None and job.state == "pending" and job.last_error == "deferred: quiet hours"
    assert job.due_at.strftime("%H:%M") == end
    assert await logs(app) == []


async def test_it_records_a_message_the_provider_took_just_before_a_crash(
    app: AppContext,
) -> None:
    """Phase 1 committed, the outbox stored the message, the worker died before phase 2:
    the retry finds the message at the provider and sends nothing more."""
    site = await make_site(app, offsets=[])
    appt = await make_appointment(app, site, start_at=utcnow() + timedelta(days=2))
    [item] = await planned(app, appt)
    async with app.transaction() as session:
        job = await session.scalar(select(Job))
        assert job is not None
        payload = job.payload
    prepared = await delivery._prepare(app, key=item.key, payload=payload)
    assert prepared is not None
    first = await providers.sms_transport(app, "outbox").send(
        to=prepared.to, body=prepared.text, sender=prepared.sender, reference=item.key)
    [log] = await logs(app, appt)
    assert log.status == "sending"
    await run_jobs(app)
    [log] = await logs(app, appt)
    assert (log.status, log.provider_message_id) == ("sent", first.provider_message_id)
    assert len(await outbox_texts(app)) == 1


async def test_it_sends_a_message_that_never_left_before_a_crash(app: AppContext) -> None:
    site = await make_site(app, offsets=[])
    appt = await make_appointment(app, site, start_at=utcnow() + timedelta(days=2))
    [item] = await planned(app, appt)
    async with app.transaction() as session:
        job = await session.scalar(select(Job))
        assert job is not None
        payload = job.payload
    assert await delivery._prepare(app, key=item.key, payload=payload) is not None
    await run_jobs(app)
    assert [m.status for m in await logs(app, appt)] == ["sent"]
    assert len(await outbox_texts(app)) == 1


async def test_it_purges_contacts_and_every_copy_of_their_messages(app: AppContext) -> None:
    site = await make_site(app, offsets=[])
    gone = await make_appointment(app, site, start_at=utcnow() + timedelta(days=2))
    kept = await make_appointment(app, site, start_at=utcnow() + timedelta(days=2),
                                  mobile="+420601123499")
    await run_jobs(app)
    past = utcnow() - timedelta(minutes=1)
    async with app.transaction() as session:
        await session.execute(update(Contact).where(Contact.appointment_id == gone)
                              .values(purge_at=past))
        await session.execute(update(OutboxMessage).where(OutboxMessage.id == 1)
                              .values(purge_at=past))
        await enqueue(session, PURGE_JOB)
    await run_jobs(app)
    async with app.transaction() as session:
        contacts = (await session.scalars(select(Contact.appointment_id))).all()
        outbox = await session.scalar(select(func.count()).select_from(OutboxMessage))
    assert contacts == [kept] and outbox == 1
    assert [m.status for m in await logs(app, gone)] == ["sent"]  # the log stays, masked

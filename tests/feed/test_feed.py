"""The message layer in process: what each SIU does to appointments and contacts, and the ACK."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from openvisit.context import AppContext
from openvisit.feed.intake import SiuFeed
from openvisit.feed.senders import SenderDirectory, invalidate
from openvisit.jobs import enqueue
from openvisit.jobs.worker import Worker
from openvisit.models import Appointment, AuditLog, Contact, InboundMessage, Job

from .support import SAMPLES, appointments, count, make_endpoint, read_ack, siu

EPIC = ("EPIC^EPICADT",)


async def test_it_books_an_appointment_with_its_references_and_times(ctx: AppContext) -> None:
    endpoint = await make_endpoint(ctx, senders=EPIC)

    reply = await SiuFeed(ctx).handle(siu(placer="P-77"))

    ack = read_ack(reply.ack or b"")
    assert (ack.code, ack.acked_id, reply.duplicate) == ("AA", "CTRL-1", False)
    [appointment] = await appointments(ctx)
    assert appointment.endpoint_id == endpoint.id
    assert appointment.organisation_id == endpoint.organisation_id
    assert appointment.ehr_appointment_id == "4000123456"
    assert appointment.placer_appointment_id == "P-77"
    # 09:30 in New York (the endpoint's zone, no offset sent) on 2030-03-12 = 13:30 UTC (EDT).
    assert appointment.start_at == datetime(2030, 3, 12, 13, 30, tzinfo=UTC)
    assert appointment.end_at == datetime(2030, 3, 12, 14, 0, tzinfo=UTC)
    assert appointment.status == "booked"
    assert (appointment.department, appointment.provider_ehr_id) == ("10501", "1001")
    assert appointment.encounter_id == "4000123456"
    assert appointment.language == "en"
    assert ctx.refs.read(appointment) == "EPI|E1234567"
    assert appointment.source == "hl7"


async def test_it_walks_the_public_samples_through_the_appointment_states(
    ctx: AppContext,
) -> None:
    await make_endpoint(ctx)
    feed = SiuFeed(ctx)
    expected = [
        ("SIU-S12-01.hl7", "AA", "booked"),
        ("SIU-S13-01.hl7", "AA", "booked"),
        ("SIU-S14-01.hl7", "AA", "booked"),
        ("SIU-S26-01.hl7", "AA", "noshow"),
        ("SIU-S12-01.hl7", "AA", "noshow"),  # a resend changes nothing
        ("SIU-S15-01.hl7", "AA", "cancelled"),
        ("SIU-S17-01.hl7", "AA", "cancelled"),
        ("SIU-S16-01.hl7", "AA", "cancelled"),  # discontinued: what is left is off
        ("SIU-S12_1.hl7", "AR", "cancelled"),
    ]
    for name, code, status in expected:
        raw = (SAMPLES / name).read_bytes().replace(b"\n", b"\r")
        reply = await feed.handle(raw)
        assert read_ack(reply.ack or b"").code == code, name
        [appointment] = await appointments(ctx)
        assert appointment.status == status, name
    assert appointment.ehr_appointment_id == "36996"
    assert appointment.placer_appointment_id == "12345"
    assert ctx.refs.read(appointment) == "test1|PATID1234"
    assert appointment.start_at == datetime(2021, 9, 24, 7, 15, tzinfo=UTC)
    assert await count(ctx, InboundMessage) == 7


async def test_it_maps_local_sch25_codes_and_the_events_that_fix_the_status(
    ctx: AppContext,
) -> None:
    await make_endpoint(
        ctx, senders=EPIC, status_map={"SCHED": "booked", "ARRV": "arrived", "PEND": "pending"}
    )
    feed = SiuFeed(ctx)
    steps = [
        ("S12", "PEND", "pending"),
        ("S14", "ARRV", "arrived"),
        ("S14", "UNKNOWN-LOCAL", "arrived"),
        ("S14", "Cancelled", "cancelled"),
        ("S13", "SCHED", "booked"),
        ("S26", "Booked", "noshow"),
        ("S12", "booked", "booked"),
        ("S15", "Booked", "cancelled"),
    ]
    for number, (event, code, status) in enumerate(steps):
        await feed.handle(siu(event=event, status=code, control_id=f"C{number}"))
        [appointment] = await appointments(ctx)
        assert appointment.status == status, (event, code)


async def test_it_keys_by_placer_id_until_the_filler_id_arrives(ctx: AppContext) -> None:
    await make_endpoint(ctx, senders=EPIC)
    feed = SiuFeed(ctx)

    await feed.handle(siu(filler=None, placer="PL-1", control_id="A"))
    await feed.handle(
        siu(
            filler="FI-1",
            placer="PL-1",
            control_id="B",
            start="20300313093000",
            end="20300313100000",
        )
    )
    [rekeyed] = await appointments(ctx)
    await feed.handle(siu(event="S15", filler=None, placer="PL-1", control_id="C"))

    [appointment] = await appointments(ctx)
    assert rekeyed.id == appointment.id
    assert rekeyed.start_at == datetime(2030, 3, 13, 13, 30, tzinfo=UTC)
    assert (appointment.ehr_appointment_id, appointment.placer_appointment_id) == ("FI-1", "PL-1")
    assert appointment.status == "cancelled"


async def test_it_stores_nothing_for_a_cancellation_of_an_unknown_appointment(
    ctx: AppContext,
) -> None:
    await make_endpoint(ctx, senders=EPIC)

    reply = await SiuFeed(ctx).handle(siu(event="S17", control_id="DEL-1"))

    assert reply.code == "AA"
    assert await appointments(ctx) == []
    assert await count(ctx, Contact) == 0
    assert await count(ctx, InboundMessage) == 1


async def test_it_keeps_contacts_encrypted_until_the_appointment_is_over(
    ctx: AppContext,
) -> None:
    await make_endpoint(ctx, senders=EPIC)
    await SiuFeed(ctx).handle(siu())
    [appointment] = await appointments(ctx)

    async with ctx.transaction() as session:
        contacts = {c.kind: c for c in await session.scalars(select(Contact))}
        raw = (await session.execute(text("SELECT value_enc FROM contact"))).scalars().all()
    assert set(contacts) == {"sms", "email"}
    assert ctx.cipher.decrypt(contacts["sms"].value_enc) == "+12025550142"
    assert ctx.cipher.decrypt(contacts["email"].value_enc) == "test.patient@example.org"
    for value in raw:
        assert "2025550142" not in value and "example.org" not in value
    grace = timedelta(hours=ctx.settings.contact_grace_hours)
    assert appointment.end_at is not None
    assert {c.purge_at for c in contacts.values()} == {appointment.end_at + grace}


async def test_it_updates_and_removes_contacts_as_the_ehr_does(ctx: AppContext) -> None:
    await make_endpoint(ctx, senders=EPIC)
    feed = SiuFeed(ctx)
    await feed.handle(siu(control_id="1"))
    await feed.handle(siu(event="S14", control_id="2", phone="(202)555-0199", email=None))

    async with ctx.transaction() as session:
        contacts = {c.kind: c for c in await session.scalars(select(Contact))}
    assert set(contacts) == {"sms"}
    assert ctx.cipher.decrypt(contacts["sms"].value_enc) == "+12025550199"


async def test_it_shortens_the_life_of_contacts_when_the_appointment_is_cancelled(
    ctx: AppContext,
) -> None:
    await make_endpoint(ctx, senders=EPIC)
    feed = SiuFeed(ctx)
    await feed.handle(siu(control_id="1"))
    before = datetime.now(UTC)
    await feed.handle(siu(event="S15", control_id="2"))

    grace = timedelta(hours=ctx.settings.contact_grace_hours)
    async with ctx.transaction() as session:
        purge_at = set((await session.scalars(select(Contact.purge_at))).all())
    assert len(purge_at) == 1
    assert before + grace <= purge_at.pop() <= datetime.now(UTC) + grace


async def test_it_keeps_contacts_a_day_after_the_start_when_no_end_is_sent(
    ctx: AppContext,
) -> None:
    await make_endpoint(ctx, senders=EPIC)
    message = siu().replace(
        b"|30|MIN|^^30^20300312093000^20300312100000|", b"|||^^^20300312093000|"
    )
    message = message.replace(b"|0|MIN|30|MIN|", b"|0|MIN|||")
    await SiuFeed(ctx).handle(message)

    [appointment] = await appointments(ctx)
    assert appointment.end_at is None
    assert appointment.start_at is not None
    grace = timedelta(hours=ctx.settings.contact_grace_hours)
    async with ctx.transaction() as session:
        purge_at = set((await session.scalars(select(Contact.purge_at))).all())
    assert purge_at == {appointment.start_at + timedelta(days=1) + grace}


async def test_it_purges_contacts_whose_time_is_up_with_the_periodic_job(
    ctx: AppContext,
) -> None:
    import openvisit.notify.tasks as notify_tasks  # the one purge job (notify owns it)

    await make_endpoint(ctx, senders=EPIC)
    feed = SiuFeed(ctx)
    # One appointment long over (purge due), one in 2030 (kept).
    await feed.handle(
        siu(control_id="old", filler="OLD", start="20200101093000", end="20200101100000")
    )
    await feed.handle(siu(control_id="new", filler="NEW"))
    assert await count(ctx, Contact) == 4

    async with ctx.transaction() as session:
        await enqueue(session, notify_tasks.PURGE_JOB, idempotency_key="purge-now")
    await Worker(ctx).run_until_empty(timeout=30)

    async with ctx.transaction() as session:
        left = (
            (
                await session.execute(
                    select(Appointment.ehr_appointment_id).join(
                        Contact, Contact.appointment_id == Appointment.id
                    )
                )
            )
            .scalars()
            .all()
        )
        job = await session.scalar(select(Job).where(Job.idempotency_key == "purge-now"))
    assert sorted(left) == ["NEW", "NEW"]
    assert job is not None and job.state == "done"


async def test_it_answers_a_resend_from_the_stored_ack_and_applies_nothing(
    ctx: AppContext,
) -> None:
    await make_endpoint(ctx, senders=EPIC, sms=True)
    feed = SiuFeed(ctx)
    first = await feed.handle(siu(control_id="SAME"))
    [booked] = await appointments(ctx)
    jobs = await count(ctx, Job)

    # Same MSH-10, different content: still the first ACK, still the first appointment.
    again = await feed.handle(siu(control_id="SAME", start="20300401093000", end="20300401100000"))

    assert again.duplicate and again.ack == first.ack
    [after] = await appointments(ctx)
    assert (after.start_at, after.updated_at) == (booked.start_at, booked.updated_at)
    assert await count(ctx, Job) == jobs
    assert await count(ctx, InboundMessage) == 1


async def test_it_scopes_control_ids_to_the_sender(ctx: AppContext) -> None:
    await make_endpoint(ctx, senders=("EPIC",))
    feed = SiuFeed(ctx)

    one = await feed.handle(siu(control_id="1", sender="EPIC^CLINIC-A", filler="A"))
    two = await feed.handle(siu(control_id="1", sender="EPIC^CLINIC-B", filler="B"))

    assert (one.duplicate, two.duplicate) == (False, False)
    assert len(await appointments(ctx)) == 2


@pytest.mark.parametrize(
    ("sender", "code", "text"),
    [
        ("OTHER^SYSTEM", "AR", "unknown sender (MSH-3 OTHER, MSH-4 SYSTEM)"),
        ("EPIC^ELSEWHERE", "AR", "unknown sender (MSH-3 EPIC, MSH-4 ELSEWHERE)"),
    ],
)
async def test_it_rejects_unknown_senders(
    ctx: AppContext, sender: str, code: str, text: str
) -> None:
    await make_endpoint(ctx, senders=EPIC)

    reply = await SiuFeed(ctx).handle(siu(sender=sender))

    ack = read_ack(reply.ack or b"")
    assert (ack.code, ack.has_err) == (code, True)
    assert ack.text.startswith(text)
    assert await appointments(ctx) == []


async def test_it_prefers_the_most_specific_sender_and_refuses_ambiguity(
    ctx: AppContext,
) -> None:
    general = await make_endpoint(
        ctx, senders=("EPIC",), slug="org-a", fhir_base="https://a.example.org/fhir"
    )
    specific = await make_endpoint(
        ctx, senders=("EPIC^EPICADT",), slug="org-b", fhir_base="https://b.example.org/fhir"
    )
    feed = SiuFeed(ctx)

    assert (await feed.handle(siu(control_id="1"))).endpoint_id == specific.id
    assert (await feed.handle(siu(control_id="2", sender="EPIC^OTHER"))).endpoint_id == general.id
    async with ctx.transaction() as session:
        other = await session.get(type(general), general.id)
        assert other is not None
        other.options = {"hl7": {"senders": ["EPIC^EPICADT"]}}  # bypasses the CLI's check
    invalidate(ctx)
    ambiguous = read_ack((await feed.handle(siu(control_id="3"))).ack or b"")
    assert ambiguous.code == "AR" and "listed by 2 OpenVisit endpoints" in ambiguous.text


async def test_it_reads_a_sender_added_a_moment_ago(ctx: AppContext) -> None:
    endpoint = await make_endpoint(ctx, senders=EPIC)
    now = [1000.0]
    feed = SiuFeed(ctx, directory=SenderDirectory(ctx, refresh_seconds=5.0, clock=lambda: now[0]))
    assert (await feed.handle(siu(control_id="1"))).code == "AA"
    async with ctx.transaction() as session:
        row = await session.get(type(endpoint), endpoint.id)
        assert row is not None
        row.options = {"hl7": {"senders": ["EPIC^EPICADT", "CERNER"]}}
    now[0] += 1.1  # an unknown sender re-reads the settings at most once a second

    late = await feed.handle(siu(control_id="2", sender="CERNER^MAIN", filler="X"))

    assert late.code == "AA"


@pytest.mark.parametrize(
    ("mangle", "code", "err"),
    [
        (lambda m: m.replace(b"SCH|", b"XYZ|"), "AE", "SCH"),
        (lambda m: m.replace(b"|20300312093000|0|MIN", b"|2030-13-12|0|MIN"), "AE", "AIS-4"),
        (lambda m: m.replace(b"|2.3\r", b"|9.9\r"), "AR", "MSH-12"),
        (lambda m: m.replace(b"SIU^S12", b"ADT^A01"), "AR", "MSH-9"),
        (lambda m: m.replace(b"SIU^S12", b"SIU^S18"), "AR", "MSH-9.2"),
        (lambda m: m.replace(b"|CTRL-1|P|", b"|CTRL-1|Q|"), "AR", "MSH-11"),
    ],
)
async def test_it_answers_bad_messages_with_ae_or_ar_and_a_readable_reason(
    ctx: AppContext,
    mangle,
    code: str,
    err: str,  # type: ignore[no-untyped-def]
) -> None:
    await make_endpoint(ctx, senders=EPIC)

    reply = await SiuFeed(ctx).handle(mangle(siu()))

    ack = read_ack(reply.ack or b"")
    assert (ack.code, ack.acked_id, ack.has_err) == (code, "CTRL-1", True)
    assert ack.text
    assert await appointments(ctx) == []
    assert await count(ctx, InboundMessage) == 0


@pytest.mark.parametrize("raw", [b"", b"garbage", b"MSH|", b"PID|1||X", b"\xff\xfe\x00MSH"])
async def test_it_answers_an_unreadable_header_with_a_fallback_ar(
    ctx: AppContext, raw: bytes
) -> None:
    reply = await SiuFeed(ctx).handle(raw)

    ack = read_ack(reply.ack or b"")
    assert ack.code == "AR" and ack.has_err and ack.acked_id == ""


@pytest.mark.parametrize(
    ("accept", "application", "code", "answered"),
    [
        ("AL", "NE", "CA", True),
        ("AL", "AL", "CA", True),
        ("NE", "AL", "CA", False),
        ("ER", "NE", "CA", False),
        ("SU", "", "CA", True),
    ],
)
async def test_it_honours_enhanced_mode_commit_acks(
    ctx: AppContext, accept: str, application: str, code: str, answered: bool
) -> None:
    await make_endpoint(ctx, senders=EPIC)

    reply = await SiuFeed(ctx).handle(siu(accept_ack=accept, application_ack=application))

    assert reply.code == code
    assert (reply.ack is not None) == answered
    assert len(await appointments(ctx)) == 1
    if reply.ack is not None:
        assert read_ack(reply.ack).code == "CA"


async def test_it_sends_ce_or_cr_for_refused_messages_in_enhanced_mode(ctx: AppContext) -> None:
    await make_endpoint(ctx, senders=EPIC)
    feed = SiuFeed(ctx)

    bad = await feed.handle(siu(accept_ack="ER").replace(b"SCH|", b"XYZ|"))
    unknown = await feed.handle(siu(accept_ack="AL", sender="WHO^KNOWS"))

    assert read_ack(bad.ack or b"").code == "CE"
    assert read_ack(unknown.ack or b"").code == "CR"


async def test_it_answers_ae_and_commits_nothing_when_the_database_fails(
    ctx: AppContext,
) -> None:
    await make_endpoint(ctx, senders=EPIC)
    feed = SiuFeed(ctx)
    assert (await feed.handle(siu(control_id="warm-up", filler="W"))).code == "AA"
    async with ctx.db.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE contact RENAME TO contact_gone"))
    try:
        failed = await feed.handle(siu(control_id="X1"))
    finally:
        async with ctx.db.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE contact_gone RENAME TO contact"))

    ack = read_ack(failed.ack or b"")
    assert (ack.code, ack.text, failed.temporary) == ("AE", "temporary error, resend later", True)
    assert [a.ehr_appointment_id for a in await appointments(ctx)] == ["W"]
    resent = await feed.handle(siu(control_id="X1"))
    assert (resent.code, resent.duplicate) == ("AA", False)
    assert len(await appointments(ctx)) == 2


async def test_it_audits_feed_configuration(ctx: AppContext) -> None:
    endpoint = await make_endpoint(ctx, senders=EPIC)

    async with ctx.transaction() as session:
        entry = await session.scalar(
            select(AuditLog).where(
                AuditLog.action == "endpoint.hl7_feed", AuditLog.object_id == str(endpoint.id)
            )
        )
    assert entry is not None and entry.actor == "test"

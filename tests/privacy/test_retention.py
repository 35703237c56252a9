"""Retention per organisation and the erasure of one patient (issue 18 item 4)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from openvisit.context import AppContext
from openvisit.errors import InvalidInput
from openvisit.jobs.registry import get_handler, load_modules, periodic_jobs
from openvisit.models import (
    Appointment,
    AuditLog,
    Contact,
    MessageLog,
    Participant,
    QualitySample,
    Visit,
    VisitEvent,
    utcnow,
)
from openvisit.privacy import retention
from openvisit.privacy.erasure import erase_patient
from openvisit.visits import lobby
from openvisit.visits import service as visits
from tests.support.backend import subprocess_env
from tests.support.procs import Proc
from tests.visits.support import Links, Seeded, seed_org


async def _history(ctx: AppContext, seeded: Seeded, *, days_ago: int, patient: str,
                   visit_with: list[str] | None = None) -> tuple[Appointment, Visit]:
    """An appointment ``days_ago`` days back with a contact, a message-log row, a visit (with
    a seat per patient of ``visit_with``), an event, a quality sample and an audit entry."""
    at = utcnow() - timedelta(days=days_ago)
    async with ctx.transaction() as session:
        appt = Appointment(organisation_id=seeded.organisation.id,
                           endpoint_id=seeded.endpoint.id,
                           ehr_appointment_id=f"{patient}-{days_ago}", start_at=at,
                           end_at=at + timedelta(minutes=20), created_at=at, updated_at=at,
                           **ctx.refs.columns(patient))
        session.add(appt)
        await session.flush()
        session.add(Contact(appointment_id=appt.id, kind="sms",
                            value_enc=ctx.cipher.encrypt("+420601000111"),
                            purge_at=utcnow() + timedelta(days=1)))
        session.add(MessageLog(organisation_id=seeded.organisation.id,
                               appointment_id=appt.id, channel="sms", provider="outbox",
                               recipient_masked="+42******111", recipient_hash="h" * 64,
                               template="confirmation", created_at=at, updated_at=at))
        visit = Visit(organisation_id=seeded.organisation.id, appointment_id=appt.id,
                      status="ended", started_at=at, ended_at=at + timedelta(minutes=20),
                      created_at=at, updated_at=at)
        session.add(visit)
        await session.flush()
        for n, ref in enumerate(visit_with or [patient], 1):
            seat = Participant(visit_id=visit.id, role="patient", seat_no=n,
                               label=f"Patient {n}", created_at=at, updated_at=at,
                               **ctx.refs.columns(ref))
            session.add(seat)
            await session.flush()
            session.add(VisitEvent(visit_id=visit.id, participant_id=seat.id, kind="joined",
                                   at=at))
            session.add(QualitySample(visit_id=visit.id, participant_id=seat.id, at=at,
                                      rtt_ms=40.0))
        session.add(AuditLog(organisation_id=seeded.organisation.id, actor="system",
                             action="visit.end", object_type="visit",
                             object_id=str(visit.id), at=at))
    return appt, visit


async def _counts(ctx: AppContext) -> dict[str, int]:
    async with ctx.db.read() as session:
        return {model.__tablename__: int(await session.scalar(
            select(func.count()).select_from(model)) or 0)
            for model in (Appointment, Contact, MessageLog, Visit, Participant, VisitEvent,
                          QualitySample, AuditLog)}


async def test_it_deletes_what_is_older_than_the_organisations_retention(
    ctx: AppContext,
) -> None:
    seeded = await seed_org(ctx)
    await _history(ctx, seeded, days_ago=500, patient="Patient/old")
    await _history(ctx, seeded, days_ago=10, patient="Patient/new")
    async with ctx.transaction() as session:
        counts = await retention.enforce(session)
    assert counts == {"visits": 1, "appointments": 1, "messages": 1, "audit": 0}
    assert await _counts(ctx) == {
        "appointment": 1, "contact": 1, "message_log": 1, "visit": 1, "participant": 1,
        "visit_event": 1, "quality_sample": 1, "audit_log": 2}
    async with ctx.transaction() as session:  # a second run finds nothing
        assert set((await retention.enforce(session)).values()) == {0}
        # A shorter setting takes the rest: a week for visits and messages (the new day is
        # ten days old), a month for the audit log (the old day's entry goes).
        await retention.set_retention(session, slug=seeded.organisation.slug, actor="test",
                                      visit_days=7, message_days=7, audit_days=30)
    async with ctx.transaction() as session:
        assert await retention.enforce(session) == {
            "visits": 1, "appointments": 1, "messages": 1, "audit": 1}
        changed = (await session.scalars(select(AuditLog).where(
            AuditLog.action == "organisation.retention"))).one()
        assert changed.before == {"visit_days": 400, "message_days": 400, "audit_days": 2190}
        assert changed.after == {"visit_days": 7, "message_days": 7, "audit_days": 30}


async def test_it_deletes_in_batches_and_the_next_run_goes_on(ctx: AppContext) -> None:
    seeded = await seed_org(ctx)
    for n in range(3):
        await _history(ctx, seeded, days_ago=500 + n, patient=f"Patient/{n}")
    async with ctx.transaction() as session:
        assert (await retention.enforce(session, batch=2))["visits"] == 2
    async with ctx.transaction() as session:
        assert (await retention.enforce(session, batch=2))["visits"] == 1
    assert (await _counts(ctx))["visit"] == 0


async def test_it_refuses_a_retention_outside_its_bounds(ctx: AppContext) -> None:
    seeded = await seed_org(ctx)
    async with ctx.transaction() as session:
        with pytest.raises(InvalidInput, match="from 30 to 3650 days; 7 is not in that range"):
            await retention.set_retention(session, slug=seeded.organisation.slug,
                                          actor="test", audit_days=7)


def test_workers_run_retention_every_hour() -> None:
    load_modules([])
    assert periodic_jobs()["privacy.retention"] == timedelta(hours=1)
    assert get_handler("privacy.retention") is not None


async def test_erasure_removes_one_patient_and_leaves_the_others(ctx: AppContext) -> None:
    seeded = await seed_org(ctx)
    await _history(ctx, seeded, days_ago=3, patient="EPI|MRN-1")
    _, shared = await _history(ctx, seeded, days_ago=2, patient="EPI|MRN-2",
                               visit_with=["EPI|MRN-2", "EPI|MRN-1"])
    await _history(ctx, seeded, days_ago=1, patient="EPI|MRN-2")
    before = await _counts(ctx)
    async with ctx.transaction() as session:
        erased = await erase_patient(session, app=ctx, slug=seeded.organisation.slug,
                                     ref=" EPI|MRN-1", actor="test")
    assert (erased.appointments, erased.visits, erased.seats_forgotten) == (1, 1, 1)
    after = await _counts(ctx)
    assert after["appointment"] == before["appointment"] - 1
    assert after["visit"] == before["visit"] - 1
    async with ctx.db.read() as session:
        left = [ctx.refs.read(s) for s in await session.scalars(select(Participant))]
        assert "EPI|MRN-1" not in left and left.count("EPI|MRN-2") == 2 and None in left
        # The shared visit keeps the other patient's events; the erased seat has none.
        events = (await session.scalars(select(VisitEvent).where(
            VisitEvent.visit_id == shared.id))).all()
        assert len(events) == 1
        entry = (await session.scalars(select(AuditLog).where(
            AuditLog.action == "privacy.patient_erased"))).one()
        assert entry.after == {"appointments": 1, "visits": 1, "seats_forgotten": 1}
        assert "MRN-1" not in json.dumps([entry.after, entry.before, entry.object_id])


async def test_erasure_of_a_launched_patient_covers_seats_of_visits_without_appointment(
    ctx: AppContext,
) -> None:
    seeded = await seed_org(ctx)
    async with ctx.transaction() as session:
        visit = await visits.open_adhoc_visit(session, app=ctx,
                                              organisation_id=seeded.organisation.id)
        link = await visits.seat_link(session, app=ctx, visit=visit, role="patient",
                                      patient_ref="Patient/adhoc-9")
    async with ctx.transaction() as session:
        await lobby.join(session, app=ctx, token=Links.token(link), connection_id="p.1")
    async with ctx.transaction() as session:
        erased = await erase_patient(session, app=ctx, slug=seeded.organisation.slug,
                                     ref="Patient/adhoc-9", actor="test")
    assert (erased.appointments, erased.visits) == (0, 1)
    assert (await _counts(ctx))["visit"] == 0


async def test_the_erase_command_asks_for_yes_and_names_an_unknown_organisation(
    ctx: AppContext, db_url: str, tmp_path: Path,
) -> None:
    refused = Proc(["privacy", "erase-patient", "Patient/1"], env=subprocess_env(db_url),
                   log=tmp_path / "refused.log")
    assert refused.popen.wait(timeout=60) == 2
    refused.stop()
    assert "add --yes" in refused.log.read_text()
    unknown = Proc(["privacy", "erase-patient", "Patient/1", "--org", "nope", "--yes"],
                   env=subprocess_env(db_url), log=tmp_path / "unknown.log")
    assert unknown.popen.wait(timeout=60) == 1
    unknown.stop()
    assert "There is no organisation 'nope'" in unknown.log.read_text()

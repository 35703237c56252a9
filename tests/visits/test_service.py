"""The visits service: idempotent visits, seats and links, join windows, events on the bus."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import func, select

from openvisit.context import AppContext
from openvisit.errors import Gone, InvalidInput, NotFound
from openvisit.models.base import utcnow
from openvisit.models.visit import Participant, Visit, VisitEvent
from openvisit.visits import lobby, service
from openvisit.visits.tokens import participant_id_of
from tests.support.backend import BACKEND
from tests.visits.support import Links, make_appointment, make_visit, seed_org


async def test_it_opens_one_visit_per_appointment_with_the_join_window(ctx: AppContext) -> None:
    seeded = await seed_org(ctx)
    start = datetime(2030, 5, 6, 14, 30, tzinfo=UTC)
    appt = await make_appointment(ctx, seeded, start_at=start, end_at=start + timedelta(minutes=20))
    async with ctx.transaction() as session:
        first = await service.open_visit(session, app=ctx, appointment=appt)
        again = await service.open_visit(session, app=ctx, appointment=appt)
    assert first.id == again.id
    assert first.window_start == start - timedelta(minutes=30)
    assert first.window_end == start + timedelta(minutes=20 + 240)


async def test_it_survives_two_concurrent_first_opens(ctx: AppContext) -> None:
    appt = await make_appointment(ctx, await seed_org(ctx))
    barrier = asyncio.Barrier(2) if BACKEND == "postgres" else None

    async def open_once() -> uuid.UUID:
        async with ctx.transaction() as session:
            if barrier is not None:
                # Both transactions have started and seen no visit before either inserts.
                await service.repo.visit_by_appointment(session, appt.id)
                await barrier.wait()
            visit = await service.open_visit(session, app=ctx, appointment=appt)
            return visit.id

    ids = await asyncio.gather(open_once(), open_once())
    assert ids[0] == ids[1]
    async with ctx.transaction() as session:
        count = (await session.execute(select(func.count()).select_from(Visit))).scalar_one()
    assert count == 1


async def test_it_reuses_seats_by_key_and_gives_invitees_new_ones(ctx: AppContext) -> None:
    seeded = await seed_org(ctx)
    links = await make_visit(ctx, seeded, patients=2)
    async with ctx.transaction() as session:
        visit = await session.get(Visit, links.visit_id)
        assert visit is not None
        again = await service.seat_link(session, app=ctx, visit=visit, role="provider",
                                        ehr_user_id="Practitioner/7")
        other_doc = await service.seat_link(session, app=ctx, visit=visit, role="provider",
                                            ehr_user_id="Practitioner/8")
        reminder = await service.seat_link(session, app=ctx, visit=visit, role="patient",
                                           patient_ref="Patient/1", language="es")
        guest1 = await service.seat_link(session, app=ctx, visit=visit, role="guest")
        guest2 = await service.seat_link(session, app=ctx, visit=visit, role="guest")
        with pytest.raises(InvalidInput):
            await service.seat_link(session, app=ctx, visit=visit, role="surgeon")
        seats = (await session.execute(select(Participant).where(
            Participant.visit_id == visit.id))).scalars().all()
    assert again == links.provider and reminder == links.patient  # same link, re-sent
    assert len({again, other_doc, guest1, guest2, links.extra["patient2"]}) == 5
    assert again.startswith(f"{ctx.settings.public_url}/v/")
    labels = sorted(s.label for s in seats)
    assert labels == ["Clinician", "Clinician 2", "Guest", "Guest 2", "Patient", "Patient 2"]
    assert next(s for s in seats if ctx.refs.read(s) == "Patient/1").language == "es"
    assert all(s.join_token_hash is None for s in seats)  # no token is stored


async def test_it_opens_links_only_inside_the_window_and_explains_why_not(
    ctx: AppContext,
) -> None:
    seeded = await seed_org(ctx, timezone="Europe/Prague")
    start = datetime(2030, 5, 6, 12, 30, tzinfo=UTC)  # 14:30 in Prague (summer time)
    appt = await make_appointment(ctx, seeded, start_at=start)
    async with ctx.transaction() as session:
        visit = await service.open_visit(session, app=ctx, appointment=appt)
        url = await service.seat_link(session, app=ctx, visit=visit, role="patient")
    token = Links.token(url)

    async def resolve(at: datetime) -> None:
        with time_machine.travel(at, tick=False):
            async with ctx.transaction() as session:
                await service.resolve_link(session, app=ctx, token=token)

    with pytest.raises(Gone) as early:
        await resolve(start - timedelta(minutes=45))
    assert early.value.code == "visit_not_open_yet"
    # English uses the 12-hour clock; the time is the organisation's local time.
    assert "30 minutes before your appointment at 2:30\u202fPM" in early.value.message
    with pytest.raises(Gone) as day_before:
        await resolve(start - timedelta(days=1))
    # The weekday and the zone are named (issue 15 item 9).
    assert "on Monday, May 6 at 2:30\u202fPM UTC+2" in day_before.value.message
    await resolve(start - timedelta(minutes=29))
    await resolve(start + timedelta(minutes=239))
    with pytest.raises(Gone) as late:
        await resolve(start + timedelta(minutes=241))
    assert late.value.code == "visit_ended" and late.value.title == "This visit has ended"
    with pytest.raises(NotFound):
        async with ctx.transaction() as session:
            await service.resolve_link(session, app=ctx, token=token[:-3] + "abc")


async def test_it_revokes_links_by_bumping_the_token_version(ctx: AppContext) -> None:
    links = await make_visit(ctx, await seed_org(ctx))
    pid = participant_id_of(Links.token(links.patient))
    assert pid is not None
    async with ctx.transaction() as session:
        await service.repo.bump_token_version(session, pid)
    with pytest.raises(NotFound):
        async with ctx.transaction() as session:
            await service.resolve_link(session, app=ctx, token=Links.token(links.patient))


async def test_it_publishes_visit_events_only_after_commit(ctx: AppContext) -> None:
    links = await make_visit(ctx, await seed_org(ctx))
    channel = service.visit_channel(links.visit_id)
    async with ctx.bus.subscribe(channel) as sub:  # returns once the bus confirmed it
        with pytest.raises(RuntimeError):
            async with ctx.transaction() as session:
                visit = await session.get(Visit, links.visit_id)
                assert visit is not None
                await service.append_event(session, app=ctx, visit=visit, kind="noted")
                raise RuntimeError("rolled back")
        # A marker published on the same channel after it is the barrier: the channel is
        # ordered, so whatever had been published before arrives before it.
        await ctx.bus.publish(channel, {"kind": "marker", "n": 1})
        assert await sub.get(timeout=3) == (channel, {"kind": "marker", "n": 1})
        async with ctx.transaction() as session:
            await lobby.join(session, app=ctx, token=Links.token(links.patient),
                                           connection_id="page0001.abc")
            await ctx.bus.publish(channel, {"kind": "marker", "n": 2})
            # not before commit
            assert await sub.get(timeout=3) == (channel, {"kind": "marker", "n": 2})
        kinds = []
        for _ in range(2):
            _channel, message = await sub.get(timeout=3)
            kinds.append(message["kind"])
            assert message["seat"]["state"] == "waiting" and message["seat"]["connected"]
            assert message["seat"]["session"] == "page0001"
        assert kinds == ["joined", "connected"]
    async with ctx.transaction() as session:
        stored = (await session.execute(select(VisitEvent.kind).where(
            VisitEvent.visit_id == links.visit_id).order_by(VisitEvent.id))).scalars().all()
    assert list(stored) == ["joined", "connected"]


async def test_it_caps_the_mesh_and_refuses_admitting_someone_not_waiting(
    ctx: AppContext,
) -> None:
    links = await make_visit(ctx, await seed_org(ctx), patients=3)
    ctx.settings.__dict__["mesh_max_participants"] = 2  # frozen model: test-only override
    try:
        async with ctx.transaction() as session:
            visit, doc = await lobby.join(session, app=ctx, token=Links.token(links.provider),
                                          connection_id="docpage1.a")
            _, p1 = await lobby.join(session, app=ctx, token=Links.token(links.patient),
                                     connection_id="pat1page.a")
            _, p2 = await lobby.join(session, app=ctx,
                                     token=Links.token(links.extra["patient2"]),
                                     connection_id="pat2page.a")
            await lobby.admit(session, app=ctx, visit=visit, actor=doc, target_id=p1.id)
            with pytest.raises(Exception) as full:
                await lobby.admit(session, app=ctx, visit=visit, actor=doc, target_id=p2.id)
            assert getattr(full.value, "code", "") == "visit_full"
            pid3 = participant_id_of(Links.token(links.extra["patient3"]))
            assert pid3 is not None
            with pytest.raises(Exception) as invited:
                await lobby.admit(session, app=ctx, visit=visit, actor=doc, target_id=pid3)
            assert getattr(invited.value, "code", "") == "not_waiting"
            assert visit.status == "active" and visit.started_at is not None
    finally:
        ctx.settings.__dict__["mesh_max_participants"] = 6


async def test_it_opens_adhoc_visits_from_now(ctx: AppContext) -> None:
    seeded = await seed_org(ctx)
    async with ctx.transaction() as session:
        visit = await service.open_adhoc_visit(session, app=ctx,
                                               organisation_id=seeded.organisation.id,
                                               kind="devicetest")
        with pytest.raises(InvalidInput):
            await service.open_adhoc_visit(session, app=ctx,
                                           organisation_id=seeded.organisation.id, kind="x")
    assert visit.kind == "devicetest" and visit.appointment_id is None
    assert visit.window_start is not None and visit.window_start <= utcnow()


async def test_it_sends_a_returning_patient_to_the_lobby_when_the_clinician_has_left(
    ctx: AppContext,
) -> None:
    """An admitted patient whose page drops resumes straight into the call while the
    clinician is in it, and waits in the lobby again once the clinician has gone."""
    links = await make_visit(ctx, await seed_org(ctx))
    async with ctx.transaction() as session:
        visit, doc = await lobby.join(session, app=ctx, token=Links.token(links.provider),
                                      connection_id="docpage1.a")
        _, pat = await lobby.join(session, app=ctx, token=Links.token(links.patient),
                                  connection_id="patpage1.a")
        await lobby.admit(session, app=ctx, visit=visit, actor=doc, target_id=pat.id)
        doc_id, pat_id = doc.id, pat.id
    async with ctx.transaction() as session:
        await lobby.disconnect(session, app=ctx, participant_id=pat_id,
                               connection_id="patpage1.a")
    async with ctx.transaction() as session:  # the clinician is still there: resume
        _, pat = await lobby.join(session, app=ctx, token=Links.token(links.patient),
                                  connection_id="patpage1.b")
        assert pat.lobby_state == "admitted"
    async with ctx.transaction() as session:
        await lobby.disconnect(session, app=ctx, participant_id=pat_id,
                               connection_id="patpage1.b")
        await lobby.disconnect(session, app=ctx, participant_id=doc_id,
                               connection_id="docpage1.a")
    async with ctx.transaction() as session:  # nobody to see them: back to the lobby
        _, pat = await lobby.join(session, app=ctx, token=Links.token(links.patient),
                                  connection_id="patpage1.c")
        assert pat.lobby_state == "waiting" and pat.waiting_since is not None
    async with ctx.transaction() as session:  # the clinician returns and admits again
        visit, doc = await lobby.join(session, app=ctx, token=Links.token(links.provider),
                                      connection_id="docpage1.b")
        await lobby.admit(session, app=ctx, visit=visit, actor=doc, target_id=pat_id)
    async with ctx.db.read() as session:
        kinds = list(await session.scalars(select(VisitEvent.kind).where(
            VisitEvent.participant_id == pat_id).order_by(VisitEvent.id)))
    assert kinds.count("admitted") == 2 and kinds.count("joined") == 2


async def test_it_puts_every_clinician_step_in_the_audit_log(ctx: AppContext) -> None:
    """Issue 15 item 14: admit, back to the lobby, invite, remove and end reach the
    organisation's audit log with the clinician's EHR user id and no patient reference."""
    from openvisit.models import AuditLog

    links = await make_visit(ctx, await seed_org(ctx))
    async with ctx.transaction() as session:
        visit, doc = await lobby.join(session, app=ctx, token=Links.token(links.provider),
                                      connection_id="docpage1.a")
        _, pat = await lobby.join(session, app=ctx, token=Links.token(links.patient),
                                  connection_id="patpage1.a")
        await lobby.admit(session, app=ctx, visit=visit, actor=doc, target_id=pat.id)
        await lobby.return_to_lobby(session, app=ctx, visit=visit, actor=doc, target_id=pat.id)
        guest, _ = await lobby.invite(session, app=ctx, visit=visit, actor=doc, role="guest")
        await lobby.remove(session, app=ctx, visit=visit, actor=doc, target_id=guest.id)
        await lobby.end_visit(session, app=ctx, visit=visit, actor=doc)
        org_id, pat_id = visit.organisation_id, pat.id
    async with ctx.db.read() as session:
        entries = list(await session.scalars(select(AuditLog).where(
            AuditLog.action.like("visit.%")).order_by(AuditLog.id)))
        rows = [(e.action, e.actor, e.object_id, e.organisation_id, dict(e.after or {}))
                for e in entries]
    assert [r[0] for r in rows] == ["visit.admit", "visit.return_to_lobby", "visit.invite",
                                    "visit.remove", "visit.end"]
    assert {r[1] for r in rows} == {"Practitioner/7"} and {r[3] for r in rows} == {org_id}
    assert rows[0][2] == str(pat_id) and rows[0][4]["role"] == "patient"
    assert "Patient/1" not in str(rows)

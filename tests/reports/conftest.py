"""Report fixtures: one clinic's March built through the real services (feed hook → notify
jobs → outbox, visit pages, lobby join/admit/leave/end, quality samples, receipts, STOP), and
signed-in browsers of that clinic."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import time_machine
from fastapi import FastAPI

from openvisit.context import AppContext
from openvisit.models import Appointment, Organisation, StaffAccount
from openvisit.models.visit import Participant
from openvisit.notify import providers
from openvisit.notify.inbound import apply_reply, apply_status
from openvisit.visits import lobby
from openvisit.visits import service as visits
from tests.notify.support import Site, feed, logs, make_appointment, make_site, run_jobs
from tests.portal.conftest import Browser, password_hash, sign_in

ZONE = "Europe/Prague"  # UTC+1 in March 2030 (summer time starts on the 31st)
T0 = datetime(2030, 3, 11, 8, 0, tzinfo=UTC)
SENDER = "+420700000001"
MOBILE_A, MOBILE_C = "+420601123456", "+420601999888"
EMAIL_B = "pat.example@example.org"
RANGE = {"since": "2030-03-01", "until": "2030-03-31"}


@dataclass
class March:
    site: Site
    endpoint_name: str
    visit_a: uuid.UUID
    visit_b: uuid.UUID
    appointments: dict[str, uuid.UUID]


async def _visit(ctx: AppContext, appointment_id: uuid.UUID, provider: str
                 ) -> tuple[uuid.UUID, str, str]:
    async with ctx.transaction() as session:
        appt = await session.get(Appointment, appointment_id)
        assert appt is not None
        visit = await visits.open_visit(session, app=ctx, appointment=appt)
        doctor = await visits.seat_link(session, app=ctx, visit=visit, role="provider",
                                        ehr_user_id=provider)
        patient = await visits.seat_link(session, app=ctx, visit=visit, role="patient",
                                         patient_ref=ctx.refs.read(appt))
    return visit.id, doctor.rsplit("/v/", 1)[1], patient.rsplit("/v/", 1)[1]


async def _join(ctx: AppContext, token: str, conn: str,
                devices: str | None = None) -> Participant:
    async with ctx.transaction() as session:
        _visit_row, seat = await lobby.join(session, app=ctx, token=token, connection_id=conn,
                                            devices=devices)
    return seat


async def _admit(ctx: AppContext, doctor: str, patient_id: uuid.UUID) -> None:
    async with ctx.transaction() as session:
        visit, actor = await lobby.staff_seat(session, app=ctx, token=doctor)
        await lobby.admit(session, app=ctx, visit=visit, actor=actor, target_id=patient_id)


async def _leave(ctx: AppContext, patient: str) -> None:
    async with ctx.transaction() as session:
        visit, seat = await visits.resolve_link(session, app=ctx, token=patient)
        await lobby.leave(session, app=ctx, visit=visit, participant=seat)


async def _end(ctx: AppContext, doctor: str) -> None:
    async with ctx.transaction() as session:
        visit, actor = await lobby.staff_seat(session, app=ctx, token=doctor)
        await lobby.end_visit(session, app=ctx, visit=visit, actor=actor)


async def _samples(ctx: AppContext, visit_id: uuid.UUID, pid: uuid.UUID,
                   samples: list[dict[str, float]], path: str) -> None:
    for sample in samples:
        async with ctx.transaction() as session:
            await lobby.record_quality(session, visit_id=visit_id, participant_id=pid,
                                       sample=sample, media_path=path)  # type: ignore[arg-type]


@pytest.fixture
def web(ctx: AppContext) -> FastAPI:
    from openvisit.app import create_app

    return create_app(ctx=ctx)


@pytest.fixture
async def march(ctx: AppContext, web: FastAPI) -> AsyncIterator[March]:
    """The March clinic of :func:`build_march`."""
    yield await build_march(ctx, web)
    await providers.close_all(ctx)


async def build_march(ctx: AppContext, web: FastAPI) -> March:
    """Three appointments of a clinic with a monthly allocation of one visit:

    - A (Cardiology, Practitioner/7, SMS delivered): the patient opens the link, passes the
      device check, waits 4 minutes, talks 20 minutes; quality samples from both seats.
    - B (Dermatology, Practitioner/8, e-mail, Spanish): opens, device check failed, waits
      90 s, stays 30 s; over the allocation (the month's second visit).
    - C (Cardiology, SMS): never opened; the EHR marks it a no-show (S26); the patient
      replies STOP.
    """
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="http://t")
    with time_machine.travel(T0, tick=False) as clock:
        site = await make_site(ctx, slug="march", tz=ZONE, offsets=[], number=SENDER)
        async with ctx.transaction() as session:
            org = await session.get(Organisation, site.organisation_id)
            assert org is not None
            org.allocation_limit = 1
        appts: dict[str, uuid.UUID] = {}
        for key, start, dept, doctor, contact, lang in (
                ("A", T0 + timedelta(hours=1), "Cardiology", "Practitioner/7",
                 {"mobile": MOBILE_A}, "en"),
                ("B", T0 + timedelta(days=1, hours=2), "Dermatology", "Practitioner/8",
                 {"mobile": None, "email": EMAIL_B}, "es"),
                ("C", T0 + timedelta(days=2, hours=1), "Cardiology", "Practitioner/7",
                 {"mobile": MOBILE_C}, "en")):
            appts[key] = await make_appointment(ctx, site, start_at=start, department=dept,
                                                language=lang, **contact)  # type: ignore[arg-type]
            async with ctx.transaction() as session:
                appt = await session.get(Appointment, appts[key])
                assert appt is not None
                appt.provider_ehr_id = doctor
            await run_jobs(ctx)
            clock.shift(timedelta(minutes=1))
        sms_a = next(m for m in await logs(ctx, appts["A"]))
        assert sms_a.provider_message_id, "the outbox names its message"
        await apply_status(ctx, provider=sms_a.provider,
                           provider_message_id=sms_a.provider_message_id, status="delivered")
        await apply_reply(ctx, from_number=MOBILE_C, to_number=SENDER, text="STOP")

        visit_a, doctor_a, patient_a = await _visit(ctx, appts["A"], "Practitioner/7")
        visit_b, doctor_b, patient_b = await _visit(ctx, appts["B"], "Practitioner/8")
        await _visit(ctx, appts["C"], "Practitioner/7")

        clock.move_to(T0 + timedelta(minutes=55))
        assert (await http.get(f"/v/{patient_a}")).status_code == 200  # link opened
        assert (await http.get(f"/v/{patient_a}")).status_code == 200  # counted once
        clock.move_to(T0 + timedelta(minutes=56))
        seat_a = await _join(ctx, patient_a, "pa.1", devices="ready")
        clock.move_to(T0 + timedelta(minutes=57))
        doc_a = await _join(ctx, doctor_a, "da.1")
        clock.move_to(T0 + timedelta(minutes=60))
        await _admit(ctx, doctor_a, seat_a.id)
        clock.shift(timedelta(minutes=1))
        await _samples(ctx, visit_a, seat_a.id, [
            {"rtt_ms": 50, "jitter_ms": 5, "packet_loss_pct": 0, "bitrate_kbps": 800,
             "frame_width": 1280, "frame_height": 720},
            {"rtt_ms": 150, "jitter_ms": 20, "packet_loss_pct": 2, "bitrate_kbps": 1200,
             "frame_width": 320, "frame_height": 240},
            {"rtt_ms": 100, "jitter_ms": 10, "packet_loss_pct": 1, "bitrate_kbps": 1000,
             "frame_width": 640, "frame_height": 480}], "host")
        await _samples(ctx, visit_a, doc_a.id, [{"rtt_ms": 700}, {"rtt_ms": 500}], "relay")
        clock.move_to(T0 + timedelta(minutes=80))
        await _leave(ctx, patient_a)
        clock.move_to(T0 + timedelta(minutes=81))
        await _end(ctx, doctor_a)

        clock.move_to(T0 + timedelta(days=1, hours=1, minutes=58))
        assert (await http.get(f"/v/{patient_b}")).status_code == 200
        clock.shift(timedelta(minutes=1))
        seat_b = await _join(ctx, patient_b, "pb.1", devices="failed")
        clock.shift(timedelta(minutes=1))
        await _join(ctx, doctor_b, "db.1")
        clock.shift(timedelta(seconds=30))
        await _admit(ctx, doctor_b, seat_b.id)
        clock.shift(timedelta(seconds=30))
        await _leave(ctx, patient_b)
        clock.shift(timedelta(seconds=90))
        await _end(ctx, doctor_b)

        clock.move_to(T0 + timedelta(days=2, hours=2))
        await feed(ctx, appts["C"], "noshow", status="noshow")
    await http.aclose()
    async with ctx.transaction() as session:
        for name, roles in (("rita", ["reporter"]), ("ada", ["org_admin", "reporter"]),
                            ("otto", ["approver"])):
            session.add(StaffAccount(organisation_id=site.organisation_id, username=name,
                                     password_hash=password_hash(), roles=roles))
    return March(site, "Test EHR", visit_a, visit_b, appts)


@pytest.fixture
async def browser(web: FastAPI, march: March) -> AsyncIterator[Callable[[str], Awaitable[
        Browser]]]:
    """``await browser("rita")``: a signed-in browser of the March clinic."""
    opened: list[httpx.AsyncClient] = []

    async def make(name: str) -> Browser:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=web),
                                 base_url="http://testserver")
        opened.append(http)
        assert (await sign_in(http, name)).status_code == 303
        me = (await http.get("/api/portal/me")).json()
        return Browser(http=http, csrf=me["csrf_token"])

    yield make
    for http in opened:
        await http.aclose()

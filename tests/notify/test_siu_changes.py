"""What real SIU messages do to the patient's messages and link (issue 11, items 3, 5, 6).

Each test feeds SIU messages of the variation corpus through the real feed, lets the worker
send what was planned (outbox provider), and reads back message logs, jobs and the join link.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select

from openvisit.context import AppContext
from openvisit.errors import Gone
from openvisit.feed.intake import SiuFeed
from openvisit.models import Appointment, Visit
from openvisit.visits.service import open_visit, resolve_link, seat_link
from tests.feed.support import make_endpoint, read_ack
from tests.hl7v2.corpus import SETUP, Booking, Variation, message
from tests.hl7v2.support import replace_field
from tests.notify.support import live, logs, planned, run_jobs

NOW = datetime(2030, 3, 9, 15, 0, tzinfo=UTC)
FIRST = datetime(2030, 3, 12, 15, 30, tzinfo=UTC)
MOVED = datetime(2030, 3, 14, 16, 0, tzinfo=UTC)
#: Time between two messages: more than the sending number's rate limit window.
GAP = timedelta(minutes=2)


def siu(family: str, booking: Booking, **edits: str) -> bytes:
    """A corpus message with fields replaced (``SCH_11="..."`` → SCH-11)."""
    raw = message(family, booking, Variation())
    for name, value in edits.items():
        segment, number = name.split("_")
        raw = replace_field(raw, segment, int(number), value)
    return raw


async def site(app: AppContext, family: str) -> None:
    sender, tz, region = SETUP[family]
    await make_endpoint(app, senders=(sender,), timezone=tz, region=region, sms=True)


async def send(app: AppContext, raw: bytes) -> str:
    reply = await SiuFeed(app).handle(raw)
    ack = read_ack(reply.ack or b"")
    assert not reply.temporary, ack.text
    return ack.code


async def the_appointment(app: AppContext) -> Appointment:
    async with app.transaction() as session:
        return (await session.scalars(select(Appointment))).one()


async def test_it_moves_an_appointment_whose_s13_changes_only_tq1(app: AppContext) -> None:
    # A v2.5.1 feed that still sends the deprecated SCH-11 and, on reschedule, changes only
    # TQ1: TQ1 wins from v2.5, so the visit moves, the patient hears so, the reminders move.
    booked = Booking(start=FIRST, control_id="M-1", phone="+12025550142")
    stale = f"^^30^{FIRST:%Y%m%d%H%M%S}+0000^{FIRST + timedelta(minutes=30):%Y%m%d%H%M%S}+0000"
    moved = dataclasses.replace(booked, start=MOVED, control_id="M-2", event="S13")
    with time_machine.travel(NOW, tick=False) as clock:
        await site(app, "v251")
        assert await send(app, siu("v251", booked, SCH_11=stale)) == "AA"
        await run_jobs(app)
        clock.shift(GAP)
        assert await send(app, siu("v251", moved, SCH_11=stale)) == "AA"
        await run_jobs(app)
        appointment = await the_appointment(app)
        items = await planned(app, appointment.id)

    assert (appointment.start_at, appointment.end_at) == (MOVED, MOVED + timedelta(minutes=30))
    assert [(log.template, log.status) for log in await logs(app, appointment.id)] == [
        ("booked", "sent"),
        ("rescheduled", "sent"),
    ]
    reminders = {(p.start_at, p.offset, p.state) for p in items if p.purpose == "reminder"}
    assert reminders == {
        (FIRST, 1440, "cancelled"),
        (FIRST, 60, "cancelled"),
        (MOVED, 1440, "pending"),
        (MOVED, 60, "pending"),
    }


@pytest.mark.parametrize(("ending", "family"), [("S15", "epic23"), ("S26", "v28")])
async def test_it_books_again_and_confirms_an_s12_for_an_ended_appointment(
    app: AppContext, ending: str, family: str
) -> None:
    phone = {"v28": "+420601123456"}.get(family, "+12025550142")
    booking = Booking(start=FIRST, control_id="R-1", phone=phone)
    ended = dataclasses.replace(booking, control_id="R-2", event=ending)
    again = dataclasses.replace(booking, control_id="R-3", start=MOVED)
    with time_machine.travel(NOW, tick=False) as clock:
        await site(app, family)
        assert await send(app, siu(family, booking)) == "AA"
        await run_jobs(app)
        clock.shift(GAP)
        assert await send(app, siu(family, ended)) == "AA"
        await run_jobs(app)
        clock.shift(GAP)
        assert (await the_appointment(app)).status in ("cancelled", "noshow")
        # A new booking without SCH-25: the EHR booked the visit again.
        assert await send(app, siu(family, again, SCH_25="")) == "AA"
        await run_jobs(app)
        appointment = await the_appointment(app)
        items = await planned(app, appointment.id)

    assert (appointment.status, appointment.start_at) == ("booked", MOVED)
    sent = [log.template for log in await logs(app, appointment.id) if log.status == "sent"]
    assert sent[0] == "booked" and sent[-1] == "booked"
    assert {(p.start_at, p.offset) for p in live(items) if p.purpose == "reminder"} == {
        (MOVED, 1440),
        (MOVED, 60),
    }


async def patient_token(app: AppContext, appointment: Appointment) -> str:
    async with app.transaction() as session:
        visit = await open_visit(session, app=app, appointment=appointment)
        link = await seat_link(session, app=app, visit=visit, role="patient",
                               patient_ref=app.refs.read(appointment))
    return link.rsplit("/", 1)[1]


async def test_it_ends_the_future_of_a_discontinued_appointment(app: AppContext) -> None:
    booking = Booking(start=FIRST, control_id="D-1", phone="+12025550142")
    stopped = dataclasses.replace(booking, control_id="D-2", event="S16")
    with time_machine.travel(NOW, tick=False) as clock:
        await site(app, "epic23")
        assert await send(app, siu("epic23", booking)) == "AA"
        await run_jobs(app)
        token = await patient_token(app, await the_appointment(app))
        async with app.transaction() as session:
            await resolve_link(session, app=app, token=token, now=FIRST)  # works until S16
        clock.shift(GAP)
        assert await send(app, siu("epic23", stopped, SCH_25="DC^Discontinued")) == "AA"
        await run_jobs(app)
        appointment = await the_appointment(app)
        items = await planned(app, appointment.id)
        async with app.transaction() as session:
            with pytest.raises(Gone) as closed:
                await resolve_link(session, app=app, token=token, now=FIRST)
            visit = (await session.scalars(select(Visit))).one()

    assert appointment.status == "cancelled"
    assert not [p for p in items if p.purpose == "reminder" and p.state == "pending"]
    assert closed.value.code == "visit_ended"
    assert visit.window_end is not None and visit.window_end <= NOW + GAP
    # The patient had been told of the visit, and it has not begun: they hear it is off.
    assert [log.template for log in await logs(app, appointment.id)] == ["booked", "cancelled"]


async def test_it_reopens_the_link_when_a_cancelled_appointment_is_booked_again(
    app: AppContext,
) -> None:
    booking = Booking(start=FIRST, control_id="O-1", phone="+12025550142")
    with time_machine.travel(NOW, tick=False):
        await site(app, "epic23")
        assert await send(app, siu("epic23", booking)) == "AA"
        token = await patient_token(app, await the_appointment(app))
        cancel = dataclasses.replace(booking, control_id="O-2", event="S15")
        assert await send(app, siu("epic23", cancel)) == "AA"
        async with app.transaction() as session:
            with pytest.raises(Gone):
                await resolve_link(session, app=app, token=token, now=FIRST)
        again = dataclasses.replace(booking, control_id="O-3")
        assert await send(app, siu("epic23", again, SCH_25="")) == "AA"
        async with app.transaction() as session:
            visit, _seat = await resolve_link(session, app=app, token=token, now=FIRST)

    assert visit.window_end is not None and visit.window_end > FIRST

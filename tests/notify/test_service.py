"""Planning messages from feed changes, with time frozen: confirmations, reminders, quiet hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import time_machine

from openvisit.context import AppContext
from tests.notify.support import feed, live, logs, make_appointment, make_site, planned, run_jobs

NOW = datetime(2030, 3, 11, 10, 0, tzinfo=UTC)  # Monday 11:00 in Prague (UTC+1)
START = datetime(2030, 3, 13, 9, 0, tzinfo=UTC)  # Wednesday 10:00 in Prague


async def test_it_confirms_now_and_schedules_reminders_before_the_start(app: AppContext) -> None:
    with time_machine.travel(NOW, tick=False):
        site = await make_site(app)
        appt = await make_appointment(app, site, start_at=START)
        items = await planned(app, appt)
    confirmation = [p for p in items if p.purpose == "confirmation"]
    reminders = sorted((p.offset, p.due_at) for p in items if p.purpose == "reminder")
    assert [(c.message, c.state, c.due_at) for c in confirmation] == [("booked", "pending", NOW)]
    assert reminders == [(60, START - timedelta(minutes=60)), (1440, START - timedelta(days=1))]


async def test_it_plans_nothing_new_when_the_same_change_arrives_again(app: AppContext) -> None:
    with time_machine.travel(NOW, tick=False):
        site = await make_site(app)
        appt = await make_appointment(app, site, start_at=START)
        before = await planned(app, appt)
        await feed(app, appt, "booked")
        await feed(app, appt, "modified")  # an S14 that changes nothing the patient sees
        await run_jobs(app)
        await feed(app, appt, "booked")
        after = await planned(app, appt)
    assert [p.key for p in after] == [p.key for p in before]
    assert [log.template for log in await logs(app, appt)] == ["booked"]


async def test_it_moves_reminders_and_confirms_each_genuine_reschedule(app: AppContext) -> None:
    later, latest = START + timedelta(days=1), START + timedelta(days=2)
    with time_machine.travel(NOW, tick=False):
        site = await make_site(app)
        appt = await make_appointment(app, site, start_at=START)
        await run_jobs(app)  # the booking confirmation goes out
        await feed(app, appt, "rescheduled", start_at=later)
        await feed(app, appt, "rescheduled", start_at=later)  # resent: nothing new
        await run_jobs(app)
        await feed(app, appt, "rescheduled", start_at=latest)
        await run_jobs(app)
        await feed(app, appt, "rescheduled", start_at=START)  # and back to the first time
        await run_jobs(app)
        items = await planned(app, appt)
    sent = [(log.template, log.status) for log in await logs(app, appt)]
    assert sent == [("booked", "sent"), ("rescheduled", "sent"), ("rescheduled", "sent"),
                    ("rescheduled", "sent")]
    pending_reminders = sorted((p.start_at, p.offset) for p in items
                               if p.purpose == "reminder" and p.state == "pending")
    assert pending_reminders == [(START, 60), (START, 1440)]
    cancelled = {(p.start_at, p.offset) for p in items if p.state == "cancelled"}
    assert cancelled == {(later, 60), (later, 1440), (latest, 60), (latest, 1440),
                         (START, 60), (START, 1440)}


async def test_it_supersedes_a_confirmation_that_has_not_gone_out(app: AppContext) -> None:
    with time_machine.travel(NOW, tick=False):
        site = await make_site(app, offsets=[])
        appt = await make_appointment(app, site, start_at=START)
        await feed(app, appt, "rescheduled", start_at=START + timedelta(hours=2))
        items = await planned(app, appt)
        await run_jobs(app)
    assert [(p.message, p.state) for p in items] == [("booked", "cancelled"),
                                                     ("booked", "pending")]
    assert [log.template for log in await logs(app, appt)] == ["booked"]


async def test_it_cancels_reminders_and_tells_a_patient_who_knew(app: AppContext) -> None:
    with time_machine.travel(NOW, tick=False):
        site = await make_site(app)
        appt = await make_appointment(app, site, start_at=START)
        await run_jobs(app)
        await feed(app, appt, "cancelled", status="cancelled")
        await feed(app, appt, "cancelled", status="cancelled")  # resent
        await run_jobs(app)
        items = await planned(app, appt)
    assert not [p for p in live(items) if p.purpose == "reminder"]
    assert [log.template for log in await logs(app, appt)] == ["booked", "cancelled"]


async def test_it_says_nothing_about_a_cancelled_visit_never_announced(app: AppContext) -> None:
    with time_machine.travel(NOW, tick=False):
        site = await make_site(app)
        appt = await make_appointment(app, site, start_at=START)
        await feed(app, appt, "deleted", status="cancelled")
        await run_jobs(app)
        items = await planned(app, appt)
    assert live(items) == []
    assert await logs(app, appt) == []


async def test_it_drops_pending_messages_on_a_no_show(app: AppContext) -> None:
    with time_machine.travel(NOW, tick=False):
        site = await make_site(app)
        appt = await make_appointment(app, site, start_at=START)
        await run_jobs(app)
        await feed(app, appt, "noshow", status="noshow")
        items = await planned(app, appt)
    assert [p.message for p in live(items)] == ["booked"]


async def test_it_holds_a_confirmation_until_quiet_hours_end(app: AppContext) -> None:
    evening = datetime(2030, 3, 11, 21, 30, tzinfo=UTC)  # 22:30 in Prague
    with time_machine.travel(evening, tick=False):
        site = await make_site(app, quiet=("21:00", "08:00"), offsets=[60])
        early = datetime(2030, 3, 13, 6, 30, tzinfo=UTC)  # 07:30 in Prague
        appt = await make_appointment(app, site, start_at=early)
        items = await planned(app, appt)
    by_purpose = {p.purpose: p.due_at for p in items}
    assert by_purpose["confirmation"] == datetime(2030, 3, 12, 7, 0, tzinfo=UTC)  # 08:00 local
    # 06:30 local is quiet and 08:00 is after the visit: the evening before, just before 21:00.
    assert by_purpose["reminder"] == datetime(2030, 3, 12, 19, 59, tzinfo=UTC)


async def test_it_sends_at_night_when_the_visit_starts_before_morning(app: AppContext) -> None:
    night = datetime(2030, 3, 11, 22, 0, tzinfo=UTC)  # 23:00 in Prague
    with time_machine.travel(night, tick=False):
        site = await make_site(app, quiet=("21:00", "08:00"), offsets=[])
        appt = await make_appointment(app, site, start_at=night + timedelta(hours=7))
        items = await planned(app, appt)
    assert [(p.purpose, p.due_at) for p in items] == [("confirmation", night)]


async def test_it_never_schedules_a_reminder_in_the_past(app: AppContext) -> None:
    with time_machine.travel(NOW, tick=False):
        site = await make_site(app, offsets=[1440, 60])
        appt = await make_appointment(app, site, start_at=NOW + timedelta(hours=2))
        items = await planned(app, appt)
    assert [(p.offset, p.due_at) for p in items if p.purpose == "reminder"] == [
        (60, NOW + timedelta(hours=1))]


async def test_it_plans_nothing_when_disabled_or_without_contacts(app: AppContext) -> None:
    with time_machine.travel(NOW, tick=False):
        off = await make_site(app, slug="off", enabled=False)
        on = await make_site(app, slug="on")
        disabled = await make_appointment(app, off, start_at=START)
        no_contact = await make_appointment(app, on, start_at=START, mobile=None)
        assert await planned(app, disabled) == []
        assert await planned(app, no_contact) == []


async def test_it_sends_only_reminders_when_confirmations_are_off(app: AppContext) -> None:
    with time_machine.travel(NOW, tick=False):
        site = await make_site(app, confirmations=False)
        appt = await make_appointment(app, site, start_at=START)
        items = await planned(app, appt)
    assert {p.purpose for p in items} == {"reminder"}

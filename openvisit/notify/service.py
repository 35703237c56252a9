"""Plan an appointment's messages when the scheduling feed changes it.

Called by the HL7 SIU feed in its own transaction, right after it upserted the appointment
and its contacts; every job written here commits (or vanishes) with that change.

What the patient is told depends on what they were already told, not on the HL7 event
name: each planned message is a :class:`~openvisit.models.Notification` with a fingerprint
of what it says (start time and department). A resent message, or one that changes nothing
the patient sees, plans nothing; a genuine second reschedule plans a new message; moving
back to an earlier time is a change too. Confirmations not yet sent are superseded (cancelled)
by newer ones, and a cancellation is sent only if the patient had heard of the visit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit import jobs
from openvisit.context import AppContext
from openvisit.logging import get_logger
from openvisit.models import Appointment, EhrEndpoint, Notification, utcnow
from openvisit.notify import repository as repo
from openvisit.notify.plan import QuietHours, fingerprint, release_time, reminder_times

log = get_logger(__name__)

Change = Literal["booked", "rescheduled", "modified", "cancelled", "deleted", "noshow"]
SEND_JOB = "notify.send"
#: Appointment statuses after which nothing but a cancellation notice is sent.
ENDED_STATUSES = frozenset({"cancelled", "noshow", "entered-in-error", "fulfilled"})
#: Job states meaning the patient has (or may have) received the message.
TOLD_STATES = frozenset({"running", "done", "dead"})


async def on_appointment_change(
    session: AsyncSession, *, app: AppContext, appointment: Appointment, change: Change
) -> None:
    """Enqueue, supersede and cancel ``notify.send`` jobs for ``appointment``.

    Idempotent: calling it again with nothing changed writes nothing. Never sends itself;
    raises nothing for missing settings or contacts (then it only cancels pending jobs).
    """
    now = utcnow()
    settings = await repo.sms_settings(session, appointment.endpoint_id)
    endpoint = await session.get(EhrEndpoint, appointment.endpoint_id)
    history = await repo.notifications(session, appointment.id)
    contacts = await repo.contacts(session, appointment.id)
    start_at = appointment.start_at
    enabled = bool(settings and settings.enabled and contacts and start_at)
    ended = change in ("cancelled", "deleted", "noshow") or appointment.status in ENDED_STATUSES
    quiet = (QuietHours.parse(settings.quiet_hours_start, settings.quiet_hours_end,
                              tz=endpoint.timezone if endpoint else None)
             if settings else None)

    wanted: dict[int, datetime] = {}
    if enabled and not ended and start_at is not None and settings is not None:
        wanted = reminder_times(start_at, list(settings.reminder_offsets_minutes or []),
                                now=now, quiet=quiet)
    added = await _sync_reminders(session, appointment=appointment, history=history,
                                  wanted=wanted)

    confirmations = bool(enabled and settings and settings.confirmations_enabled)
    planned: str | None = None
    if change == "noshow" or appointment.status in ("noshow", "fulfilled"):
        # Over without being called off: nothing to tell the patient, nothing left to send.
        await _cancel_pending(session, history, purposes=("confirmation",))
    elif ended:
        planned = await _plan_cancellation(session, appointment=appointment, history=history,
                                           allowed=confirmations, now=now, quiet=quiet)
    else:
        planned = await _plan_confirmation(session, appointment=appointment, history=history,
                                           allowed=confirmations, now=now, quiet=quiet)
    log.info("notifications_planned", appointment_id=str(appointment.id), change=change,
             confirmation=planned, reminders_added=added, reminders_wanted=len(wanted))


async def _cancel_pending(
    session: AsyncSession, history: list[tuple[Notification, str | None]], *,
    purposes: tuple[str, ...],
) -> list[Notification]:
    cancelled = []
    for note, state in history:
        if note.purpose in purposes and state == "pending":
            await jobs.cancel(session, idempotency_key=note.job_key)
            cancelled.append(note)
    return cancelled


async def _sync_reminders(
    session: AsyncSession, *, appointment: Appointment,
    history: list[tuple[Notification, str | None]], wanted: dict[int, datetime],
) -> int:
    """Cancel pending reminders no longer wanted (old start time, removed offset) and add
    the missing ones; a reminder already sent for the same start time is not repeated."""
    start_at = appointment.start_at
    reminders = [(n, s) for n, s in history if n.purpose == "reminder"]
    for note, state in reminders:
        keep = start_at is not None and note.start_at == start_at and note.offset_minutes in wanted
        if state == "pending" and not keep:
            await jobs.cancel(session, idempotency_key=note.job_key)
    added = 0
    for offset, due in sorted(wanted.items()):
        if any(n.offset_minutes == offset and n.start_at == start_at and s != "cancelled"
               for n, s in reminders):
            continue
        assert start_at is not None
        key = (f"notify:{appointment.id}:reminder:{offset}m:{int(start_at.timestamp())}:"
               f"{len(history) + added}")
        await _enqueue(session, appointment=appointment, key=key, purpose="reminder",
                       message="reminder", due_at=due, offset=offset)
        added += 1
    return added


async def _plan_confirmation(
    session: AsyncSession, *, appointment: Appointment,
    history: list[tuple[Notification, str | None]], allowed: bool, now: datetime,
    quiet: QuietHours | None,
) -> str | None:
    start_at = appointment.start_at
    if start_at is None:
        return None
    fp = fingerprint(start_at=start_at, department=appointment.department)
    messages = [(n, s) for n, s in history if n.purpose in ("confirmation", "cancellation")]
    pending = [n for n, s in messages if s == "pending"]
    if any(n.purpose == "confirmation" and n.fingerprint == fp for n in pending):
        return None  # the same news is already on its way
    superseded = await _cancel_pending(session, history, purposes=("confirmation",
                                                                   "cancellation"))
    told = next((n for n, s in reversed(messages) if s in TOLD_STATES), None)
    if told is not None and told.purpose == "confirmation" and told.fingerprint == fp:
        return None  # the patient already knows exactly this
    if not allowed or start_at <= now:
        return None
    if told is None or told.purpose == "cancellation":
        message = "booked"
    elif told.start_at != start_at:
        message = "rescheduled"
    else:
        message = "modified"
    if any(n.message == "booked" for n in superseded) and told is None:
        message = "booked"  # the first news the patient gets is a booking
    key = f"notify:{appointment.id}:{message}:{int(start_at.timestamp())}:{fp[:8]}:{len(history)}"
    await _enqueue(session, appointment=appointment, key=key, purpose="confirmation",
                   message=message, due_at=release_time(now, quiet=quiet, start_at=start_at),
                   fingerprint_=fp)
    return message


async def _plan_cancellation(
    session: AsyncSession, *, appointment: Appointment,
    history: list[tuple[Notification, str | None]], allowed: bool, now: datetime,
    quiet: QuietHours | None,
) -> str | None:
    await _cancel_pending(session, history, purposes=("confirmation",))
    messages = [(n, s) for n, s in history if n.purpose in ("confirmation", "cancellation")]
    if any(n.purpose == "cancellation" and s == "pending" for n, s in messages):
        return None
    told = next((n for n, s in reversed(messages) if s in TOLD_STATES), None)
    start_at = appointment.start_at
    if told is None or told.purpose == "cancellation":
        return None  # never heard of it, or already told it is off
    if not allowed or start_at is None or start_at <= now:
        return None
    fp = fingerprint(start_at=start_at, department=appointment.department)
    key = f"notify:{appointment.id}:cancelled:{int(start_at.timestamp())}:{len(history)}"
    await _enqueue(session, appointment=appointment, key=key, purpose="cancellation",
                   message="cancelled", due_at=release_time(now, quiet=quiet, start_at=start_at),
                   fingerprint_=fp)
    return "cancelled"


async def _enqueue(
    session: AsyncSession, *, appointment: Appointment, key: str, purpose: str, message: str,
    due_at: datetime, offset: int | None = None, fingerprint_: str | None = None,
) -> None:
    start_at = appointment.start_at
    assert start_at is not None
    fp = fingerprint_ or fingerprint(start_at=start_at, department=appointment.department)
    await repo.add_notification(session, Notification(
        appointment_id=appointment.id, job_key=key, purpose=purpose, message=message,
        fingerprint=fp, start_at=start_at, offset_minutes=offset,
    ))
    await jobs.enqueue(
        session, SEND_JOB, idempotency_key=key, due_at=due_at,
        payload={
            "appointment_id": str(appointment.id),
            "organisation_id": str(appointment.organisation_id),
            "message": message,
            "start_at": start_at.isoformat(),
            "department": appointment.department,
        },
    )

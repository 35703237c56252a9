"""Plan an appointment's messages when the scheduling feed changes it.

Called by the HL7 SIU feed in its own transaction, right after it upserted the appointment
and its contacts; every job written here commits (or vanishes) with that change.

What the patient is told depends on what they were already told, not on the HL7 event
name: each planned message is a :class:`~openvisit.models.Notification` with a fingerprint
of what it says (start time and department). A resent message, or one that changes nothing
the patient sees, plans nothing; a genuine second reschedule plans a new message; moving
back to an earlier time is a change too. Confirmations not yet sent are superseded (cancelled)
by newer ones, and a cancellation is sent only if the patient had heard of the visit.

The feed commits many SIU messages in one transaction (see :mod:`openvisit.feed.intake`),
so planning works on a list of changes: what it needs is read in a fixed number of queries
whatever the list's length (settings per endpoint, the history of the appointments that
existed before), each change is planned in memory in order (a later change of the same
appointment sees what an earlier one planned), and the result is written in three statements.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit import jobs
from openvisit.context import AppContext
from openvisit.logs import get_logger
from openvisit.models import Appointment, EhrEndpoint, SmsSettings, utcnow
from openvisit.models.choices import (
    ENDED_STATUSES,
    ENDING_CHANGES,
    AppointmentStatus,
    Change,
    JobState,
)
from openvisit.notify import repository as repo
from openvisit.notify.plan import QuietHours, fingerprint, release_time, reminder_times

log = get_logger(__name__)

SEND_JOB = "notify.send"
#: Job states meaning the patient has (or may have) received the message.
TOLD_STATES: frozenset[JobState] = frozenset({"running", "done", "dead"})
#: Ended statuses of an appointment that was over without being called off (it took place,
#: or the patient missed it): no cancellation notice, only pending confirmations dropped.
PASSED_STATUSES: frozenset[AppointmentStatus] = frozenset({"noshow", "fulfilled"})


@dataclass(frozen=True, slots=True)
class _Note:
    """What planning reads of a planned message (stored, or planned in this transaction)."""

    job_key: str
    purpose: str
    message: str
    fingerprint: str
    start_at: datetime
    offset_minutes: int | None


@dataclass(slots=True)
class _Entry:
    note: _Note
    state: str | None


class _Writes:
    """What planning writes, collected so that a batch of changes costs three statements."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.notes: list[dict[str, Any]] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.cancelled: list[str] = []

    def cancel(self, key: str) -> None:
        row = self.jobs.get(key)
        if row is not None:  # planned earlier in this batch: written as cancelled
            row["state"], row["finished_at"] = "cancelled", self.now
        else:
            self.cancelled.append(key)

    async def write(self, session: AsyncSession) -> None:
        await repo.insert_notifications(session, self.notes)
        await jobs.enqueue_many(session, list(self.jobs.values()))
        await jobs.cancel_many(session, self.cancelled)


async def on_appointment_change(
    session: AsyncSession, *, app: AppContext, appointment: Appointment, change: Change
) -> None:
    """Plan one change of a flushed appointment (reads its history and contacts)."""
    planner = await Planner.load(
        session,
        endpoint_ids={appointment.endpoint_id},
        appointment_ids=[appointment.id],
        contacts_of=[appointment.id],
    )
    planner.plan(appointment, change)
    await planner.write(session)


class Planner:
    """Plans the changes of one transaction: load once, :meth:`plan` each change in order,
    :meth:`write` once after the appointments are flushed.

    :meth:`plan` reads the appointment as it is at that moment, so a caller applying several
    changes to one appointment calls it after each; a later change sees what an earlier one
    planned. Idempotent: planning again with nothing changed writes nothing. Never sends;
    raises nothing for missing settings or contacts (then it only cancels pending jobs).
    """

    def __init__(
        self,
        *,
        settings: dict[uuid.UUID, SmsSettings | None],
        zones: dict[uuid.UUID, str | None],
        histories: dict[uuid.UUID, list[_Entry]],
        contact_kinds: dict[uuid.UUID, set[str]],
        now: datetime,
    ) -> None:
        self.settings = settings
        self.zones = zones
        self.histories = histories
        self.contact_kinds = contact_kinds
        self.writes = _Writes(now)
        self.now = now

    @classmethod
    async def load(
        cls,
        session: AsyncSession,
        *,
        endpoint_ids: Iterable[uuid.UUID],
        appointment_ids: Sequence[uuid.UUID],
        contacts_of: Sequence[uuid.UUID] = (),
    ) -> Planner:
        """Read what planning needs in a fixed number of queries: the settings and zone of
        each endpoint, what was planned for ``appointment_ids`` (the appointments that existed
        before this transaction) and the contact kinds of ``contacts_of``."""
        settings: dict[uuid.UUID, SmsSettings | None] = {}
        zones: dict[uuid.UUID, str | None] = {}
        for endpoint_id in set(endpoint_ids):
            settings[endpoint_id] = await session.get(SmsSettings, endpoint_id)
            endpoint = await session.get(EhrEndpoint, endpoint_id)
            zones[endpoint_id] = endpoint.timezone if endpoint else None
        stored = await repo.notifications_for(session, list(appointment_ids))
        return cls(
            settings=settings,
            zones=zones,
            histories={
                appointment_id: [
                    _Entry(
                        _Note(n.job_key, n.purpose, n.message, n.fingerprint, n.start_at,
                              n.offset_minutes),
                        state,
                    )
                    for n, state in rows
                ]
                for appointment_id, rows in stored.items()
            },
            contact_kinds=await repo.contact_kinds(session, list(contacts_of)),
            now=utcnow(),
        )

    def plan(
        self,
        appointment: Appointment,
        change: Change,
        *,
        contact_kinds: Iterable[str] | None = None,
    ) -> None:
        """Plan ``change`` of ``appointment`` as it is now; ``contact_kinds`` are the kinds it
        has after the change (``None``: as loaded)."""
        kinds = self.contact_kinds.get(appointment.id, set()) if contact_kinds is None else (
            set(contact_kinds))
        endpoint_id = appointment.endpoint_id
        _plan_one(
            appointment=appointment,
            change=change,
            settings=self.settings.get(endpoint_id),
            tz=self.zones.get(endpoint_id),
            has_contacts=bool(kinds),
            history=self.histories.setdefault(appointment.id, []),
            writes=self.writes,
            now=self.now,
        )

    async def write(self, session: AsyncSession) -> None:
        """Write everything planned (three statements); the appointments must be flushed."""
        await self.writes.write(session)


def _plan_one(
    *, appointment: Appointment, change: Change, settings: SmsSettings | None, tz: str | None,
    has_contacts: bool, history: list[_Entry], writes: _Writes, now: datetime,
) -> None:
    start_at = appointment.start_at
    enabled = bool(settings and settings.enabled and has_contacts and start_at)
    ended = change in ENDING_CHANGES or appointment.status in ENDED_STATUSES
    quiet = (QuietHours.parse(settings.quiet_hours_start, settings.quiet_hours_end, tz=tz)
             if settings else None)
    base = len(history)

    wanted: dict[int, datetime] = {}
    if enabled and not ended and start_at is not None and settings is not None:
        wanted = reminder_times(start_at, list(settings.reminder_offsets_minutes or []),
                                now=now, quiet=quiet)
    added = _sync_reminders(appointment=appointment, history=history, wanted=wanted,
                            base=base, writes=writes)

    confirmations = bool(enabled and settings and settings.confirmations_enabled)
    planned: str | None = None
    if change == "noshow" or appointment.status in PASSED_STATUSES:
        # Over without being called off: nothing to tell the patient, nothing left to send.
        _cancel_pending(history, purposes=("confirmation",), writes=writes)
    elif ended:
        planned = _plan_cancellation(appointment=appointment, history=history, base=base,
                                     allowed=confirmations, now=now, quiet=quiet, writes=writes)
    else:
        planned = _plan_confirmation(appointment=appointment, history=history, base=base,
                                     allowed=confirmations, now=now, quiet=quiet, writes=writes,
                                     change=change)
    log.info("notifications_planned", appointment_id=str(appointment.id), change=change,
             confirmation=planned, reminders_added=added, reminders_wanted=len(wanted))


def _cancel_pending(
    history: list[_Entry], *, purposes: tuple[str, ...], writes: _Writes
) -> list[_Note]:
    cancelled = []
    for entry in history:
        if entry.note.purpose in purposes and entry.state == "pending":
            writes.cancel(entry.note.job_key)
            entry.state = "cancelled"
            cancelled.append(entry.note)
    return cancelled


def _sync_reminders(
    *, appointment: Appointment, history: list[_Entry], wanted: dict[int, datetime], base: int,
    writes: _Writes,
) -> int:
    """Cancel pending reminders no longer wanted (old start time, removed offset) and add
    the missing ones; a reminder already sent for the same start time is not repeated."""
    start_at = appointment.start_at
    reminders = [e for e in history if e.note.purpose == "reminder"]
    for entry in reminders:
        note = entry.note
        keep = start_at is not None and note.start_at == start_at and note.offset_minutes in wanted
        if entry.state == "pending" and not keep:
            writes.cancel(note.job_key)
            entry.state = "cancelled"
    added = 0
    for offset, due in sorted(wanted.items()):
        if any(e.note.offset_minutes == offset and e.note.start_at == start_at
               and e.state != "cancelled" for e in reminders):
            continue
        assert start_at is not None
        key = (f"notify:{appointment.id}:reminder:{offset}m:{int(start_at.timestamp())}:"
               f"{base + added}")
        _enqueue(appointment=appointment, history=history, writes=writes, key=key,
                 purpose="reminder", message="reminder", due_at=due, offset=offset)
        added += 1
    return added


def _plan_confirmation(
    *, appointment: Appointment, history: list[_Entry], base: int, allowed: bool,
    now: datetime, quiet: QuietHours | None, writes: _Writes, change: Change = "modified",
) -> str | None:
    start_at = appointment.start_at
    if start_at is None:
        return None
    fp = fingerprint(start_at=start_at, department=appointment.department)
    messages = [(e.note, e.state) for e in history
                if e.note.purpose in ("confirmation", "cancellation")]
    pending = [n for n, s in messages if s == "pending"]
    if any(n.purpose == "confirmation" and n.fingerprint == fp for n in pending):
        return None  # the same news is already on its way
    superseded = _cancel_pending(history, purposes=("confirmation", "cancellation"),
                                 writes=writes)
    told = next((n for n, s in reversed(messages) if s in TOLD_STATES), None)
    if told is not None and told.purpose == "confirmation" and told.fingerprint == fp:
        return None  # the patient already knows exactly this
    if not allowed or start_at <= now:
        return None
    if told is None or told.purpose == "cancellation" or change == "booked":
        # A new booking (S12) is news as such, also when it books an appointment that was
        # cancelled or missed again.
        message = "booked"
    elif told.start_at != start_at:
        message = "rescheduled"
    else:
        message = "modified"
    if any(n.message == "booked" for n in superseded) and told is None:
        message = "booked"  # the first news the patient gets is a booking
    key = f"notify:{appointment.id}:{message}:{int(start_at.timestamp())}:{fp[:8]}:{base}"
    _enqueue(appointment=appointment, history=history, writes=writes, key=key,
             purpose="confirmation", message=message,
             due_at=release_time(now, quiet=quiet, start_at=start_at), fingerprint_=fp)
    return message


def _plan_cancellation(
    *, appointment: Appointment, history: list[_Entry], base: int, allowed: bool,
    now: datetime, quiet: QuietHours | None, writes: _Writes,
) -> str | None:
    _cancel_pending(history, purposes=("confirmation",), writes=writes)
    messages = [(e.note, e.state) for e in history
                if e.note.purpose in ("confirmation", "cancellation")]
    if any(n.purpose == "cancellation" and s == "pending" for n, s in messages):
        return None
    told = next((n for n, s in reversed(messages) if s in TOLD_STATES), None)
    start_at = appointment.start_at
    if told is None or told.purpose == "cancellation":
        return None  # never heard of it, or already told it is off
    if not allowed or start_at is None or start_at <= now:
        return None
    fp = fingerprint(start_at=start_at, department=appointment.department)
    key = f"notify:{appointment.id}:cancelled:{int(start_at.timestamp())}:{base}"
    _enqueue(appointment=appointment, history=history, writes=writes, key=key,
             purpose="cancellation", message="cancelled",
             due_at=release_time(now, quiet=quiet, start_at=start_at), fingerprint_=fp)
    return "cancelled"


def _enqueue(
    *, appointment: Appointment, history: list[_Entry], writes: _Writes, key: str,
    purpose: str, message: str, due_at: datetime, offset: int | None = None,
    fingerprint_: str | None = None,
) -> None:
    start_at = appointment.start_at
    assert start_at is not None
    fp = fingerprint_ or fingerprint(start_at=start_at, department=appointment.department)
    note = {
        "appointment_id": appointment.id, "job_key": key, "purpose": purpose,
        "message": message, "fingerprint": fp, "start_at": start_at,
        "offset_minutes": offset, "content_enc": None, "purge_at": None,
        "created_at": writes.now,
    }
    writes.notes.append(note)
    history.append(_Entry(_Note(key, purpose, message, fp, start_at, offset), "pending"))
    writes.jobs[key] = jobs.job_row(
        SEND_JOB, idempotency_key=key, due_at=due_at, now=writes.now,
        payload={
            "appointment_id": str(appointment.id),
            "organisation_id": str(appointment.organisation_id),
            "message": message,
            "start_at": start_at.isoformat(),
            "department": appointment.department,
        },
    )

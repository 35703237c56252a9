"""Apply one SIU message to OpenVisit's copy of the appointment and the patient's contacts.

HL7 v2.5.1 Ch. 10 §10.3 (the SIU trigger events S12-S26), §10.6.2 (SCH-1/SCH-2 ids, SCH-25
filler status, table 0278); EHR-SPEC §4. Only references, times and status are kept; the
patient's SMS number and e-mail are stored encrypted with the field cipher and only until the
appointment is over (``purge_at``). The caller owns the transaction: nothing here commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.context import AppContext
from openvisit.feed import repository
from openvisit.feed.validation import check_siu as check_siu
from openvisit.hl7v2 import SiuEvent, SiuMessage
from openvisit.models import Appointment, Contact, EhrEndpoint, utcnow
from openvisit.models.choices import (
    APPOINTMENT_STATUSES,
    ENDED_STATUSES,
    AppointmentStatus,
    Change,
    is_one_of,
)
from openvisit.notify.service import Planner

#: What each event means for the patient (the ``change`` handed to notifications).
EVENT_CHANGE: dict[SiuEvent, Change] = {
    SiuEvent.S12: "booked",
    SiuEvent.S13: "rescheduled",
    SiuEvent.S14: "modified",
    SiuEvent.S15: "cancelled",
    SiuEvent.S16: "discontinued",
    SiuEvent.S17: "deleted",
    SiuEvent.S26: "noshow",
}
#: Events whose meaning fixes the status whatever SCH-25 says. S17 (deleted) keeps the row as
#: cancelled rather than removing it: a late S14 for it then cannot resurrect the visit, and
#: the notification history (was the patient told?) survives for the cancellation notice.
#: S16 (discontinued) ends what is left of the appointment: FHIR has no "discontinued", and
#: for the patient the rest of it is cancelled.
EVENT_STATUS: dict[SiuEvent, AppointmentStatus] = {
    SiuEvent.S15: "cancelled",
    SiuEvent.S16: "cancelled",
    SiuEvent.S17: "cancelled",
    SiuEvent.S26: "noshow",
}
#: Statuses an S12 (a new booking) without SCH-25 lifts: the EHR booked the visit again.
#: Only the two that a new booking undoes (docs/siu-intake.md), not all of
#: :data:`ENDED_STATUSES`: a fulfilled appointment has taken place and one entered in error
#: was never real, so an S12 for either keeps its status.
REBOOKABLE: frozenset[AppointmentStatus] = frozenset({"cancelled", "noshow"})

#: FHIR R4 Appointment.status values a status map may name (EHR-SPEC §5).
FHIR_STATUSES: frozenset[AppointmentStatus] = frozenset(APPOINTMENT_STATUSES)
#: SCH-25 filler status (HL7 table 0278 and common spellings) → FHIR status. Sites add their
#: local codes in ``endpoint.options["hl7"]["status_map"]``; keys compare case-insensitively.
DEFAULT_STATUS_MAP: dict[str, AppointmentStatus] = {
    "booked": "booked",
    "overbook": "booked",
    "confirmed": "booked",
    "scheduled": "booked",
    "pending": "pending",
    "waitlist": "waitlist",
    "wait list": "waitlist",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "dc": "cancelled",
    "discontinued": "cancelled",
    "deleted": "cancelled",
    "noshow": "noshow",
    "no show": "noshow",
    "no-show": "noshow",
    "complete": "fulfilled",
    "completed": "fulfilled",
    "started": "arrived",
    "arrived": "arrived",
    "checked in": "checked-in",
    "checked-in": "checked-in",
}
#: Statuses whose visit link no longer opens the visit.
_CLOSED: frozenset[AppointmentStatus] = frozenset({"cancelled", "entered-in-error"})
#: Without an end time, contacts are kept until a day after the start.
DEFAULT_LENGTH = timedelta(days=1)
_MAX_ID = 255


@dataclass(frozen=True, slots=True)
class AppliedSiu:
    """What :func:`apply_siu` did: the appointment (``None`` when a cancellation, deletion or
    no-show named one OpenVisit never knew, so nothing was stored), the change, whether the
    row is new, and which contact kinds are stored after it."""

    appointment: Appointment | None
    change: Change
    created: bool
    contacts: tuple[str, ...]


def hl7_options(endpoint: EhrEndpoint) -> dict[str, Any]:
    """The endpoint's ``options["hl7"]`` (empty dict when unset or malformed)."""
    value = (endpoint.options or {}).get("hl7")
    return value if isinstance(value, dict) else {}


def status_map(endpoint: EhrEndpoint) -> dict[str, AppointmentStatus]:
    """The default SCH-25 map overlaid with the endpoint's own (lower-case keys).

    Entries naming a status outside FHIR's Appointment.status are ignored here; the CLI and
    portal refuse them when they are configured.
    """
    mapping = dict(DEFAULT_STATUS_MAP)
    local = hl7_options(endpoint).get("status_map")
    if isinstance(local, Mapping):
        for code, status in local.items():
            if isinstance(code, str) and isinstance(status, str) and is_one_of(
                    status, APPOINTMENT_STATUSES):
                mapping[code.strip().lower()] = status
    return mapping


def status_for(message: SiuMessage, *, mapping: Mapping[str, str], current: str | None) -> str:
    """The appointment status after ``message``.

    S15/S16/S17 give cancelled and S26 noshow whatever SCH-25 says. For S12/S13/S14 the
    SCH-25 code (identifier, else text) is looked up in ``mapping``; an unmapped or absent code
    keeps the current status, or ``booked`` for a new appointment, except that an S12 for a
    cancelled or no-show appointment books it again (the EHR made a new booking of it).
    """
    fixed = EVENT_STATUS.get(message.event)
    if fixed is not None:
        return fixed
    if message.filler_status is not None:
        for code in message.filler_status:
            mapped = mapping.get(code.strip().lower()) if code else None
            if mapped is not None:
                return mapped
    if message.event is SiuEvent.S12 and current in REBOOKABLE:
        return "booked"
    return current or "booked"


def change_for(message: SiuMessage, *, status: str) -> Change:
    """The event's change, except that an S12/S13/S14 whose SCH-25 ends the appointment is
    reported as the cancellation or no-show it is."""
    change = EVENT_CHANGE[message.event]
    if change in ("booked", "rescheduled", "modified"):
        if status in ("cancelled", "entered-in-error"):
            return "cancelled"
        if status == "noshow":
            return "noshow"
    return change


def patient_ref(message: SiuMessage) -> str | None:
    """PID-3's first identifier as ``"<assigning authority>|<id>"``: an identifier, no name."""
    if not message.patient_identifiers:
        return None
    first = message.patient_identifiers[0]
    ref = f"{first.assigning_authority or ''}|{first.id}"
    return ref if len(ref) <= _MAX_ID else None


async def apply_siu(
    session: AsyncSession,
    *,
    app: AppContext,
    endpoint: EhrEndpoint,
    message: SiuMessage,
    now: datetime | None = None,
) -> AppliedSiu:
    """:func:`apply_siu_batch` for one message."""
    applied = await apply_siu_batch(session, app=app, items=[(endpoint, message)], now=now)
    return applied[0]


async def apply_siu_batch(
    session: AsyncSession,
    *,
    app: AppContext,
    items: Sequence[tuple[EhrEndpoint, SiuMessage]],
    now: datetime | None = None,
) -> list[AppliedSiu]:
    """Apply each message, in order, to the appointment SCH-2 (else SCH-1) names for its
    endpoint, and to that appointment's contacts.

    Times, status (event + SCH-25 through :func:`status_map`), department (AIL-3), provider
    (AIP-3), encounter/CSN (PV1-19), language (PID-15) and ``patient_ref`` (PID-3) are
    written; contacts are encrypted with ``app.cipher`` and kept until the end (else start +
    1 day) plus ``settings.contact_grace_hours``, or until now + grace once cancelled, deleted
    or a no-show. Notifications plan each change as it is applied (:func:`notify_planner`).

    The cost does not grow with the number of messages in queries: one read finds every
    appointment the messages name, one their contacts, one flush writes the changes; a later
    message about the same appointment sees what an earlier one did. Flushes, never commits.
    A visit already opened for a changed appointment follows it: its join window moves with
    the times, and closes when the appointment is cancelled, discontinued or deleted (the
    patient's link then says the visit is over; booking it again reopens it).

    Raises :class:`~openvisit.hl7v2.DataTypeError` for a value that cannot be stored (callers
    that batch check each message with :func:`~.validation.check_siu` first).
    """
    now = now or utcnow()
    for _endpoint, message in items:
        check_siu(message)
    candidates = list(
        await repository.appointment_candidates(
            session,
            [
                (endpoint.id, key)
                for endpoint, message in items
                for key in (message.filler_appointment_id, message.placer_appointment_id)
                if key is not None
            ],
        )
    )
    contacts = await repository.contacts_for(session, [a.id for a in candidates])
    planner = await notify_planner(
        session,
        endpoint_ids={endpoint.id for endpoint, _m in items},
        appointment_ids=[a.id for a in candidates],
    )
    grace = timedelta(hours=app.settings.contact_grace_hours)
    results: list[AppliedSiu] = []
    for endpoint, message in items:
        filler, placer = message.filler_appointment_id, message.placer_appointment_id
        appointment = repository.match_appointment(
            candidates, endpoint_id=endpoint.id, filler=filler, placer=placer
        )
        if appointment is None and message.event in EVENT_STATUS:
            # A cancellation of an appointment we never stored: nothing to keep, nobody to tell.
            results.append(AppliedSiu(None, EVENT_CHANGE[message.event], False, ()))
            continue
        created = appointment is None
        if appointment is None:
            # The id is set here so contacts can refer to it before anything is flushed: one
            # flush (one round trip per table) for the whole batch.
            appointment = Appointment(
                id=uuid.uuid4(),
                organisation_id=endpoint.organisation_id,
                endpoint_id=endpoint.id,
                ehr_appointment_id=filler or placer,
                source="hl7",
            )
            session.add(appointment)
            candidates.append(appointment)
        status = status_for(
            message, mapping=status_map(endpoint), current=None if created else appointment.status
        )
        appointment.ehr_appointment_id = filler or appointment.ehr_appointment_id
        appointment.placer_appointment_id = placer or appointment.placer_appointment_id
        appointment.start_at = message.start
        appointment.end_at = message.end
        appointment.status = status
        appointment.department = message.department or appointment.department
        appointment.provider_ehr_id = message.provider_id or appointment.provider_ehr_id
        appointment.encounter_id = message.visit_number or appointment.encounter_id
        appointment.language = message.language or appointment.language
        app.refs.assign(appointment, patient_ref(message))
        kinds = await _store_contacts(
            session,
            app=app,
            existing=contacts.setdefault(appointment.id, {}),
            appointment=appointment,
            message=message,
            purge_at=purge_time(message, grace=grace, ended=status in ENDED_STATUSES, now=now),
            ended=status in ENDED_STATUSES,
        )
        change = change_for(message, status=status)
        results.append(AppliedSiu(appointment, change, created, kinds))
        # Planned now, from the appointment as this message left it.
        planner.plan(appointment, change, contact_kinds=kinds)
    await session.flush()
    await planner.write(session)
    await _follow_visits(session, app=app, results=results, now=now)
    return results


async def _follow_visits(
    session: AsyncSession, *, app: AppContext, results: Sequence[AppliedSiu], now: datetime
) -> None:
    """Move or close the join window of visits already opened for changed appointments.

    New appointments have no visit yet, so a batch of bookings costs no query here.
    """
    from openvisit.visits.service import window_for

    changed = {
        r.appointment.id: r.appointment
        for r in results
        if r.appointment is not None and not r.created
    }
    if not changed:
        return
    for visit in await repository.visits_for(session, list(changed)):
        appointment = changed[visit.appointment_id] if visit.appointment_id else None
        if appointment is None or visit.status == "ended":
            continue
        if appointment.status in _CLOSED:
            # The call in progress (if any) goes on; nobody new can join.
            if visit.window_end is None or visit.window_end > now:
                visit.window_end = now
        elif appointment.status not in ENDED_STATUSES:
            visit.window_start, visit.window_end = window_for(
                app, start_at=appointment.start_at, end_at=appointment.end_at
            )
    await session.flush()


def purge_time(message: SiuMessage, *, grace: timedelta, ended: bool, now: datetime) -> datetime:
    """When the contacts of the appointment ``message`` describes are deleted."""
    if ended:
        return now + grace
    return (message.end or message.start + DEFAULT_LENGTH) + grace


async def _store_contacts(
    session: AsyncSession,
    *,
    app: AppContext,
    existing: dict[str, Contact],
    appointment: Appointment,
    message: SiuMessage,
    purge_at: datetime,
    ended: bool,
) -> tuple[str, ...]:
    """Bring ``existing`` (the appointment's contacts by kind, updated in place) in line with
    the message; returns the kinds stored after it."""
    if ended:
        # Keep what we have (a cancellation notice may still go out) but only for the grace.
        for kept in existing.values():
            kept.purge_at = purge_at
        return tuple(sorted(existing))
    wanted = {"sms": message.sms_number, "email": message.email}
    # A message with a PID that no longer lists a number means the EHR removed it.
    sent_pid = bool(message.patient_identifiers)
    for kind, value in wanted.items():
        contact = existing.get(kind)
        if value is None:
            if contact is not None and sent_pid:
                await session.delete(contact)
                del existing[kind]
            elif contact is not None:
                contact.purge_at = purge_at
            continue
        if contact is None:
            contact = Contact(
                appointment_id=appointment.id,
                kind=kind,
                value_enc=app.cipher.encrypt(value),
                purge_at=purge_at,
            )
            session.add(contact)
            existing[kind] = contact
            continue
        if app.cipher.decrypt(contact.value_enc) != value:
            contact.value_enc = app.cipher.encrypt(value)
        contact.purge_at = purge_at
    return tuple(sorted(existing))


async def notify_planner(
    session: AsyncSession,
    *,
    endpoint_ids: Iterable[uuid.UUID],
    appointment_ids: Sequence[uuid.UUID],
) -> Planner:
    """The seam to notifications: a :class:`~openvisit.notify.service.Planner` loaded for
    the endpoints and the already stored appointments of this transaction; its jobs are
    written in the caller's transaction, so they commit exactly when the change does."""
    return await Planner.load(session, endpoint_ids=endpoint_ids, appointment_ids=appointment_ids)

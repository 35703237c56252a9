"""The visits API other packages call: open a visit, seat a participant, append events.

Launch (issue 3) calls :func:`open_visit` and :func:`seat_link` and redirects the clinician to
the link; notifications (issue 5) put :func:`seat_link`'s URL into SMS and e-mail. Every
function takes the caller's session and only ``flush()``es: the caller owns the transaction.
Bus messages are published only after that transaction commits.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.audit import record
from openvisit.context import AppContext
from openvisit.db import after_commit
from openvisit.errors import Gone, InvalidInput, NotFound
from openvisit.i18n import gettext as _
from openvisit.logs import get_logger
from openvisit.models import Organisation
from openvisit.models.base import utcnow
from openvisit.models.choices import VISIT_KINDS
from openvisit.models.visit import ROLES, Appointment, Participant, Visit, VisitEvent
from openvisit.portal.signin.service import get_or_create_organisation
from openvisit.privacy.refs import SealedRef
from openvisit.visits import repository as repo
from openvisit.visits.roster import STAFF_ROLES, Seat
from openvisit.visits.tokens import JoinLinks, participant_id_of
from openvisit.visits.when import (
    clinician_ended_text,
    clinician_opens_at_text,
    opens_at_text,
)
from openvisit.writeback import service as writeback

log = get_logger(__name__)

#: English seat labels by role; pages translate them from ``role`` + ``seat_no``.
ROLE_LABELS = {
    "provider": "Clinician",
    "patient": "Patient",
    "interpreter": "Interpreter",
    "guest": "Guest",
}
#: The organisation of the development demo page's visits.
DEMO_ORGANISATION = "demo"


def visit_channel(visit_id: uuid.UUID | str) -> str:
    """The bus channel of one visit's events."""
    return f"visit.{visit_id}"


def queue_channel(organisation_id: uuid.UUID | str) -> str:
    """The bus channel of an organisation's clinic queue pages (:mod:`.queue`)."""
    return f"queue.{organisation_id}"


#: Visit events that change what a clinic queue shows (who waits, who is in the call).
QUEUE_EVENTS = frozenset({"joined", "admitted", "returned_to_lobby", "left", "removed",
                          "connected", "disconnected", "started", "ended", "reopened",
                          "opened_early", "invited"})


def join_links(app: AppContext) -> JoinLinks:
    links = app.services.join_links
    if links is None:
        # The derived key is kept on the context: one HKDF per process, not per request.
        links = app.services.join_links = JoinLinks(app.settings.secret_key)
    return links


def window_for(app: AppContext, *, start_at: datetime | None,
               end_at: datetime | None) -> tuple[datetime | None, datetime | None]:
    """``(start − join_window_before, (end or start) + join_window_after)``."""
    if start_at is None:
        return None, None
    settings = app.settings
    return (
        start_at - timedelta(minutes=settings.join_window_before_minutes),
        (end_at or start_at) + timedelta(minutes=settings.join_window_after_minutes),
    )


async def open_visit(session: AsyncSession, *, app: AppContext, appointment: Appointment,
                     link_window: tuple[datetime, datetime] | None = None) -> Visit:
    """The visit of ``appointment``, created on first call (idempotent, race-safe).

    Two concurrent first calls both try to insert; the loser's savepoint rolls back on the
    unique ``appointment_id`` and it returns the winner's row. A later call refreshes the
    join window (the appointment may have been rescheduled) unless the visit has ended.

    The window comes from the appointment's start and end (:func:`window_for`). When the
    appointment has no start, ``link_window`` — ``(issued, valid until)`` of the launch link
    that brought the caller, e.g. an Epic context link — stands in for it, with the same
    before/after settings; a later link widens the window, never narrows it. Without either, a
    window set earlier is kept: a visit never becomes joinable forever by losing its times.
    """
    window_start, window_end = window_for(app, start_at=appointment.start_at,
                                          end_at=appointment.end_at)
    if appointment.start_at is None and link_window is not None:
        window_start, window_end = window_for(app, start_at=link_window[0],
                                              end_at=link_window[1])
    existing = await repo.visit_by_appointment(session, appointment.id)
    if existing is None:
        visit = Visit(
            organisation_id=appointment.organisation_id, appointment_id=appointment.id,
            window_start=window_start, window_end=window_end,
            media_backend=app.settings.media_backend,
        )
        try:
            async with session.begin_nested():
                session.add(visit)
                await session.flush()
        except IntegrityError:
            existing = await repo.visit_by_appointment(session, appointment.id)
            if existing is None:
                raise
        else:
            log.info("visit_opened", visit_id=str(visit.id), appointment_id=str(appointment.id))
            return visit
    if appointment.start_at is None:
        if window_start is None or window_end is None:
            window_start, window_end = existing.window_start, existing.window_end
        elif existing.window_start is not None and existing.window_end is not None:
            window_start = min(window_start, existing.window_start)
            window_end = max(window_end, existing.window_end)
    if existing.status != "ended" and (existing.window_start, existing.window_end) != (
        window_start, window_end
    ):
        existing.window_start, existing.window_end = window_start, window_end
        await session.flush()
    return existing


async def open_adhoc_visit(session: AsyncSession, *, app: AppContext,
                           organisation_id: uuid.UUID, kind: str = "visit") -> Visit:
    """A new visit with no appointment, joinable from now for ``join_window_after``."""
    if kind not in VISIT_KINDS:
        raise InvalidInput(f"Unknown visit kind {kind!r}; expected one of {VISIT_KINDS}.")
    now = utcnow()
    visit = Visit(
        organisation_id=organisation_id, kind=kind, window_start=now - timedelta(minutes=1),
        window_end=now + timedelta(minutes=app.settings.join_window_after_minutes),
        media_backend=app.settings.media_backend,
    )
    session.add(visit)
    await session.flush()
    log.info("visit_opened", visit_id=str(visit.id), kind=kind, adhoc=True)
    return visit


def link_for(app: AppContext, participant: Participant) -> str:
    """The absolute join URL of a seat at its current token version."""
    token = join_links(app).make(
        participant_id=participant.id, visit_id=participant.visit_id, role=participant.role,
        token_version=participant.token_version,
    )
    return f"{app.settings.public_url}/v/{token}"


async def patient_links(session: AsyncSession, *, app: AppContext,
                        visit: Visit) -> list[str]:
    """The join URLs of the visit's patient seats (not removed), for the clinician's page:
    the clinician can read one out or paste it into a message when the SMS did not arrive.

    A visit launched by the clinician first has no patient seat yet: the appointment's
    patient gets theirs here (the same seat the SMS and the portal launch would use)."""
    seats = [seat for seat in await repo.participants_of(session, visit.id)
             if seat.role == "patient"]
    if not seats and visit.appointment_id is not None:
        appointment = await repo.appointment_by_id(session, visit.appointment_id)
        patient = SealedRef.of(appointment) if appointment is not None else None
        if appointment is not None and patient is not None:
            seats = [await find_or_create_seat(session, visit=visit, role="patient",
                                               patient=patient,
                                               language=appointment.language)]
    return [link_for(app, seat) for seat in seats if seat.lobby_state != "removed"]


async def seat_link(session: AsyncSession, *, app: AppContext, visit: Visit, role: str,
                    ehr_user_id: str | None = None, patient_ref: str | None = None,
                    language: str | None = None) -> str:
    """The join URL of a seat, found or created: ``{public_url}/v/{token}``.

    Clinicians are keyed by ``ehr_user_id``, patients by ``patient_ref`` (several patients
    make a group visit); interpreters and guests always get a new seat. Without a key the
    first seat of the role is reused. Raises :class:`InvalidInput` for an unknown role.
    """
    participant = await find_or_create_seat(
        session, visit=visit, role=role, ehr_user_id=ehr_user_id,
        patient=app.refs.seal(patient_ref) if patient_ref else None,
        language=language,
    )
    return link_for(app, participant)


async def find_or_create_seat(session: AsyncSession, *, visit: Visit, role: str,
                              ehr_user_id: str | None = None, patient: SealedRef | None = None,
                              language: str | None = None) -> Participant:
    """The seat :func:`seat_link` links to (see there); survives concurrent creation."""
    if role not in ROLES:
        raise InvalidInput(f"Unknown role {role!r}; expected one of {', '.join(ROLES)}.")
    if role != "provider":
        ehr_user_id = None
    if role != "patient":
        patient = None
    reusable = role in ("provider", "patient")
    for _attempt in range(5):
        seat: Participant | None = None
        if reusable:
            seat = await repo.find_seat(session, visit_id=visit.id, role=role,
                                        ehr_user_id=ehr_user_id,
                                        patient_hashes=patient.matches if patient else None)
            if seat is None and ehr_user_id is None and patient is None:
                seat = await repo.first_seat(session, visit_id=visit.id, role=role)
        if seat is not None:
            if language and seat.language != language:
                seat.language = language
                await session.flush()
            return seat
        seat_no = await repo.next_seat_no(session, visit_id=visit.id, role=role)
        label = ROLE_LABELS[role] + (f" {seat_no}" if seat_no > 1 else "")
        seat = Participant(
            visit_id=visit.id, role=role, seat_no=seat_no, label=label,
            ehr_user_id=ehr_user_id, language=language,
            patient_ref_hash=patient.hash if patient else None,
            patient_ref_enc=patient.enc if patient else None,
        )
        try:
            async with session.begin_nested():
                session.add(seat)
                await session.flush()
        except IntegrityError:
            continue  # someone took this seat number or key meanwhile: look again
        log.info("seat_created", visit_id=str(visit.id), participant_id=str(seat.id), role=role)
        return seat
    raise InvalidInput("Could not create a seat in this visit; please try again.",
                       permanent=False)


async def append_event(session: AsyncSession, *, app: AppContext, visit: Visit, kind: str,
                       participant: Participant | None = None,
                       data: dict[str, Any] | None = None,
                       store: bool = True) -> VisitEvent | None:
    """Append a visit event; publish it on ``visit.<id>`` once the transaction commits.

    The published message carries the seat's public snapshot (and its ``rev``) and the
    visit status as they are at commit, so web processes update their rosters without a
    query; a subscriber that missed messages reloads from the database (RESYNC). With
    ``store=False`` (a seat over its record budget, :mod:`openvisit.visits.records`) the
    change is only published: no row, and ``None`` is returned.
    """
    at = utcnow()
    event: VisitEvent | None = None
    if store:
        event = VisitEvent(
            visit_id=visit.id, participant_id=participant.id if participant else None,
            kind=kind, data=dict(data or {}), at=at,
        )
        session.add(event)
        await session.flush()
        # Write-back's seam: its rows and jobs join this transaction (issue 13).
        await writeback.on_visit_event(session, visit=visit, event=event,
                                       participant=participant)

    async def publish() -> None:
        message: dict[str, Any] = {
            "event_id": event.id if event else None, "kind": kind, "at": at.isoformat(),
            "visit": {"id": str(visit.id), "status": visit.status},
            "participant_id": str(participant.id) if participant else None,
            "seat": Seat.of(participant).to_dict() if participant else None,
            "data": event.data if event else dict(data or {}),
        }
        await app.bus.publish(visit_channel(visit.id), message)
        if kind in QUEUE_EVENTS:
            # The queue pages only hear "this visit changed" and refetch their rows.
            await app.bus.publish(queue_channel(visit.organisation_id),
                                  {"visit_id": str(visit.id), "kind": kind})

    after_commit(session, publish)
    if store:
        log.info("visit_event", visit_id=str(visit.id), kind=kind,
                 participant_id=str(participant.id) if participant else None)
    return event


async def resolve_link(session: AsyncSession, *, app: AppContext, token: str,
                       now: datetime | None = None, for_update: bool = False,
                       allow_early: bool = False,
                       check_window_: bool = True) -> tuple[Visit, Participant]:
    """The visit and seat a join token opens, if it may be used now (``allow_early``: or
    later, for what a patient may have before the window opens, such as the calendar file;
    ``check_window_=False``: whatever the window, for the page that explains it).

    Raises :class:`NotFound` for a malformed, forged or revoked token and :class:`Gone`
    (with a title and text in the active language) when the visit has ended, the window is
    closed or not yet open, or the seat was removed.
    """
    pid = participant_id_of(token)
    found = await repo.seat_with_visit(session, pid, for_update=for_update) if pid else None
    participant, visit = found if found else (None, None)
    if participant is None or visit is None or not join_links(app).verify(
        token, participant_id=participant.id, visit_id=participant.visit_id,
        role=participant.role, token_version=participant.token_version,
    ):
        raise NotFound(
            _("This link is not valid. Please check that you opened the whole link, or ask "
              "the clinic for a new one."),
            title=_("We could not find this visit"),
        )
    if not check_window_:
        return _not_removed(visit, participant)
    try:
        check_window(visit, now=now or utcnow(),
                     minutes_before=app.settings.join_window_before_minutes)
    except Gone as exc:
        if allow_early and exc.code == "visit_not_open_yet":
            return _not_removed(visit, participant)
        staff = participant.role in STAFF_ROLES
        # The window binds patients, not clinicians: a clinician who opened the room early
        # (:func:`openvisit.visits.opening.open_early`) is in before it opens.
        if staff and exc.code == "visit_not_open_yet" and await repo.visit_has_event(
                session, visit_id=visit.id, kind=OPENED_EARLY):
            return _not_removed(visit, participant)
        if exc.code != "visit_not_open_yet" and not staff:
            raise
        # Only now is the organisation's time zone needed (to say when the link opens, or,
        # to a clinician, when it closed).
        organisation = await repo.organisation_by_id(session, visit.organisation_id)
        check_window(visit, now=now or utcnow(),
                     timezone=organisation.timezone if organisation else "UTC",
                     minutes_before=app.settings.join_window_before_minutes,
                     role=participant.role,
                     reopen_minutes=app.settings.visit_reopen_minutes)
    return _not_removed(visit, participant)


#: The visit event of a clinician opening the room before the patients' window.
OPENED_EARLY = "opened_early"


def reopen_deadline(visit: Visit, *, reopen_minutes: int) -> datetime | None:
    """Until when a clinician may reopen this ended visit; None if it is not ended or
    reopening is switched off (``visit_reopen_minutes`` 0)."""
    if visit.status != "ended" or visit.ended_at is None or reopen_minutes <= 0:
        return None
    return visit.ended_at + timedelta(minutes=reopen_minutes)


def _not_removed(visit: Visit, participant: Participant) -> tuple[Visit, Participant]:
    if participant.lobby_state == "removed":
        raise Gone(
            _("The clinician has removed you from this visit. If this is a mistake, please "
              "call the clinic."),
            code="removed", title=_("You are no longer in this visit"),
        )
    return visit, participant


async def seat_language(session: AsyncSession, *, token: str) -> str | None:
    """The stored language of the seat a join token names, before the token is verified
    (so the error page of a bad link is in the right language too). Harmless if forged: only
    a language is read."""
    pid = participant_id_of(token)
    seat = await repo.participant_by_id(session, pid) if pid is not None else None
    return seat.language if seat else None


async def organisation_of(session: AsyncSession, visit: Visit) -> Organisation | None:
    return await repo.organisation_by_id(session, visit.organisation_id)


async def appointment_of(session: AsyncSession, *, visit: Visit,
                         default_zone: str) -> tuple[Appointment, str] | None:
    """The visit's appointment and the IANA zone of its EHR endpoint (``default_zone`` when
    the endpoint is gone); None for visits without an appointment."""
    if visit.appointment_id is None:
        return None
    appointment = await repo.appointment_by_id(session, visit.appointment_id)
    if appointment is None:
        return None
    zone = await repo.endpoint_timezone(session, appointment.endpoint_id)
    return appointment, zone or default_zone


async def open_demo_visit(session: AsyncSession, *,
                          app: AppContext) -> tuple[Participant, Participant]:
    """A fresh ad-hoc visit of the "demo" organisation (created on first use): its clinician
    seat and its patient seat. For the development demo page only."""
    org = await repo.organisation_by_slug(session, DEMO_ORGANISATION)
    if org is None:
        org = await get_or_create_organisation(session, DEMO_ORGANISATION,
                                               display_name="Demo clinic", actor="system")
    visit = await open_adhoc_visit(session, app=app, organisation_id=org.id)
    provider = await find_or_create_seat(session, visit=visit, role="provider",
                                         ehr_user_id="Practitioner/demo")
    patient = await find_or_create_seat(session, visit=visit, role="patient",
                                        patient=app.refs.seal("Patient/demo"))
    return provider, patient


async def set_after_visit_url(session: AsyncSession, *, slug: str, url: str | None,
                             actor: str) -> Organisation:
    """Set (or clear, with None or "") the page patients are sent to once a visit has ended.

    Raises :class:`NotFound` for an unknown organisation and :class:`InvalidInput` for an
    address that is not an absolute http(s) URL.
    """
    org = await repo.organisation_by_slug(session, slug)
    if org is None:
        raise NotFound(f"There is no organisation {slug!r}.")
    text = (url or "").strip() or None
    if text is not None and (not text.startswith(("https://", "http://")) or len(text) > 500
                             or any(c.isspace() for c in text)):
        raise InvalidInput("Give the whole address of the page, starting with https://, e.g. "
                           "https://mychart.example-hospital.org/.",
                           details={"field": "after_visit_url"})
    before = {"after_visit_url": org.after_visit_url}
    org.after_visit_url = text
    await session.flush()
    await record(session, actor=actor, action="organisation.after_visit_url", obj=org,
                 before=before, after={"after_visit_url": text}, organisation_id=org.id)
    return org


def check_window(visit: Visit, *, now: datetime, timezone: str = "UTC",
                 minutes_before: int = 30, role: str = "patient",
                 reopen_minutes: int = 0) -> None:
    """Raise :class:`Gone` unless the visit can be joined at ``now``.

    Patients are told when to come back (or whom to call); clinicians (``role`` a staff
    role) what they can do: open the room early, reopen a visit ended less than
    ``reopen_minutes`` ago (``details["reopen_until"]``), launch again from the EHR at the
    right time, or book anew.
    """
    staff = role in STAFF_ROLES
    if visit.status == "ended" or (visit.window_end is not None and now > visit.window_end):
        if staff:
            deadline = reopen_deadline(visit, reopen_minutes=reopen_minutes)
            if deadline is not None and deadline < now:
                deadline = None
            raise Gone(
                clinician_ended_text(ended=visit.status == "ended", window_end=visit.window_end,
                                     now=now, timezone=timezone, reopen_until=deadline),
                code="visit_ended", title=_("This visit has ended"),
                details={"reopen_until": deadline.astimezone(UTC).isoformat()}
                if deadline else None,
            )
        raise Gone(
            _("The video visit is over. If you still need to talk to the clinic, please "
              "call them or send a message through your patient portal."),
            code="visit_ended", title=_("This visit has ended"),
        )
    if visit.window_start is not None and now < visit.window_start:
        if staff:
            raise Gone(
                clinician_opens_at_text(visit.window_start, now=now, timezone=timezone,
                                        minutes_before=minutes_before),
                code="visit_not_open_yet", title=_("The visit is not open yet"),
                details={"opens_at": visit.window_start.astimezone(UTC).isoformat()},
            )
        raise Gone(
            opens_at_text(visit.window_start, now=now, timezone=timezone,
                          minutes_before=minutes_before),
            code="visit_not_open_yet", title=_("It is a little early"),
            details={"opens_at": visit.window_start.astimezone(UTC).isoformat()},
        )

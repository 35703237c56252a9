"""The clinic queue: a clinician's visits of the day, who is waiting and for how long.

Authority (issue 15 item 3): the same as the clinician's visit page. A clinician is who the
EHR's SMART launch said (the ``Practitioner`` of the launch's id_token, kept as the seat's
``ehr_user_id``), and the launch handed them a clinician seat's join link. That link, at
``/v/{token}/queue``, also opens their queue: no cookie, no second sign-in (PowerChart's
embedded browser keeps neither, see :mod:`openvisit.launch.service`). A patient's,
interpreter's or guest's link never opens it (:class:`PermissionDenied`), and a clinician's
link stops opening it ``queue_link_hours`` after its own visit closed.

Whose visits: those of the clinician's organisation where the clinician holds a seat, or
whose appointment names them as its provider (``Appointment.provider_ehr_id``, the FHIR
``Practitioner/…`` reference of a launch), on the organisation's today. An appointment fed by
HL7 SIU names its provider by the feed's personnel id (AIP-3 / PV1-7), which is not the FHIR
id a launch gives: such a visit joins the clinician's queue once they launched it once.
Rows are labelled by time, department and seat ("Patient", "Patient 2"): patient names are
never stored.

The department view for front-desk staff (:class:`FrontDesk`, ``/portal/queue``): the
authority is a portal staff account with the ``front_desk`` role, granted by an org admin
(front-desk staff have no EHR launch of their own). It lists the organisation's visits of
the day, optionally of one department (the feed's code, shown by its patient-facing name),
with the same rows as the clinician's queue; it shows who is waiting and for how long and
which visits have a clinician in the call, and opens nothing: admitting is a clinician
seat's right.

Live updates: every lobby change of a visit is also published on the organisation's
:func:`queue_channel` (:func:`openvisit.visits.service.append_event`); the page listens with
Server-Sent Events and refetches its rows. See :mod:`openvisit.visits.views_queue`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit import i18n
from openvisit.audit import record
from openvisit.context import AppContext
from openvisit.errors import Gone, NotFound, PermissionDenied
from openvisit.i18n import gettext as _
from openvisit.models.base import utcnow
from openvisit.models.visit import Appointment, Participant, Visit
from openvisit.notify import departments
from openvisit.visits import repository as repo
from openvisit.visits.roster import STAFF_ROLES
from openvisit.visits.service import (
    find_or_create_seat,
    link_for,
    queue_channel,
    resolve_link,
)

__all__ = ["Clinician", "FrontDesk", "QueueRow", "QueueSeat", "clinician_of", "desk_rows",
           "open_from_queue", "queue_channel", "rows", "time_text"]

#: Appointment statuses whose visits are not in anyone's queue.
NOT_QUEUED = ("cancelled", "entered-in-error")
#: Most rows one queue shows (a clinician's day; a runaway query stays bounded).
MOST_ROWS = 200


@dataclass(frozen=True)
class Clinician:
    """Who a queue page is for: a clinician of one organisation, as the EHR named them."""

    organisation_id: uuid.UUID
    ehr_user_id: str
    timezone: str


@dataclass(frozen=True)
class QueueSeat:
    """A patient, interpreter or guest seat of a visit in the queue: no name, a label."""

    id: str
    role: str
    seat_no: int
    state: str
    connected: bool
    waiting_since: datetime | None


@dataclass(frozen=True)
class QueueRow:
    """One visit of the day as the queue shows it."""

    visit_id: uuid.UUID
    status: str
    start_at: datetime | None
    department: str | None
    clinician_in_call: bool
    seats: list[QueueSeat] = field(default_factory=list)
    #: The feed's department code (``department`` is its patient-facing name).
    department_code: str | None = None

    @property
    def waiting(self) -> list[QueueSeat]:
        return [seat for seat in self.seats if seat.state == "waiting"]


@dataclass(frozen=True)
class FrontDesk:
    """Who the department queue is for: front-desk staff of one organisation (portal)."""

    organisation_id: uuid.UUID
    timezone: str


Viewer = Clinician | FrontDesk


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


async def clinician_of(session: AsyncSession, *, app: AppContext, token: str,
                       now: datetime | None = None) -> Clinician:
    """The clinician whose join link ``token`` is, for their queue.

    Raises :class:`NotFound` for an invalid or revoked link, :class:`PermissionDenied` for
    a seat that is not a clinician's (named by the EHR), and :class:`Gone` once the link's
    own visit closed more than ``queue_link_hours`` ago.
    """
    now = now or utcnow()
    visit, seat = await resolve_link(session, app=app, token=token, check_window_=False)
    if seat.role not in STAFF_ROLES or not seat.ehr_user_id:
        raise PermissionDenied(_("Only a clinician can open the clinic queue."))
    closed = visit.ended_at or visit.window_end
    if closed is not None and now > closed + timedelta(hours=app.settings.queue_link_hours):
        raise Gone(_("This link no longer opens the clinic queue. Launch a visit from the EHR "
                     "and open the queue from there."),
                   code="queue_link_expired", title=_("Open the queue from a new visit"))
    org = await repo.organisation_by_id(session, visit.organisation_id)
    return Clinician(organisation_id=visit.organisation_id, ehr_user_id=seat.ehr_user_id,
                     timezone=org.timezone if org else "UTC")


async def front_desk_of(session: AsyncSession, *, organisation_id: uuid.UUID) -> FrontDesk:
    """The front desk of a signed-in staff member's organisation (its day and zone)."""
    org = await repo.organisation_by_id(session, organisation_id)
    if org is None:
        raise NotFound(_("Your organisation no longer exists."))
    return FrontDesk(organisation_id=organisation_id, timezone=org.timezone)


def day_of(clinician: Viewer, now: datetime) -> tuple[datetime, datetime]:
    """Today in the organisation's time zone, as a [start, end) range of instants."""
    local = now.astimezone(_zone(clinician.timezone))
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, (start + timedelta(days=1)).replace(hour=0)


async def rows(session: AsyncSession, *, clinician: Clinician, language: str,
               now: datetime | None = None) -> list[QueueRow]:
    """Today's visits of ``clinician``, by time, each with its non-clinician seats."""
    since, until = day_of(clinician, now or utcnow())
    found = await repo.clinician_visits(
        session, organisation_id=clinician.organisation_id, ehr_user_id=clinician.ehr_user_id,
        since=since, until=until, staff_roles=STAFF_ROLES, skip_statuses=NOT_QUEUED,
        limit=MOST_ROWS)
    return await _rows_of(session, found, organisation_id=clinician.organisation_id,
                          language=language)


async def desk_rows(session: AsyncSession, *, desk: FrontDesk, language: str,
                    department: str | None = None,
                    now: datetime | None = None) -> tuple[list[QueueRow], list[tuple[str, str]]]:
    """Today's visits of the organisation (of ``department``, a feed code, when given) and
    the departments of the day as (code, name) for the page's filter."""
    since, until = day_of(desk, now or utcnow())
    found = await repo.organisation_visits(
        session, organisation_id=desk.organisation_id, since=since, until=until,
        skip_statuses=NOT_QUEUED, limit=MOST_ROWS)
    every = await _rows_of(session, found, organisation_id=desk.organisation_id,
                           language=language)
    codes = sorted({(row.department_code, row.department or row.department_code)
                    for row in every if row.department_code}, key=lambda c: c[1].lower())
    if department:
        every = [row for row in every if row.department_code == department]
    return every, codes


async def _rows_of(session: AsyncSession, found: Sequence[tuple[Visit, Appointment | None]],
                   *, organisation_id: uuid.UUID, language: str) -> list[QueueRow]:
    seats = await repo.participants_of_visits(session, [visit.id for visit, _a in found])
    names: dict[str, str | None] = {}
    out = []
    for visit, appointment in found:
        department = appointment.department if appointment else None
        if department and department not in names:
            names[department] = await departments.display_name(
                session, organisation_id=organisation_id, department=department,
                language=language) or department
        out.append(_row(visit, appointment, seats.get(visit.id, []),
                        department=names.get(department or ""), code=department))
    return out


def _row(visit: Visit, appointment: Appointment | None, seats: list[Participant], *,
         department: str | None, code: str | None = None) -> QueueRow:
    return QueueRow(
        department_code=code,
        visit_id=visit.id, status=visit.status,
        start_at=appointment.start_at if appointment and appointment.start_at else None,
        department=department,
        clinician_in_call=any(s.role in STAFF_ROLES and s.lobby_state == "admitted"
                              and s.connected for s in seats),
        seats=[QueueSeat(id=str(s.id), role=s.role, seat_no=s.seat_no, state=s.lobby_state,
                         connected=s.connected, waiting_since=s.waiting_since)
               for s in sorted(seats, key=lambda s: (_ORDER.get(s.role, 9), s.seat_no))
               if s.role not in STAFF_ROLES and s.lobby_state != "removed"],
    )


_ORDER = {"patient": 1, "interpreter": 2, "guest": 3}


async def open_from_queue(session: AsyncSession, *, app: AppContext, clinician: Clinician,
                          visit_id: uuid.UUID, now: datetime | None = None) -> str:
    """The clinician's own join link to a visit of their queue (a seat is made for the
    appointment's provider who has none yet: audited as ``visit.open_from_queue``).

    Raises :class:`NotFound` for a visit that is not in the clinician's queue today.
    """
    since, until = day_of(clinician, now or utcnow())
    found = await repo.clinician_visits(
        session, organisation_id=clinician.organisation_id, ehr_user_id=clinician.ehr_user_id,
        since=since, until=until, staff_roles=STAFF_ROLES, skip_statuses=NOT_QUEUED,
        limit=1, visit_id=visit_id)
    if not found:
        raise NotFound(_("This visit is not in your queue today."))
    visit = found[0][0]
    had = await repo.find_seat(session, visit_id=visit.id, role="provider",
                               ehr_user_id=clinician.ehr_user_id)
    seat = had or await find_or_create_seat(session, visit=visit, role="provider",
                                            ehr_user_id=clinician.ehr_user_id)
    if had is None:
        await record(session, actor=clinician.ehr_user_id, action="visit.open_from_queue",
                     object_type="visit", object_id=str(visit.id),
                     organisation_id=visit.organisation_id,
                     after={"visit_id": str(visit.id), "participant_id": str(seat.id)})
    return link_for(app, seat)


def time_text(moment: datetime | None, *, clinician: Viewer, language: str) -> str:
    """"14:30 CET" in the organisation's zone and the page's language ("" without one)."""
    if moment is None:
        return ""
    local = moment.astimezone(_zone(clinician.timezone))
    return (f"{i18n.format_clock(local, language=language)} "
            f"{i18n.zone_label(local, language=language)}")


async def frame_ancestors(session: AsyncSession, *, clinician: Viewer) -> list[str]:
    """The organisation's EHR origins that may frame its pages (the queue opens in the EHR
    like the visit page)."""
    org = await repo.organisation_by_id(session, clinician.organisation_id)
    return list(org.frame_ancestors) if org else []

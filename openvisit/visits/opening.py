"""A clinician opens the room before the patients' window, or reopens a visit ended by mistake.

The join window (``join_window_before_minutes`` before the appointment to
``join_window_after_minutes`` after it) binds patients, not clinicians (issue 15 item 1):

- :func:`open_early`: a clinician seat may enter the room at any time before the window
  opens. Patients keep their window and its wording: they still see "It is a little early"
  until it opens. Recorded as the visit event ``opened_early`` (which is also what lets the
  clinician's later sockets in, :func:`openvisit.visits.service.resolve_link`) and in the
  organisation's audit log.
- :func:`reopen`: a clinician may reopen a visit that was ended, for
  ``visit_reopen_minutes`` after it ended. The visit takes everyone again (a patient opens the
  same link, waits in the lobby and is admitted anew, also if they were in the call when it
  ended); its window is kept open for at least
  ``join_window_after_minutes`` from the reopening. Recorded as the event ``reopened`` and in
  the audit log.

Both run in the caller's transaction, lock the visit row, and are idempotent.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.audit import record
from openvisit.context import AppContext
from openvisit.errors import Conflict, PermissionDenied
from openvisit.i18n import gettext as _
from openvisit.media import service as media
from openvisit.models.base import utcnow
from openvisit.models.visit import Participant, Visit
from openvisit.visits import repository as repo
from openvisit.visits.roster import STAFF_ROLES
from openvisit.visits.service import (
    OPENED_EARLY,
    append_event,
    reopen_deadline,
    resolve_link,
)

REOPENED = "reopened"


async def _clinician(session: AsyncSession, *, app: AppContext,
                     token: str) -> tuple[Visit, Participant]:
    """The visit (locked) and clinician seat of a join token, whatever the window; raises
    :class:`PermissionDenied` for any other seat (a patient's link never opens a room)."""
    visit, seat = await resolve_link(session, app=app, token=token, check_window_=False)
    if seat.role not in STAFF_ROLES:
        raise PermissionDenied(_("Only the clinician of this visit can do that."))
    locked = await repo.visit_by_id(session, visit.id, for_update=True)
    assert locked is not None
    return locked, seat


async def _audit(session: AsyncSession, *, visit: Visit, actor: Participant,
                 action: str, data: dict[str, object]) -> None:
    await record(session, actor=actor.ehr_user_id or f"seat:{actor.id}", action=action,
                 object_type="visit", object_id=str(visit.id),
                 organisation_id=visit.organisation_id,
                 after={"visit_id": str(visit.id), **data})


async def open_early(session: AsyncSession, *, app: AppContext, token: str,
                     now: datetime | None = None) -> tuple[Visit, bool]:
    """Let the clinician of ``token`` into the room before the patients' window opens.

    Returns the visit and whether this call opened it (False: it was open already, to
    clinicians or to everyone). Raises :class:`PermissionDenied` for a seat that is not a
    clinician's, :class:`Conflict` for an ended visit (see :func:`reopen`).
    """
    now = now or utcnow()
    visit, seat = await _clinician(session, app=app, token=token)
    if visit.status == "ended":
        raise Conflict(_("This visit has ended."), code="visit_ended")
    if visit.window_start is None or now >= visit.window_start:
        return visit, False  # the window is open: nothing to open early
    if await repo.visit_has_event(session, visit_id=visit.id, kind=OPENED_EARLY):
        return visit, False
    early_s = int((visit.window_start - now).total_seconds())
    await append_event(session, app=app, visit=visit, kind=OPENED_EARLY, participant=seat,
                       data={"by": str(seat.id), "early_s": early_s})
    await _audit(session, visit=visit, actor=seat, action="visit.open_early",
                 data={"early_s": early_s})
    return visit, True


async def reopen(session: AsyncSession, *, app: AppContext, token: str,
                 now: datetime | None = None) -> tuple[Visit, bool]:
    """Reopen the ended visit of the clinician of ``token``.

    Returns the visit and whether this call reopened it (False: it was not ended). Raises
    :class:`PermissionDenied` for a seat that is not a clinician's and :class:`Conflict`
    (``reopen_too_late``) once ``visit_reopen_minutes`` have passed since it ended.
    """
    now = now or utcnow()
    visit, seat = await _clinician(session, app=app, token=token)
    if visit.status != "ended":
        return visit, False
    deadline = reopen_deadline(visit, reopen_minutes=app.settings.visit_reopen_minutes)
    if deadline is None or now > deadline:
        raise Conflict(
            _("This visit ended too long ago to be reopened. Book a new video appointment in "
              "the EHR and launch it from there."), code="reopen_too_late")
    assert visit.ended_at is not None
    after_s = int((now - visit.ended_at).total_seconds())
    visit.status = "active" if visit.started_at is not None else "scheduled"
    visit.ended_at = None
    keep_open = now + timedelta(minutes=app.settings.join_window_after_minutes)
    if visit.window_end is not None and visit.window_end < keep_open:
        visit.window_end = keep_open
    await session.flush()
    await append_event(session, app=app, visit=visit, kind=REOPENED, participant=seat,
                       data={"by": str(seat.id), "after_s": after_s})
    # Whoever was in the call when it ended comes back through the lobby: the clinician
    # admits them anew (nobody walks into a reopened visit unseen).
    for other in await repo.participants_of(session, visit.id):
        if other.role not in STAFF_ROLES and other.lobby_state == "admitted":
            other.lobby_state, other.left_at, other.waiting_since = "left", now, None
            other.rev = (other.rev or 0) + 1
            await append_event(session, app=app, visit=visit, kind="left", participant=other,
                               data={"reason": "reopened"})
            await media.seat_changed(session, app=app, visit=visit, participant=other)
    await _audit(session, visit=visit, actor=seat, action="visit.reopen",
                 data={"after_s": after_s})
    return visit, True

"""Lobby state changes: join, admit, back to the lobby, remove, leave, end, disconnect.

Each function is one step of a seat's life (invited → waiting → admitted, and removed or
left) made in the caller's transaction: the row is locked, ``rev`` incremented, and a visit
event appended, which is published on the bus after commit. Staff actions check that the
actor is a clinician seat of the same visit. The server is the only one who moves a seat:
pages only ask.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.audit import record
from openvisit.context import AppContext
from openvisit.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from openvisit.i18n import gettext as _
from openvisit.media import service as media
from openvisit.models import QualitySample
from openvisit.models.base import utcnow
from openvisit.models.choices import MediaPath
from openvisit.models.visit import Participant, Visit
from openvisit.notify import invites
from openvisit.visits import chat, records
from openvisit.visits import repository as repo
from openvisit.visits.roster import STAFF_ROLES
from openvisit.visits.service import (
    append_event,
    find_or_create_seat,
    link_for,
    resolve_link,
)

INVITABLE_ROLES = ("interpreter", "guest")


async def _audit(session: AsyncSession, *, visit: Visit, actor: Participant, action: str,
                 target: Participant | None = None) -> None:
    """A clinician's step in the organisation's audit log (issue 15 item 14): who (the EHR
    user id, or the seat when the EHR named none), what, and the seat or visit it touched;
    never a patient reference or a name."""
    await record(session, actor=actor.ehr_user_id or f"seat:{actor.id}", action=action,
                 object_type="participant" if target is not None else "visit",
                 object_id=str(target.id if target is not None else visit.id),
                 organisation_id=visit.organisation_id,
                 after={"visit_id": str(visit.id),
                        **({"role": target.role} if target is not None else {})})


async def join(session: AsyncSession, *, app: AppContext, token: str, connection_id: str,
               now: datetime | None = None,
               devices: str | None = None) -> tuple[Visit, Participant]:
    """A socket says hello: the seat enters the lobby (clinicians go straight in).

    A seat already waiting or admitted keeps its state, so a reconnecting page resumes
    where it was, with one exception: an admitted patient, interpreter or guest who comes
    back while no clinician is in the call waits in the lobby again (the clinician admits
    them anew), so nobody is let into a visit the clinician has left. The socket becomes the
    seat's holder (``connection_id``). ``devices`` is the page's pre-join device check
    ("ready" / "failed"), kept on the ``joined`` event for the drop-off report. Raises what
    :func:`resolve_link` raises.
    """
    now = now or utcnow()
    visit, seat = await resolve_link(session, app=app, token=token, now=now, for_update=True)
    entered = False
    if seat.role in STAFF_ROLES:
        if seat.lobby_state != "admitted":
            seat.lobby_state, seat.admitted_at, seat.waiting_since = "admitted", now, None
            entered = True
    elif seat.lobby_state in ("invited", "left"):
        seat.lobby_state, seat.waiting_since = "waiting", now
        entered = True
    elif seat.lobby_state == "admitted" and not await repo.staff_in_call(
            session, visit.id, STAFF_ROLES):
        seat.lobby_state, seat.waiting_since = "waiting", now
        entered = True
        await media.seat_changed(session, app=app, visit=visit, participant=seat)
    resumed = seat.connected
    seat.connected, seat.connection_id, seat.last_seen_at = True, connection_id, now
    _bump(seat)  # one UPDATE for both changes; both events carry the final snapshot
    if entered:
        await own_event(session, app=app, visit=visit, seat=seat, kind="joined", now=now,
                        data={"devices": devices} if devices else None)
        if seat.lobby_state == "admitted":  # a clinician: straight into the call's media
            await media.seat_changed(session, app=app, visit=visit, participant=seat)
    await own_event(session, app=app, visit=visit, seat=seat, kind="connected", now=now,
                    data={"resumed": True} if resumed else None)
    return visit, seat


async def link_opened(session: AsyncSession, *, app: AppContext, visit: Visit,
                      seat: Participant) -> bool:
    """A patient, interpreter or guest opened their link (the page loaded): the first step
    the drop-off funnel can see after the link was sent. Recorded once per seat, before the
    seat joins the lobby; True if this call recorded it."""
    if seat.role in STAFF_ROLES or seat.lobby_state != "invited":
        return False
    if await repo.has_event(session, participant_id=seat.id, kind="link_opened"):
        return False
    return await own_event(session, app=app, visit=visit, seat=seat, kind="link_opened")


async def own_event(session: AsyncSession, *, app: AppContext, visit: Visit,
                    seat: Participant, kind: str, now: datetime | None = None,
                    data: dict[str, Any] | None = None, group: str = "presence") -> bool:
    """An event the seat's own socket caused, stored if its record budget allows
    (:mod:`openvisit.visits.records`), published to the rooms either way; True if stored."""
    store, suppressed, seat.record_budget = records.spend(
        seat.record_budget, group=group, now=(now or utcnow()).timestamp())
    if store and suppressed:
        data = {**(data or {}), "suppressed": suppressed}
    await append_event(session, app=app, visit=visit, kind=kind, participant=seat, data=data,
                       store=store)
    return store


async def disconnect(session: AsyncSession, *, app: AppContext, participant_id: uuid.UUID,
                     connection_id: str, now: datetime | None = None) -> bool:
    """The socket ``connection_id`` closed; clear ``connected`` if it still held the seat.

    Returns False when a newer socket had taken the seat over (nothing changes then).
    """
    seat = await repo.participant_by_id(session, participant_id, for_update=True)
    if seat is None or seat.connection_id != connection_id:
        return False
    visit = await repo.visit_by_id(session, seat.visit_id)
    assert visit is not None
    now = now or utcnow()
    seat.connected, seat.connection_id, seat.last_seen_at = False, None, now
    _bump(seat)
    await own_event(session, app=app, visit=visit, seat=seat, kind="disconnected", now=now)
    return True


async def leave(session: AsyncSession, *, app: AppContext, visit: Visit,
                participant: Participant) -> None:
    """The participant chose to leave; opening the link again puts them back in the lobby."""
    if participant.lobby_state in ("left", "removed"):
        return
    was_admitted = participant.lobby_state == "admitted"
    participant.lobby_state, participant.left_at = "left", utcnow()
    participant.waiting_since = None
    _bump(participant)
    await own_event(session, app=app, visit=visit, seat=participant, kind="left")
    if was_admitted:
        await media.seat_changed(session, app=app, visit=visit, participant=participant)


async def staff_seat(session: AsyncSession, *, app: AppContext, token: str,
                     visit_id: uuid.UUID | None = None) -> tuple[Visit, Participant]:
    """The clinician a bearer join token stands for; raises unless it is one of ``visit_id``."""
    visit, actor = await resolve_link(session, app=app, token=token)
    if actor.role not in STAFF_ROLES or (visit_id is not None and visit.id != visit_id):
        raise PermissionDenied(_("Only the clinician of this visit can do that."))
    return visit, actor


async def roster(session: AsyncSession, *, app: AppContext, token: str,
                 visit_id: uuid.UUID) -> tuple[Visit, Sequence[Participant]]:
    """The visit and every seat of it, for its clinician (raises as :func:`staff_seat`)."""
    visit, _actor = await staff_seat(session, app=app, token=token, visit_id=visit_id)
    return visit, await repo.participants_of(session, visit.id)


async def room_state(session: AsyncSession, *, visit_id: uuid.UUID
                     ) -> tuple[Visit, str, bool, Sequence[Participant]] | None:
    """The visit, its organisation's provider label mode and ``store_chat`` option, and its
    seats, for a room held in a web process; None once the visit is gone."""
    visit = await repo.visit_by_id(session, visit_id)
    if visit is None:
        return None
    org = await repo.organisation_by_id(session, visit.organisation_id)
    seats = await repo.participants_of(session, visit_id)
    return (visit, org.provider_label_mode if org else "role",
            bool(org and org.store_chat), seats)


async def locked_seat(session: AsyncSession, *,
                      participant_id: uuid.UUID) -> tuple[Visit, Participant]:
    """A seat that is known to exist (its socket said hello), locked for an update, and its
    visit."""
    seat = await repo.participant_by_id(session, participant_id, for_update=True)
    assert seat is not None
    visit = await repo.visit_by_id(session, seat.visit_id)
    assert visit is not None
    return visit, seat


async def _target(session: AsyncSession, *, visit: Visit, actor: Participant,
                  target_id: uuid.UUID) -> Participant:
    target = await repo.participant_by_id(session, target_id, for_update=True)
    if target is None or target.visit_id != visit.id:
        raise NotFound(_("There is no such participant in this visit."))
    if target.id == actor.id:
        raise Conflict(_("You cannot do that to yourself."))
    return target


async def admit(session: AsyncSession, *, app: AppContext, visit: Visit, actor: Participant,
                target_id: uuid.UUID) -> Participant:
    """Let a waiting participant into the call; the first admit starts the visit.

    Idempotent for an admitted seat. Raises :class:`Conflict` if the seat is not waiting
    or the mesh is full (``mesh_max_participants``).
    """
    # Lock the visit first: concurrent admits then count the seats one after the other.
    await repo.visit_by_id(session, visit.id, for_update=True)
    target = await _target(session, visit=visit, actor=actor, target_id=target_id)
    if target.lobby_state == "admitted":
        return target
    if target.lobby_state != "waiting":
        raise Conflict(_("This participant is not waiting in the lobby."),
                       code="not_waiting")
    most = (app.settings.mesh_max_participants if visit.media_backend == "mesh"
            else app.settings.sfu_max_participants)
    if await repo.count_admitted(session, visit.id) >= most:
        raise Conflict(
            _("This visit already has %(n)s people in the call, the most it can hold.")
            % {"n": most}, code="visit_full",
        )
    now = utcnow()
    target.lobby_state, target.admitted_at = "admitted", now
    _bump(target)
    if visit.status == "scheduled":
        visit.status, visit.started_at = "active", now
        await append_event(session, app=app, visit=visit, kind="started",
                           data={"by": str(actor.id)})
    await append_event(session, app=app, visit=visit, kind="admitted", participant=target,
                       data={"by": str(actor.id), "waited_s": _waited(target, now)})
    await _audit(session, visit=visit, actor=actor, action="visit.admit", target=target)
    await media.seat_changed(session, app=app, visit=visit, participant=target)
    return target


async def return_to_lobby(session: AsyncSession, *, app: AppContext, visit: Visit,
                          actor: Participant, target_id: uuid.UUID) -> Participant:
    """Send an admitted participant back to the lobby (they keep the page open and wait)."""
    target = await _target(session, visit=visit, actor=actor, target_id=target_id)
    if target.lobby_state == "waiting":
        return target
    if target.lobby_state != "admitted" or target.role in STAFF_ROLES:
        raise Conflict(_("Only a participant in the call can be sent back to the lobby."),
                       code="not_admitted")
    target.lobby_state, target.waiting_since = "waiting", utcnow()
    _bump(target)
    await append_event(session, app=app, visit=visit, kind="returned_to_lobby",
                       participant=target, data={"by": str(actor.id)})
    await _audit(session, visit=visit, actor=actor, action="visit.return_to_lobby",
                 target=target)
    await media.seat_changed(session, app=app, visit=visit, participant=target)
    return target


async def remove(session: AsyncSession, *, app: AppContext, visit: Visit, actor: Participant,
                 target_id: uuid.UUID) -> Participant:
    """Remove a participant for good: their link stops working (its token is revoked)."""
    target = await _target(session, visit=visit, actor=actor, target_id=target_id)
    if target.lobby_state == "removed":
        return target
    target.lobby_state, target.left_at = "removed", utcnow()
    target.token_version += 1
    _bump(target)
    await append_event(session, app=app, visit=visit, kind="removed", participant=target,
                       data={"by": str(actor.id)})
    await _audit(session, visit=visit, actor=actor, action="visit.remove", target=target)
    await media.seat_changed(session, app=app, visit=visit, participant=target)
    return target


async def end_visit(session: AsyncSession, *, app: AppContext, visit: Visit,
                    actor: Participant) -> Visit:
    """End the visit for everyone; every link to it then shows "This visit has ended"."""
    locked = await repo.visit_by_id(session, visit.id, for_update=True)
    assert locked is not None
    if locked.status == "ended":
        return locked
    locked.status, locked.ended_at = "ended", utcnow()
    await session.flush()
    await append_event(session, app=app, visit=locked, kind="ended",
                       data={"by": str(actor.id), "by_role": actor.role})
    await _audit(session, visit=locked, actor=actor, action="visit.end")
    await chat.visit_ended(session, app=app, visit=locked)
    await media.visit_ended(session, app=app, visit=locked)
    return locked


async def invite(session: AsyncSession, *, app: AppContext, visit: Visit, actor: Participant,
                 role: str, language: str | None = None) -> tuple[Participant, str]:
    """A new interpreter or guest seat and its join link (to copy, or to send later)."""
    if role not in INVITABLE_ROLES:
        raise InvalidInput(_("Only an interpreter or a guest can be invited."))
    seat = await find_or_create_seat(session, visit=visit, role=role, language=language)
    await append_event(session, app=app, visit=visit, kind="invited", participant=seat,
                       data={"by": str(actor.id), "role": role})
    await _audit(session, visit=visit, actor=actor, action="visit.invite", target=seat)
    return seat, link_for(app, seat)


async def send_invite(session: AsyncSession, *, app: AppContext, visit: Visit,
                      actor: Participant, target_id: uuid.UUID, address: str) -> invites.Queued:
    """Send an interpreter's or guest's link by SMS or e-mail (:mod:`openvisit.notify.invites`):
    a job in this transaction, a visit event and an audit entry by channel only."""
    target = await _target(session, visit=visit, actor=actor, target_id=target_id)
    if target.role not in INVITABLE_ROLES:
        raise Conflict(_("Only an interpreter's or a guest's link can be sent from here."))
    if target.lobby_state == "removed":
        raise Conflict(_("This participant was removed; their link no longer works."))
    if visit.status == "ended":
        raise Conflict(_("The visit has ended. Reopen it first."))
    return await send_link(session, app=app, visit=visit, actor=actor, target=target,
                           address=address)


async def send_link(session: AsyncSession, *, app: AppContext, visit: Visit,
                    actor: Participant, target: Participant, address: str) -> invites.Queued:
    """Queue ``target``'s link to ``address`` (the caller checked who may) and record it:
    the visit event ``invite_sent`` and the audit entry ``visit.invite_send``, by channel only.
    Shared by the clinician's invites and the patient's caregivers."""
    queued = await invites.queue_invite(
        session, app=app, organisation_id=visit.organisation_id, visit_id=visit.id,
        appointment_id=visit.appointment_id, participant_id=target.id,
        token_version=target.token_version, address=address)
    if not queued.repeated:
        await append_event(session, app=app, visit=visit, kind="invite_sent",
                           participant=target, data={"by": str(actor.id),
                                                     "channel": queued.channel})
        await _audit(session, visit=visit, actor=actor, action="visit.invite_send",
                     target=target)
    return queued


async def record_quality(session: AsyncSession, *, visit_id: uuid.UUID,
                         participant_id: uuid.UUID, sample: dict[str, Any],
                         media_path: MediaPath | None = None) -> None:
    """Store one call-quality sample from a browser's ``getStats()`` (and its media path)."""
    repo.add_quality(session, QualitySample(visit_id=visit_id, participant_id=participant_id,
                                            at=utcnow(), media_path=media_path, **sample))
    await session.flush()


def _bump(seat: Participant) -> None:
    seat.rev = (seat.rev or 0) + 1


def _waited(seat: Participant, now: datetime) -> int | None:
    if seat.waiting_since is None:
        return None
    return int((now - seat.waiting_since).total_seconds())

"""A patient brings a family member or caregiver into their visit (issue 15 item 7).

The patient's own join link is the authority: from the pre-join page or the lobby the patient
asks for a caregiver's link (``POST /api/visits/<visit>/caregivers``) and copies, shares or
sends it (by SMS or e-mail, through :mod:`openvisit.notify.invites`, the clinician's invite
path with its limits). The caregiver gets a **guest** seat marked ``invited_by="patient"``:
like every guest they wait in the lobby until the clinician admits them, and the clinician's
roster says "invited by the patient", so nobody enters a call on the patient's word alone.

Limits: the organisation's ``patient_guests_max`` caregiver seats per visit (default 2; 0 turns
the button off; removed seats do not count), only while the patient's own link works (join
window open, seat not removed, visit not ended). A caregiver cannot invite anyone; neither can
an interpreter or a clinician-invited guest. Recorded: the visit event ``invited`` (``by`` =
the patient's seat, ``by_patient``) and the audit entry ``visit.invite_caregiver``.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.audit import record
from openvisit.context import AppContext
from openvisit.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from openvisit.i18n import gettext as _
from openvisit.models import Organisation
from openvisit.models.choices import InvitedBy
from openvisit.models.visit import Participant, Visit
from openvisit.notify import invites
from openvisit.visits import lobby
from openvisit.visits import repository as repo
from openvisit.visits.service import append_event, find_or_create_seat, link_for

BY_PATIENT: InvitedBy = "patient"


async def limit_for(session: AsyncSession, visit: Visit) -> int:
    org = await session.get(Organisation, visit.organisation_id)
    return org.patient_guests_max if org is not None else 0


def _require_patient(visit: Visit, actor: Participant) -> None:
    if actor.role != "patient":
        raise PermissionDenied(_("Only the patient can invite a family member or caregiver."))
    if visit.status == "ended":
        raise Conflict(_("This visit has ended."))


async def invite(session: AsyncSession, *, app: AppContext, visit: Visit,
                 actor: Participant) -> tuple[Participant, str]:
    """A new caregiver seat and its link; raises when the organisation's limit is reached."""
    _require_patient(visit, actor)
    await repo.visit_by_id(session, visit.id, for_update=True)  # count one request at a time
    most = await limit_for(session, visit)
    if most <= 0:
        raise Conflict(_("This clinic does not let patients invite someone themselves. Ask the "
                         "clinic to invite them."), code="caregivers_off")
    if await repo.count_caregivers(session, visit_id=visit.id) >= most:
        raise Conflict(_("You have already invited %(n)s people, the most this clinic allows. "
                         "If someone else should join, ask the clinic.")
                       % {"n": most}, code="caregivers_full")
    seat = await find_or_create_seat(session, visit=visit, role="guest",
                                     language=actor.language)
    seat.invited_by = BY_PATIENT
    await session.flush()
    await append_event(session, app=app, visit=visit, kind="invited", participant=seat,
                       data={"by": str(actor.id), "role": "guest", "by_patient": True})
    await record(session, actor=f"seat:{actor.id}", action="visit.invite_caregiver",
                 object_type="participant", object_id=str(seat.id),
                 organisation_id=visit.organisation_id, after={"visit_id": str(visit.id)})
    return seat, link_for(app, seat)


async def send(session: AsyncSession, *, app: AppContext, visit: Visit, actor: Participant,
               target_id: uuid.UUID, address: str) -> invites.Queued:
    """Send a caregiver's link the patient made, by SMS or e-mail (the invite path's limits)."""
    _require_patient(visit, actor)
    target = await repo.participant_by_id(session, target_id, for_update=True)
    if (target is None or target.visit_id != visit.id or target.invited_by != BY_PATIENT):
        raise NotFound(_("There is no such person invited by you in this visit."))
    if target.lobby_state == "removed":
        raise Conflict(_("The clinic removed this person; their link no longer works."))
    return await lobby.send_link(session, app=app, visit=visit, actor=actor, target=target,
                                 address=address)


async def set_limit(session: AsyncSession, *, slug: str, most: int,
                    actor: str) -> Organisation:
    """How many caregivers a patient may invite per visit in organisation ``slug`` (0: none);
    audited. Raises NotFound / InvalidInput."""
    if not 0 <= most <= 10:
        raise InvalidInput(_("Give a number from 0 (patients cannot invite anyone) to 10."))
    org = await repo.organisation_by_slug(session, slug)
    if org is None:
        raise NotFound(f"There is no organisation {slug!r}.")
    before = {"patient_guests_max": org.patient_guests_max}
    org.patient_guests_max = most
    await session.flush()
    await record(session, actor=actor, action="organisation.patient_guests", obj=org,
                 before=before, after={"patient_guests_max": most}, organisation_id=org.id)
    return org

"""The clinician's JSON actions on a visit, authorised by their join token as a bearer.

``Authorization: Bearer <join token>`` of a clinician seat of the same visit. Every action
is one transaction: the seat changes, a visit event is appended, the bus tells every web
process after commit, and every socket of the visit gets its new view.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit import i18n
from openvisit.context import AppContext
from openvisit.errors import NotAuthenticated, PermissionDenied
from openvisit.i18n import gettext as _
from openvisit.models.visit import Participant, Visit
from openvisit.visits import caregivers, lobby
from openvisit.visits.roster import Seat
from openvisit.visits.service import resolve_link
from openvisit.visits.turn import ice_config
from openvisit.visits.tx import transaction
from openvisit.web.deps import CtxDep
from openvisit.web.schemas import error_responses

router = APIRouter(
    prefix="/api/visits", tags=["visits"], responses=error_responses(401, 403, 404, 409, 410, 422)
)


def bearer_token(request: Request) -> str:
    """The join token from ``Authorization: Bearer``; raises NotAuthenticated without one."""
    i18n.activate(i18n.negotiate(request.headers.get("x-openvisit-lang"),
                                 accept_language=request.headers.get("accept-language")))
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("Send the visit link's token as 'Authorization: Bearer …'.")
    return token.strip()


TokenDep = Annotated[str, Depends(bearer_token)]


class SeatOut(BaseModel):
    id: str
    role: str
    n: int
    state: str
    connected: bool
    waiting_since: str | None = None


class InviteIn(BaseModel):
    role: Literal["interpreter", "guest"]
    lang: str | None = Field(default=None, max_length=8)


class SendInviteIn(BaseModel):
    #: A mobile number (the organisation's region, or with its country code) or an e-mail.
    to: str = Field(min_length=1, max_length=1000)  # over 254: refused with a reason


class SendInviteOut(BaseModel):
    channel: Literal["sms", "email"]
    #: The address as the clinician may see it again: ``+44*****123``, ``a***@example.org``.
    to: str
    #: False when the same link went to the same address moments ago (sent once).
    new: bool


class InviteOut(BaseModel):
    participant: SeatOut
    url: str


class VisitOut(BaseModel):
    id: str
    status: str
    participants: list[SeatOut]


def _out(participant: Participant) -> SeatOut:
    seat = Seat.of(participant)
    return SeatOut(id=seat.id, role=seat.role, n=seat.seat_no, state=seat.state,
                   connected=seat.connected, waiting_since=seat.waiting_since)


@router.get("/ice-servers")
async def ice_servers(token: TokenDep, ctx: CtxDep) -> dict[str, Any]:
    """STUN/TURN servers with fresh TURN REST credentials for the seat of the token."""
    async with transaction(ctx) as session:
        _visit, seat = await resolve_link(session, app=ctx, token=token)
    return ice_config(ctx.settings, participant_id=seat.id)


@router.get("/{visit_id}")
async def visit_roster(visit_id: uuid.UUID, token: TokenDep, ctx: CtxDep) -> VisitOut:
    """The visit's status and every seat (clinicians only)."""
    async with transaction(ctx) as session:
        visit, seats = await lobby.roster(session, app=ctx, token=token, visit_id=visit_id)
    return VisitOut(id=str(visit.id), status=visit.status, participants=[_out(p) for p in seats])


async def _act(action: str, visit_id: uuid.UUID, participant_id: uuid.UUID, token: str,
               ctx: AppContext) -> SeatOut:
    """One staff action in one transaction (published to every socket after commit)."""
    step = {"admit": lobby.admit, "lobby": lobby.return_to_lobby, "remove": lobby.remove}[action]
    async with transaction(ctx) as session:
        visit, actor = await lobby.staff_seat(session, app=ctx, token=token, visit_id=visit_id)
        seat = await step(session, app=ctx, visit=visit, actor=actor, target_id=participant_id)
        return _out(seat)


@router.post("/{visit_id}/participants/{participant_id}/admit")
async def admit(visit_id: uuid.UUID, participant_id: uuid.UUID, token: TokenDep,
                ctx: CtxDep) -> SeatOut:
    """Let a waiting participant into the call (409 if not waiting or the call is full)."""
    return await _act("admit", visit_id, participant_id, token, ctx)


@router.post("/{visit_id}/participants/{participant_id}/lobby")
async def back_to_lobby(visit_id: uuid.UUID, participant_id: uuid.UUID, token: TokenDep,
                        ctx: CtxDep) -> SeatOut:
    """Send an admitted participant back to the lobby."""
    return await _act("lobby", visit_id, participant_id, token, ctx)


@router.post("/{visit_id}/participants/{participant_id}/remove")
async def remove(visit_id: uuid.UUID, participant_id: uuid.UUID, token: TokenDep,
                 ctx: CtxDep) -> SeatOut:
    """Remove a participant; their link stops working."""
    return await _act("remove", visit_id, participant_id, token, ctx)


@router.post("/{visit_id}/end")
async def end(visit_id: uuid.UUID, token: TokenDep, ctx: CtxDep) -> dict[str, str]:
    """End the visit for everyone."""
    async with transaction(ctx) as session:
        visit, actor = await lobby.staff_seat(session, app=ctx, token=token, visit_id=visit_id)
        ended = await lobby.end_visit(session, app=ctx, visit=visit, actor=actor)
    return {"id": str(ended.id), "status": ended.status}


@router.post("/{visit_id}/invites", status_code=201)
async def invite(visit_id: uuid.UUID, body: InviteIn, token: TokenDep,
                 ctx: CtxDep) -> InviteOut:
    """A new interpreter or guest seat and its join link (to copy, or to send below)."""
    async with transaction(ctx) as session:
        visit, actor = await lobby.staff_seat(session, app=ctx, token=token, visit_id=visit_id)
        seat, url = await lobby.invite(session, app=ctx, visit=visit, actor=actor,
                                       role=body.role,
                                       language=i18n.negotiate(body.lang) if body.lang else None)
        return InviteOut(participant=_out(seat), url=url)


@router.post("/{visit_id}/invites/{participant_id}/send", status_code=202,
             responses=error_responses(429))
async def send_invite(visit_id: uuid.UUID, participant_id: uuid.UUID, body: SendInviteIn,
                      token: TokenDep, ctx: CtxDep) -> SendInviteOut:
    """Send an interpreter's or guest's link by SMS or e-mail (queued; the message log and
    the outbox show it going out). 409 when messaging is not set up, 429 over the limit."""
    async with transaction(ctx) as session:
        visit, actor = await lobby.staff_seat(session, app=ctx, token=token, visit_id=visit_id)
        queued = await lobby.send_invite(session, app=ctx, visit=visit, actor=actor,
                                         target_id=participant_id, address=body.to)
    return SendInviteOut(channel=queued.channel, to=queued.masked, new=not queued.repeated)


async def _patient_seat(session: AsyncSession, ctx: AppContext, token: str,
                        visit_id: uuid.UUID) -> tuple[Visit, Participant]:
    visit, actor = await resolve_link(session, app=ctx, token=token)
    if visit.id != visit_id:
        raise PermissionDenied(_("This link is for another visit."))
    return visit, actor


@router.post("/{visit_id}/caregivers", status_code=201)
async def invite_caregiver(visit_id: uuid.UUID, token: TokenDep, ctx: CtxDep) -> InviteOut:
    """The patient invites a family member or caregiver: a guest seat marked "invited by the
    patient" that waits for the clinician like every guest (409 over the clinic's limit)."""
    async with transaction(ctx) as session:
        visit, actor = await _patient_seat(session, ctx, token, visit_id)
        seat, url = await caregivers.invite(session, app=ctx, visit=visit, actor=actor)
        return InviteOut(participant=_out(seat), url=url)


@router.post("/{visit_id}/caregivers/{participant_id}/send", status_code=202,
             responses=error_responses(429))
async def send_caregiver_link(visit_id: uuid.UUID, participant_id: uuid.UUID,
                              body: SendInviteIn, token: TokenDep,
                              ctx: CtxDep) -> SendInviteOut:
    """The patient sends their caregiver's link by SMS or e-mail (as the clinician's invites)."""
    async with transaction(ctx) as session:
        visit, actor = await _patient_seat(session, ctx, token, visit_id)
        queued = await caregivers.send(session, app=ctx, visit=visit, actor=actor,
                                       target_id=participant_id, address=body.to)
    return SendInviteOut(channel=queued.channel, to=queued.masked, new=not queued.repeated)

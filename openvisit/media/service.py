"""What the lobby calls when a seat's media rights change, and what a joining seat needs.

A seat's media follows its lobby state: admitted means granted, anything else means
revoked. The lobby calls :func:`seat_changed` in the same transaction as the change; for a
backend that calls out (Janus, LiveKit) that enqueues one ``media.sync_seat`` job, which
reads the seat's state *when it runs* and grants or revokes accordingly (so two jobs of
one seat cannot leave a stale grant, whatever order they finish in: each holds the seat's
row while it calls out). :func:`visit_ended` enqueues ``media.close_room``. The mesh calls
nothing: its grant is the signalling roster itself.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.context import AppContext
from openvisit.jobs import enqueue
from openvisit.logs import get_logger
from openvisit.media import repository as repo
from openvisit.media.backend import JoinInfo, MediaBackend, Seat
from openvisit.media.backends import backend_named
from openvisit.models.visit import Participant, Visit

log = get_logger(__name__)

SYNC_SEAT = "media.sync_seat"
CLOSE_ROOM = "media.close_room"


def backend_of(app: AppContext, visit: Visit) -> MediaBackend:
    """The backend the visit was opened with (``visit.media_backend``)."""
    return backend_named(app, visit.media_backend)


def seat_of(participant: Participant) -> Seat:
    return Seat(visit_id=participant.visit_id, participant_id=participant.id,
                role=participant.role, token_version=participant.token_version)


async def seat_changed(session: AsyncSession, *, app: AppContext, visit: Visit,
                       participant: Participant) -> None:
    """The seat was admitted, sent back, removed or left: bring its media grant in line."""
    if not backend_of(app, visit).calls_out:
        return
    await enqueue(session, SYNC_SEAT, payload={"participant_id": str(participant.id)},
                  idempotency_key=f"{SYNC_SEAT}:{participant.id}:{participant.rev}")


async def visit_ended(session: AsyncSession, *, app: AppContext, visit: Visit) -> None:
    """The visit ended: its room is destroyed, disconnecting everyone in it."""
    if not backend_of(app, visit).calls_out:
        return
    await enqueue(session, CLOSE_ROOM, payload={"visit_id": str(visit.id)},
                  idempotency_key=f"{CLOSE_ROOM}:{visit.id}")


def join_info(app: AppContext, visit: Visit | None, participant: Participant) -> JoinInfo | None:
    """What an admitted seat's page needs to join the media; None for any other seat."""
    if visit is None or participant.lobby_state != "admitted" or visit.status == "ended":
        return None
    return backend_of(app, visit).join_info(seat_of(participant))


async def readiness(app: AppContext) -> str:
    """The configured backend's own check (``/readyz``)."""
    return await backend_named(app, app.settings.media_backend).check()


async def sync_seat(session: AsyncSession, *, app: AppContext,
                    participant_id: uuid.UUID) -> str | None:
    """Grant an admitted seat its media, revoke it from any other, holding the seat's row
    meanwhile; returns what was done ("granted", "revoked"), None for nothing."""
    found = await repo.locked_seat(session, participant_id)
    if found is None:
        return None
    participant, visit = found
    if visit.status == "ended":
        return None  # the room is destroyed with every grant (CLOSE_ROOM)
    backend = backend_of(app, visit)
    if participant.lobby_state == "admitted":
        await backend.grant(seat_of(participant))
        return "granted"
    await backend.revoke(seat_of(participant))
    return "revoked"


async def close_room(session: AsyncSession, *, app: AppContext, visit_id: uuid.UUID) -> None:
    visit = await repo.visit_by_id(session, visit_id)
    if visit is not None:
        await backend_of(app, visit).close_room(visit.id)


async def media_joined(session: AsyncSession, *, app: AppContext, visit_id: uuid.UUID,
                       participant_id: uuid.UUID) -> bool:
    """The media server says a participant joined the visit's room (a LiveKit webhook).
    True if the seat may be there; otherwise a revocation is enqueued (it held a token from
    before it was sent back, say) and False is returned."""
    found = await repo.locked_seat(session, participant_id)
    if found is not None:
        participant, visit = found
        if participant.visit_id == visit_id and participant.lobby_state == "admitted" \
                and visit.status != "ended":
            return True
        await enqueue(session, SYNC_SEAT, payload={"participant_id": str(participant.id)},
                      idempotency_key=f"{SYNC_SEAT}:{participant.id}:{participant.rev}:joined")
    log.warning("media_joined_without_admission", visit_id=str(visit_id),
                participant_id=str(participant_id))
    return False


async def usage(session: AsyncSession) -> dict[str, dict[str, int]]:
    """Per backend: live rooms, publishers (each seat in the call sends once) and
    subscriptions (each receives every other), from the database (all processes)."""
    out: dict[str, dict[str, int]] = {}
    for backend, seats in await repo.live_rooms(session):
        row = out.setdefault(backend, {"rooms": 0, "publishers": 0, "subscriptions": 0})
        row["rooms"] += 1
        row["publishers"] += seats
        row["subscriptions"] += seats * (seats - 1)
    return out

"""Jobs of the media package: sync one seat's grant with its lobby state; close a room.

Both are safe to run twice (the backends' calls are idempotent) and in any order: the seat
job decides from the state it reads under the seat's row lock, not from its payload.
"""

from __future__ import annotations

import uuid

from openvisit.jobs import JobContext, job_handler
from openvisit.logs import get_logger
from openvisit.media import service
from openvisit.media.backends import backend_named
from openvisit.visits import repository as visits_repo

log = get_logger(__name__)


@job_handler(service.SYNC_SEAT)
async def sync_seat(job: JobContext) -> None:
    """Grant an admitted seat its media, revoke it from anyone else (lock held meanwhile)."""
    found = await visits_repo.seat_with_visit(
        job.session, uuid.UUID(job.payload["participant_id"]), for_update=True)
    if found is None:
        return
    participant, visit = found
    backend = backend_named(job.app, visit.media_backend)
    seat = service.seat_of(participant)
    if participant.lobby_state == "admitted" and visit.status != "ended":
        await backend.grant(seat)
    elif visit.status != "ended":  # an ended visit's room is destroyed, with every grant
        await backend.revoke(seat)
    log.info("media_seat_synced", participant_id=str(participant.id),
             state=participant.lobby_state, job_id=job.job_id)


@job_handler(service.CLOSE_ROOM)
async def close_room(job: JobContext) -> None:
    visit = await visits_repo.visit_by_id(job.session, uuid.UUID(job.payload["visit_id"]))
    if visit is None:
        return
    await backend_named(job.app, visit.media_backend).close_room(visit.id)

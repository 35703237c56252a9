"""Jobs of the media package: sync one seat's grant with its lobby state; close a room.

Both are safe to run twice (the backends' calls are idempotent) and in any order: the seat
job decides from the state it reads under the seat's row lock, not from its payload.
"""

from __future__ import annotations

import uuid

from openvisit.jobs import JobContext, job_handler
from openvisit.logs import get_logger
from openvisit.media import service

log = get_logger(__name__)


@job_handler(service.SYNC_SEAT)
async def sync_seat(job: JobContext) -> None:
    participant_id = uuid.UUID(job.payload["participant_id"])
    done = await service.sync_seat(job.session, app=job.app, participant_id=participant_id)
    log.info("media_seat_synced", participant_id=str(participant_id), done=done,
             job_id=job.job_id)


@job_handler(service.CLOSE_ROOM)
async def close_room(job: JobContext) -> None:
    await service.close_room(job.session, app=job.app,
                             visit_id=uuid.UUID(job.payload["visit_id"]))

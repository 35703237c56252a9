"""Presence that survives a dead web process: heartbeats and the sweep.

A seat is "connected" while some socket holds it (``connection_id``). The socket's own close
clears that (:func:`openvisit.visits.lobby.disconnect`), but a process killed with its
sockets never runs that code, and its seats would stay "connected" for ever. So every
socket's pings refresh ``last_seen_at`` (at most every ``presence_heartbeat_seconds``), and
a periodic job (:mod:`openvisit.visits.tasks`) marks seats unseen for
``presence_timeout_seconds`` disconnected, writing the ``disconnected`` event (with
``reason: "stale"``) that the rooms, the clinician's panel and write-back see.

A socket that is alive but was swept anyway (its heartbeats could not be stored for a
while) takes its seat back on its next heartbeat, as a reconnecting page would.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.context import AppContext
from openvisit.logs import get_logger
from openvisit.models.base import utcnow
from openvisit.visits import repository as repo
from openvisit.visits.service import append_event

log = get_logger(__name__)
#: Seats one sweep marks at most (the next run takes the rest).
SWEEP_BATCH = 500


async def heartbeat(session: AsyncSession, *, app: AppContext, participant_id: uuid.UUID,
                    connection_id: str, now: datetime | None = None) -> bool:
    """The socket ``connection_id`` is alive: refresh ``last_seen_at``. If a sweep had
    marked the seat disconnected meanwhile (and no other socket took it), take it back
    and say so with a ``connected`` event. False when another socket holds the seat."""
    now = now or utcnow()
    if await repo.touch_seat(session, participant_id=participant_id,
                             connection_id=connection_id, now=now):
        return True
    found = await repo.seat_with_visit(session, participant_id, for_update=True)
    if found is None:
        return False
    seat, visit = found
    if seat.connection_id is not None and seat.connection_id != connection_id:
        return False
    if seat.lobby_state == "removed" or visit.status == "ended":
        return False
    seat.connected, seat.connection_id, seat.last_seen_at = True, connection_id, now
    seat.rev = (seat.rev or 0) + 1
    await append_event(session, app=app, visit=visit, kind="connected", participant=seat,
                       data={"resumed": True, "after": "sweep"})
    log.info("presence_seat_reclaimed", participant_id=str(seat.id))
    return True


async def sweep(session: AsyncSession, *, app: AppContext,
                now: datetime | None = None) -> int:
    """Mark seats whose socket went silent disconnected; returns how many."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=app.settings.presence_timeout_seconds)
    swept = 0
    for seat, visit in await repo.stale_seats(session, seen_before=cutoff, limit=SWEEP_BATCH):
        seen = seat.last_seen_at
        seat.connected, seat.connection_id = False, None
        seat.rev = (seat.rev or 0) + 1
        await append_event(session, app=app, visit=visit, kind="disconnected", participant=seat,
                           data={"reason": "stale",
                                 "unseen_s": int((now - seen).total_seconds()) if seen else None})
        swept += 1
    if swept:
        log.info("presence_swept", seats=swept)
    return swept

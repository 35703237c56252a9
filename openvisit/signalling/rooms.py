"""Each web process's cache of the visits it serves, and presence fan-out to its sockets.

A :class:`Room` exists while this process holds at least one socket of the visit. It
subscribes to ``visit.<id>`` once (not once per socket), loads the roster from the database,
then applies each event's seat snapshot if its ``rev`` is newer than the cached one (so
events published out of commit order by two processes cannot regress a seat) and pushes
each local socket the view its role allows (:func:`openvisit.visits.roster.view_for`). On
:data:`~openvisit.bus.RESYNC` it reloads from the database, the source of truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any, Protocol

from openvisit.bus import RESYNC, Subscription
from openvisit.context import AppContext
from openvisit.logs import get_logger
from openvisit.signalling.limits import TokenBucket
from openvisit.visits import lobby
from openvisit.visits.roster import Seat, VisitFacts
from openvisit.visits.service import visit_channel
from openvisit.visits.tx import transaction

log = get_logger(__name__)
STATUS_RANK = {"scheduled": 0, "active": 1, "ended": 2}


class Member(Protocol):
    """What a room needs from a socket: to be told the roster changed."""

    def on_roster(self, room: Room) -> None: ...


class Room:
    """The roster of one visit as this process knows it, and the local sockets in it."""

    def __init__(self, ctx: AppContext, visit_id: uuid.UUID) -> None:
        self.ctx = ctx
        self.visit_id = visit_id
        self.seats: dict[str, Seat] = {}
        self.visit = VisitFacts(id=str(visit_id), status="scheduled")
        self.members: set[Member] = set()
        #: When each seat last stored a quality sample from this process (monotonic s).
        self.last_quality: dict[str, float] = {}
        #: Chat and lobby-message budgets of each seat in this process (by kind, then seat
        #: id): a reconnecting sender keeps its budget.
        self.message_budgets: dict[tuple[str, str], TokenBucket] = {}
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stack = AsyncExitStack()
        self._task: asyncio.Task[None] | None = None
        self._tick: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def allow_message(self, kind: str, seat_id: str, now: float) -> bool:
        """May seat ``seat_id`` send one more ``chat`` or ``lobby_message`` now?"""
        bucket = self.message_budgets.get((kind, seat_id))
        if bucket is None:
            s = self.ctx.settings
            bucket = (TokenBucket(s.ws_chat_burst, s.ws_chat_per_second) if kind == "chat"
                      else TokenBucket(s.ws_lobby_messages_burst,
                                       s.ws_lobby_messages_per_second))
            self.message_budgets[(kind, seat_id)] = bucket
        return bucket.take(now)

    async def start(self) -> None:
        """Subscribe first, then load: an event racing the load is applied after it."""
        try:
            sub = await self._stack.enter_async_context(
                self.ctx.bus.subscribe(visit_channel(self.visit_id))
            )
            await self.reload()
            self._task = asyncio.create_task(self._run(sub), name=f"room-{self.visit_id}")
        except BaseException as exc:
            await self._stack.aclose()
            if not self.ready.done():
                self.ready.set_exception(exc)
                self.ready.exception()  # retrieved here; waiters get it through `ready`
            raise
        self.ready.set_result(None)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._stack.aclose()

    async def reload(self) -> None:
        async with transaction(self.ctx) as session:
            state = await lobby.room_state(session, visit_id=self.visit_id)
        if state is None:
            self.visit = self.visit.with_status("ended")
            self.seats = {}
            return
        visit, label_mode, store_chat, participants = state
        self.visit = VisitFacts.of(visit, provider_label_mode=label_mode, store_chat=store_chat)
        self.seats = {str(p.id): Seat.of(p) for p in participants}

    def apply(self, message: dict[str, Any]) -> bool:
        """Apply one bus event; True if anything visible changed."""
        changed = False
        raw = message.get("seat")
        if isinstance(raw, dict):
            try:
                seat = Seat.from_dict(raw)
            except (KeyError, TypeError, ValueError):
                log.warning("room_bad_seat_snapshot", visit_id=str(self.visit_id))
                seat = None
            if seat is not None:
                old = self.seats.get(seat.id)
                if old is None or seat.rev > old.rev:
                    self.seats[seat.id] = seat
                    changed = True
        status = (message.get("visit") or {}).get("status")
        # A status only moves forward (bus messages may arrive out of order), except when a
        # clinician reopens an ended visit (openvisit.visits.opening.reopen).
        reopened = message.get("kind") == "reopened" and status != self.visit.status
        if isinstance(status, str) and (reopened or STATUS_RANK.get(status, -1) > STATUS_RANK.get(
            self.visit.status, -1
        )):
            self.visit = self.visit.with_status(status)
            changed = True
        return changed

    def apply_seat(self, seat: Seat) -> None:
        """Apply a snapshot this process just committed (saves waiting for the bus)."""
        old = self.seats.get(seat.id)
        if old is None or seat.rev > old.rev:
            self.seats[seat.id] = seat
            self.push()

    def push(self) -> None:
        for member in list(self.members):
            member.on_roster(self)
        tick, self._tick = self._tick, asyncio.get_running_loop().create_future()
        tick.set_result(None)

    async def next_update(self, *, within_s: float) -> None:
        """Wait until the roster next changes, or ``within_s`` seconds pass."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._tick), within_s)

    async def _run(self, sub: Subscription) -> None:
        while True:
            channel, message = await sub.get()
            try:
                if channel == RESYNC:
                    await self.reload()
                    changed = True
                else:
                    changed = self.apply(message)
            except Exception:
                # A failed reload (database briefly away) must not kill the room: keep the
                # cache and retry on the next event.
                log.exception("room_update_failed", visit_id=str(self.visit_id))
                continue
            if changed:
                self.push()


class Rooms:
    """The rooms of this process, created on a visit's first socket, gone with its last.

    ``clock`` is the monotonic clock (seconds) the process's sockets time their heartbeats,
    budgets and deadlines by; tests inject one rather than sleep past an interval.
    """

    def __init__(self, ctx: AppContext, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ctx = ctx
        self.clock = clock
        self._rooms: dict[uuid.UUID, Room] = {}

    def __len__(self) -> int:
        return len(self._rooms)

    async def enter(self, visit_id: uuid.UUID, member: Member) -> Room:
        room = self._rooms.get(visit_id)
        if room is None:
            room = Room(self.ctx, visit_id)
            self._rooms[visit_id] = room
            starting = asyncio.create_task(room.start())
            starting.add_done_callback(_consume)
        room.members.add(member)
        try:
            await asyncio.shield(room.ready)
        except BaseException:
            await self.leave(room, member)
            raise
        return room

    async def leave(self, room: Room, member: Member) -> None:
        room.members.discard(member)
        if not room.members and self._rooms.get(room.visit_id) is room:
            del self._rooms[room.visit_id]
            ready = room.ready
            if ready.done() and not ready.cancelled() and ready.exception() is None:
                await room.stop()


def _consume(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # already reported through Room.ready

"""One signalling socket: hello, then lobby or call, until bye (the server side of the room).

Lifecycle: the first frame must be ``hello`` with the join token; the seat is then joined
(clinicians straight into the call, everyone else into the lobby) and this socket becomes
the seat's holder. From then on the socket's phase follows its seat in the room cache:
in the lobby it may only ``ping``, ``leave`` and send ``quality``, and it receives nothing
but its own state; once admitted it may signal other admitted seats. Peer messages go over
the bus channel ``signal.<participant id>``, so the two peers may be served by different
web processes; both ends check admission. A peer message before admit is refused, audited
(``signalling.rejected_before_admit``) and never forwarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from openvisit import audit, i18n
from openvisit.context import AppContext
from openvisit.errors import NotFound, OpenVisitError
from openvisit.logging import get_logger
from openvisit.models.visit import Participant, Visit
from openvisit.signalling import protocol as p
from openvisit.signalling.rooms import Room, Rooms
from openvisit.visits import lobby
from openvisit.visits import repository as repo
from openvisit.visits.roster import Seat, may_signal, view_for
from openvisit.visits.tokens import participant_id_of
from openvisit.visits.turn import ice_config
from openvisit.visits.tx import transaction

log = get_logger(__name__)

HELLO_TIMEOUT_S = 15.0
QUALITY_MIN_INTERVAL_S = 5.0
MAX_ERRORS = 30
OUTBOX_SIZE = 512
BYE_CODES = {"left": 4000, "removed": 4001, "ended": 4002, "replaced": 4003, "slow": 4008}


def signal_channel(participant_id: uuid.UUID | str) -> str:
    return f"signal.{participant_id}"


class Connection:
    """The server end of one visit socket (see the module docstring)."""

    def __init__(self, websocket: WebSocket, *, ctx: AppContext, rooms: Rooms) -> None:
        self.ws = websocket
        self.ctx = ctx
        self.rooms = rooms
        self.room: Room | None = None
        self.pid: uuid.UUID | None = None
        self.org_id: uuid.UUID | None = None
        self.connection_id = ""
        self.phase = p.Phase.NEW
        self.confirmed = False  # the room has shown this socket as the seat's holder
        self.ready = False  # welcome sent: room pushes may flow
        self.errors = 0
        self.last_quality = 0.0
        self.last_view = ""
        self.outbox: asyncio.Queue[str | None] = asyncio.Queue(maxsize=OUTBOX_SIZE)
        self.closing: str | None = None

    # ------------------------------------------------------------------ running

    async def serve(self) -> None:
        hello = await self._await_hello()
        if hello is None:
            return
        # The page asks in the language it was rendered in; errors come back in it.
        i18n.activate(i18n.negotiate(hello.lang))
        claimed = participant_id_of(hello.token)
        if claimed is None:
            await self._refuse(NotFound(i18n.gettext(
                "This link is not valid. Please check that you opened the whole link, or ask "
                "the clinic for a new one."), title=i18n.gettext("We could not find this visit")))
            return
        writer = asyncio.create_task(self._write_loop(), name="ws-writer")
        try:
            # Listen for peer messages before joining: a peer may answer the join at once.
            # Nothing is forwarded until the token is verified and the seat confirmed.
            async with self.ctx.bus.subscribe(signal_channel(claimed)) as sub:
                relay = asyncio.create_task(self._relay_loop(sub), name="ws-relay")
                try:
                    await self._join(hello)
                    await self._read_loop()
                except OpenVisitError as exc:
                    await self._refuse(exc)
                finally:
                    relay.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await relay
        finally:
            with contextlib.suppress(asyncio.QueueFull):
                self.outbox.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, timeout=2.0)
            writer.cancel()
            await self._cleanup()

    async def _await_hello(self) -> p.Hello | None:
        deadline = time.monotonic() + HELLO_TIMEOUT_S
        while True:
            try:
                frame = await asyncio.wait_for(self.ws.receive_text(),
                                               max(0.1, deadline - time.monotonic()))
            except (TimeoutError, WebSocketDisconnect, RuntimeError):
                return None
            try:
                message = p.parse(frame)
            except p.ProtocolError as exc:
                await self._send_now(p.encode("error", code=exc.code, message=exc.message))
                continue
            if isinstance(message, p.Hello):
                return message
            if isinstance(message, p.Ping):
                await self._send_now(p.encode("pong", t=message.t))
                continue
            await self._send_now(p.encode("error", code="need_hello", rejected=message.type,
                                          message="Send hello first."))

    async def _join(self, hello: p.Hello) -> None:
        """Verify the token and join the seat (one transaction), then the visit's room."""
        connection_id = f"{hello.session}.{secrets.token_urlsafe(6)}"
        async with transaction(self.ctx) as session:
            visit, seat = await lobby.join(session, app=self.ctx, token=hello.token,
                                           connection_id=connection_id)
        self.pid, self.org_id, self.connection_id = seat.id, visit.organisation_id, connection_id
        snapshot = Seat.of(seat)
        # Joined before entering the room: a new room loads the roster with this seat in it;
        # an existing one already got the event (or gets it now: `rev` orders them).
        self.room = await self.rooms.enter(visit.id, self)
        ice = ice_config(self.ctx.settings, participant_id=seat.id)
        self._queue(p.encode("welcome", you={"id": str(seat.id), "role": seat.role,
                                             "n": seat.seat_no}, ice=ice))
        self.ready = True
        log.info("signalling_joined", participant_id=str(seat.id), state=seat.lobby_state)
        self.room.apply_seat(snapshot)
        self.on_roster(self.room)

    async def _read_loop(self) -> None:
        while self.closing is None:
            try:
                frame = await self.ws.receive_text()
            except (WebSocketDisconnect, RuntimeError):
                return
            try:
                message = p.parse(frame)
            except p.ProtocolError as exc:
                await self._error(exc.code, exc.message)
                continue
            await self._handle(message)

    async def _handle(self, message: p.ClientMessage) -> None:
        verdict = p.check(self.phase, message)
        if verdict is p.Verdict.REJECTED_BEFORE_ADMIT:
            assert isinstance(message, p.PeerSignal)
            await self._reject_before_admit(message)
            return
        if verdict is not p.Verdict.OK:
            await self._error(verdict.value, "Not allowed now.", rejected=message.type)
            return
        if isinstance(message, p.Ping):
            self._queue(p.encode("pong", t=message.t))
        elif isinstance(message, p.Leave):
            await self._leave()
        elif isinstance(message, p.Quality):
            await self._quality(message)
        elif isinstance(message, p.PeerSignal):
            await self._signal(message)

    # ------------------------------------------------------------------ messages

    async def _leave(self) -> None:
        assert self.room is not None and self.pid is not None
        async with transaction(self.ctx) as session:
            visit, seat = await self._locked_seat(session)
            await lobby.leave(session, app=self.ctx, visit=visit, participant=seat)
        self._bye("left")

    async def _quality(self, message: p.Quality) -> None:
        now = time.monotonic()
        if not message.values or now - self.last_quality < QUALITY_MIN_INTERVAL_S:
            return
        self.last_quality = now
        assert self.room is not None and self.pid is not None
        async with transaction(self.ctx) as session:
            await lobby.record_quality(session, visit_id=self.room.visit_id,
                                       participant_id=self.pid, sample=dict(message.values))

    async def _signal(self, message: p.PeerSignal) -> None:
        assert self.room is not None and self.pid is not None
        me, target = self.room.seats.get(str(self.pid)), self.room.seats.get(str(message.to))
        if not may_signal(me, target):
            await self._error("peer_unavailable", "That participant is not in the call.",
                              rejected=message.type)
            return
        body = message.relay_body()
        body.update({"from": str(self.pid), "from_session": me.session if me else None,
                     "visit": str(self.room.visit_id)})
        await self.ctx.bus.publish(signal_channel(message.to), body)

    async def _reject_before_admit(self, message: p.PeerSignal) -> None:
        assert self.room is not None and self.pid is not None
        seat = self.room.seats.get(str(self.pid))
        log.warning("signalling_rejected_before_admit", participant_id=str(self.pid),
                    kind=message.type)
        async with transaction(self.ctx) as session:
            await audit.record(
                session, actor=f"participant:{self.pid}",
                action="signalling.rejected_before_admit", object_type="participant",
                object_id=str(self.pid), organisation_id=self.org_id,
                after={"type": message.type, "to": str(message.to),
                       "visit_id": str(self.room.visit_id),
                       "lobby_state": seat.state if seat else None},
            )
        await self._error("not_admitted", i18n.gettext(
            "You are still in the waiting room; the clinician has not let you in yet."),
            rejected=message.type)

    async def _relay_loop(self, sub: Any) -> None:
        """Forward peer messages addressed to this seat, if both ends are still admitted."""
        while True:
            channel, message = await sub.get()
            if channel.startswith("__") or self.room is None:
                continue
            if message.get("visit") != str(self.room.visit_id) or not self.confirmed:
                continue
            me = str(self.pid)
            for _attempt in range(3):
                if may_signal(self.room.seats.get(message.get("from", "")),
                              self.room.seats.get(me)):
                    self._queue(json.dumps(message, separators=(",", ":")))
                    break
                # The sender's admission may still be on its way to this room's cache
                # (another task reads it off the same bus): wait for the next update.
                await self.room.next_update(within_s=0.5)

    # ------------------------------------------------------------------ roster

    def on_roster(self, room: Room) -> None:
        """The room changed: send this socket its view if it differs from the last one."""
        if not self.ready or self.closing is not None:
            return
        seat = room.seats.get(str(self.pid))
        if seat is None:
            return
        if seat.connection_id == self.connection_id:
            self.confirmed = True
        elif self.confirmed and seat.connection_id is not None:
            self._bye("replaced")
            return
        self.phase = p.phase_of(seat.state, visit_status=room.visit.status)
        view = json.dumps(view_for(seat, room.seats, room.visit), separators=(",", ":"))
        if view != self.last_view:
            self.last_view = view
            self._queue('{"type":"state",' + view[1:])
        if room.visit.status == "ended":
            self._bye("ended")
        elif seat.state == "removed":
            self._bye("removed")

    # ------------------------------------------------------------------ output

    def _queue(self, frame: str | None) -> None:
        try:
            self.outbox.put_nowait(frame)
        except asyncio.QueueFull:
            # A client this far behind cannot follow the call; it reconnects and resyncs.
            self.closing = "slow"
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().create_task(self.ws.close(code=BYE_CODES["slow"]))

    def _bye(self, reason: str) -> None:
        if self.closing is not None:
            return
        self._queue(p.encode("bye", reason=reason))
        self.closing = reason
        self._queue(None)

    async def _write_loop(self) -> None:
        while True:
            frame = await self.outbox.get()
            if frame is None:
                break
            try:
                await self.ws.send_text(frame)
            except (WebSocketDisconnect, RuntimeError, OSError):
                return
        if self.closing is not None:
            with contextlib.suppress(Exception):
                await self.ws.close(code=BYE_CODES.get(self.closing, 1000))

    async def _send_now(self, frame: str) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self.ws.send_text(frame)

    async def _error(self, code: str, message: str, *, rejected: str | None = None) -> None:
        self.errors += 1
        self._queue(p.encode("error", code=code, message=message, rejected=rejected))
        if self.errors > MAX_ERRORS:
            log.warning("signalling_too_many_errors", participant_id=str(self.pid))
            self.closing = "errors"
            self._queue(None)

    async def _refuse(self, exc: OpenVisitError) -> None:
        await self._send_now(p.encode("error", code=exc.code, message=exc.message,
                                      title=exc.title, fatal=True))
        with contextlib.suppress(Exception):
            await self.ws.close(code=4000 + min(exc.status_code, 999) % 1000)

    async def _locked_seat(self, session: AsyncSession) -> tuple[Visit, Participant]:
        assert self.pid is not None
        seat = await repo.participant_by_id(session, self.pid, for_update=True)
        assert seat is not None
        visit = await repo.visit_by_id(session, seat.visit_id)
        assert visit is not None
        return visit, seat

    async def _cleanup(self) -> None:
        if self.room is not None:
            await self.rooms.leave(self.room, self)
        if self.pid is not None and self.connection_id:
            try:
                async with transaction(self.ctx) as session:
                    await lobby.disconnect(session, app=self.ctx, participant_id=self.pid,
                                           connection_id=self.connection_id)
            except Exception:
                log.exception("signalling_disconnect_failed", participant_id=str(self.pid))
        if self.ws.application_state != WebSocketState.DISCONNECTED:
            with contextlib.suppress(Exception):
                await self.ws.close()

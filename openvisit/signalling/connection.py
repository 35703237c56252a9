"""One signalling socket: hello, then lobby or call, until bye (the server side of the room).

Lifecycle: the first frame must be ``hello`` with the join token; the seat is then joined
(clinicians straight into the call, everyone else into the lobby) and this socket becomes
the seat's holder. From then on the socket's phase follows its seat in the room cache:
in the lobby it may only ``ping``, ``leave`` and send ``quality``, and it receives nothing
but its own state; once admitted it may signal other admitted seats. Peer messages go over
the bus channel ``signal.<participant id>``, so the two peers may be served by different
web processes; both ends check admission. A peer message before admit is refused, audited
(``signalling.rejected_before_admit``) and never forwarded.

Limits (settings ``ws_*``, see :mod:`.limits`): a socket without a valid ``hello`` holds a
place in the process's :class:`~.limits.HelloGate` (per client address and in total; one too
many is closed 1013) for at most ``ws_hello_timeout_seconds`` (then 4408). Every frame is
charged to its sender's token bucket for its kind; the excess is dropped (the sender gets one
``rate_limited`` error a second) and a sender that keeps on is closed 4429. A receiver is
never closed because of what others send it: relayed frames that would fill its outbox are
dropped instead. Binary and malformed frames get a protocol ``error`` frame.
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
from openvisit.logs import get_logger
from openvisit.media.backend import Seat as MediaSeat
from openvisit.media.backends import backend_named
from openvisit.models.visit import Participant, Visit
from openvisit.signalling import messages
from openvisit.signalling import protocol as p
from openvisit.signalling.ice import hide_in_candidate, hide_in_sdp
from openvisit.signalling.limits import HelloGate, SenderBudget, address_key
from openvisit.signalling.rooms import Room, Rooms
from openvisit.visits import lobby, presence, records
from openvisit.visits.roster import Seat, may_message_lobby, may_signal, view_for
from openvisit.visits.tokens import participant_id_of
from openvisit.visits.turn import ice_config
from openvisit.visits.tx import transaction

log = get_logger(__name__)

QUALITY_MIN_INTERVAL_S = 5.0
MAX_ERRORS = 30
OUTBOX_SIZE = 512
#: Places in the outbox only the server's own frames (state, bye, errors) may take.
OUTBOX_RESERVED = 64
BYE_CODES = {"left": 4000, "removed": 4001, "ended": 4002, "replaced": 4003, "slow": 4008,
             "errors": 4400, "hello_timeout": 4408, "flood": 4429, "busy": 1013}
#: Close reasons (RFC 6455 §7.1.6: at most 123 bytes), for a developer reading the console.
CLOSE_REASONS = {
    "errors": "Too many invalid messages.",
    "hello_timeout": "No hello in time.",
    "flood": "Too many messages: slow down.",
    "busy": "Too many connections from your network; try again shortly.",
    "slow": "Too far behind; reconnect.",
}


#: What a socket is told when it sends what its seat may not.
REFUSALS = {
    p.Verdict.NOT_IN_CALL: "Chat is for the people in the call.",
    p.Verdict.STAFF_ONLY: "Only the clinician can send a message to the lobby.",
}


def _is_power_of_ten(n: int) -> bool:
    return n > 0 and str(n).rstrip("0") == "1"


signal_channel = messages.signal_channel


class Connection:
    """The server end of one visit socket (see the module docstring)."""

    def __init__(self, websocket: WebSocket, *, ctx: AppContext, rooms: Rooms,
                 gate: HelloGate) -> None:
        self.ws = websocket
        self.ctx = ctx
        self.rooms = rooms
        self.clock = rooms.clock
        self.gate = gate
        self.gate_key: str | None = None  # holds a place in the gate until hello succeeds
        self.budget = SenderBudget(ctx.settings)
        self.last_throttle_notice = 0.0
        self.relay_dropped = 0
        self.room: Room | None = None
        self.pid: uuid.UUID | None = None
        self.staff = False
        self.org_id: uuid.UUID | None = None
        self.connection_id = ""
        self.phase = p.Phase.NEW
        self.confirmed = False  # the room has shown this socket as the seat's holder
        self.ready = False  # welcome sent: room pushes may flow
        self.errors = 0
        self.last_view = ""
        self.outbox: asyncio.Queue[str | None] = asyncio.Queue(maxsize=OUTBOX_SIZE)
        self.closing: str | None = None
        self.media_backend = "mesh"  # the visit's (visit.media_backend), set on join
        self.last_heartbeat = 0.0  # clock time of the last stored heartbeat

    # ------------------------------------------------------------------ running

    async def serve(self) -> None:
        key = address_key(self.ws.client.host if self.ws.client else None)
        if not self.gate.enter(key):
            self.gate.refused += 1
            if _is_power_of_ten(self.gate.refused):  # a flood must not flood the log too
                log.warning("signalling_refused_busy", held=self.gate.held(),
                            refused=self.gate.refused)
            await self._close_now("busy")
            return
        self.gate_key = key
        try:
            await self._serve()
        finally:
            self._leave_gate()

    def _leave_gate(self) -> None:
        if self.gate_key is not None:
            self.gate.leave(self.gate_key)
            self.gate_key = None

    async def _serve(self) -> None:
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
        """The first valid ``hello``, or ``None`` (socket closed: gone, silent or abusive)."""
        deadline = self.clock() + self.ctx.settings.ws_hello_timeout_seconds
        while True:
            left = deadline - self.clock()
            try:
                if left <= 0:
                    raise TimeoutError
                frame = await asyncio.wait_for(self._receive(), left)
            except TimeoutError:
                log.info("signalling_hello_timeout")
                await self._close_now("hello_timeout")
                return None
            if frame is None:
                return None
            try:
                message = p.parse(frame)
            except p.ProtocolError as exc:
                if not await self._early_error(exc.code, exc.message):
                    return None
                continue
            if not self._allowed(message.type):
                if not self._strike():
                    await self._close_now("flood")
                    return None
                continue
            if isinstance(message, p.Hello):
                return message
            if isinstance(message, p.Ping):
                await self._send_now(p.encode("pong", t=message.t))
                continue
            if not await self._early_error("need_hello", "Send hello first.",
                                           rejected=message.type):
                return None

    async def _early_error(self, code: str, message: str, *,
                           rejected: str | None = None) -> bool:
        """An error before hello (sent at once: no writer yet); False once closed for it."""
        self.errors += 1
        if self.errors > MAX_ERRORS:
            await self._close_now("errors")
            return False
        await self._send_now(p.encode("error", code=code, message=message, rejected=rejected))
        return True

    async def _receive(self) -> str | bytes | None:
        """The next text (or binary) message; ``None`` once the socket is closed."""
        try:
            message = await self.ws.receive()
        except (WebSocketDisconnect, RuntimeError, OSError):
            return None
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        if text is not None:
            return str(text)
        return bytes(message.get("bytes") or b"")

    async def _join(self, hello: p.Hello) -> None:
        """Verify the token and join the seat (one transaction), then the visit's room."""
        connection_id = f"{hello.session}.{secrets.token_urlsafe(6)}"
        async with transaction(self.ctx) as session:
            visit, seat = await lobby.join(session, app=self.ctx, token=hello.token,
                                           connection_id=connection_id, devices=hello.devices)
        self.pid, self.org_id, self.connection_id = seat.id, visit.organisation_id, connection_id
        self.media_backend = visit.media_backend
        self.last_heartbeat = self.clock()  # the join stored last_seen_at
        self._leave_gate()  # authenticated: no longer counted against the address
        snapshot = Seat.of(seat)
        self.staff = snapshot.is_staff
        # Joined before entering the room: a new room loads the roster with this seat in it;
        # an existing one already got the event (or gets it now: `rev` orders them).
        self.room = await self.rooms.enter(visit.id, self)
        ice = ice_config(self.ctx.settings, participant_id=seat.id, staff=snapshot.is_staff)
        self._queue(p.encode("welcome", you={"id": str(seat.id), "role": seat.role,
                                             "n": seat.seat_no}, ice=ice,
                             media={"backend": visit.media_backend}))
        self.ready = True
        log.info("signalling_joined", participant_id=str(seat.id), state=seat.lobby_state)
        self.room.apply_seat(snapshot)
        self.on_roster(self.room)

    async def _read_loop(self) -> None:
        while self.closing is None:
            frame = await self._receive()
            if frame is None:
                return
            try:
                message = p.parse(frame)
            except p.ProtocolError as exc:
                await self._error(exc.code, exc.message)
                continue
            if not self._allowed(message.type):
                self._throttled(message.type)
                continue
            await self._handle(message)

    # ------------------------------------------------------------------ rate limits

    def _allowed(self, kind: str) -> bool:
        return self.budget.allow(kind, self.clock())

    def _strike(self) -> bool:
        return self.budget.strike(self.clock())

    def _throttled(self, kind: str) -> None:
        """A frame over its sender's budget: dropped; the sender is told (once a second),
        and closed if it keeps on."""
        if not self._strike():
            log.warning("signalling_sender_closed_flood", participant_id=str(self.pid),
                        kind=kind, dropped=self.budget.dropped)
            self._close_after_flush("flood")
            return
        now = self.clock()
        if now - self.last_throttle_notice >= 1.0:
            self.last_throttle_notice = now
            self._queue(p.encode("error", code="rate_limited", rejected=kind,
                                 message="Too many messages; some were dropped. Slow down."))

    async def _handle(self, message: p.ClientMessage) -> None:
        verdict = p.check(self.phase, message, staff=self.staff)
        if verdict is p.Verdict.REJECTED_BEFORE_ADMIT:
            assert isinstance(message, p.PeerSignal)
            await self._reject_before_admit(message)
            return
        if verdict is not p.Verdict.OK:
            await self._error(verdict.value, REFUSALS.get(verdict, "Not allowed now."),
                              rejected=message.type)
            return
        if isinstance(message, p.Ping):
            self._queue(p.encode("pong", t=message.t))
            await self._heartbeat()
        elif isinstance(message, p.Leave):
            await self._leave()
        elif isinstance(message, p.Quality):
            await self._quality(message)
        elif isinstance(message, p.PeerSignal):
            await self._signal(message)
        elif isinstance(message, p.Chat):
            await self._chat(message)
        elif isinstance(message, p.LobbyMessage):
            await self._lobby_message(message)

    # ------------------------------------------------------------------ messages

    async def _leave(self) -> None:
        assert self.room is not None and self.pid is not None
        async with transaction(self.ctx) as session:
            visit, seat = await self._locked_seat(session)
            await lobby.leave(session, app=self.ctx, visit=visit, participant=seat)
        self._bye("left")

    async def _heartbeat(self) -> None:
        """Refresh the seat's ``last_seen_at`` (at most every ``presence_heartbeat_seconds``),
        so the presence sweep knows this process is alive (:mod:`openvisit.visits.presence`)."""
        assert self.pid is not None
        now = self.clock()
        if now - self.last_heartbeat < self.ctx.settings.presence_heartbeat_seconds:
            return
        self.last_heartbeat = now
        try:
            async with transaction(self.ctx) as session:
                await presence.heartbeat(session, app=self.ctx, participant_id=self.pid,
                                         connection_id=self.connection_id)
        except Exception:
            # The database briefly away: the next ping tries again; the sweep allows for it.
            log.exception("signalling_heartbeat_failed", participant_id=str(self.pid))

    async def _quality(self, message: p.Quality) -> None:
        assert self.room is not None and self.pid is not None
        now = self.clock()
        # Per seat in this process, not per socket: reconnecting does not buy more samples.
        last = self.room.last_quality.get(str(self.pid), 0.0)
        if not message.values or now - last < QUALITY_MIN_INTERVAL_S:
            return
        self.room.last_quality[str(self.pid)] = now
        async with transaction(self.ctx) as session:
            await lobby.record_quality(session, visit_id=self.room.visit_id,
                                       participant_id=self.pid, sample=dict(message.values),
                                       media_path=message.path)

    async def _signal(self, message: p.PeerSignal) -> None:
        assert self.room is not None and self.pid is not None
        me, target = self.room.seats.get(str(self.pid)), self.room.seats.get(str(message.to))
        if not may_signal(me, target):
            await self._error("peer_unavailable", "That participant is not in the call.",
                              rejected=message.type)
            return
        body = message.relay_body()
        if (self.ctx.settings.staff_ice_transport_policy == "relay" and me is not None
                and target is not None and me.is_staff and not target.is_staff):
            # Patients never learn staff addresses (see openvisit.signalling.ice).
            if body.get("sdp"):
                body["sdp"] = hide_in_sdp(str(body["sdp"]))
            if message.type == "candidate":
                hidden = hide_in_candidate(body.get("candidate"))
                if hidden is False:
                    return
                body["candidate"] = hidden
        body.update({"from": str(self.pid), "from_session": me.session if me else None,
                     "visit": str(self.room.visit_id)})
        await self.ctx.bus.publish(signal_channel(message.to), body)

    async def _chat(self, message: p.Chat) -> None:
        assert self.room is not None and self.pid is not None
        me = self.room.seats.get(str(self.pid))
        if me is None or not me.admitted:
            await self._error("not_in_call", REFUSALS[p.Verdict.NOT_IN_CALL], rejected="chat")
            return
        if not self.room.allow_message("chat", me.id, self.clock()):
            self._throttled("chat")
            return
        echo = await messages.send_chat(self.ctx, room=self.room, sender=me, text=message.text)
        self._queue(p.encode("chat", **echo, mine=True))

    async def _lobby_message(self, message: p.LobbyMessage) -> None:
        assert self.room is not None and self.pid is not None
        me, target = self.room.seats.get(str(self.pid)), self.room.seats.get(str(message.to))
        if not may_message_lobby(me, target):
            await self._error("not_waiting", "That participant is not waiting in the lobby.",
                              rejected="lobby_message")
            return
        assert me is not None
        if not self.room.allow_message("lobby_message", me.id, self.clock()):
            self._throttled("lobby_message")
            return
        sent = await messages.send_lobby_message(self.ctx, room=self.room, sender=me,
                                                 message=message)
        self._queue(p.encode("lobby_message_sent", **sent))

    async def _reject_before_admit(self, message: p.PeerSignal) -> None:
        assert self.room is not None and self.pid is not None
        seat = self.room.seats.get(str(self.pid))
        log.warning("signalling_rejected_before_admit", participant_id=str(self.pid),
                    kind=message.type)
        async with transaction(self.ctx) as session:
            # Audited within the seat's record budget (openvisit.visits.records): a seat
            # that is refused a thousand times adds a bounded number of rows.
            _visit, locked = await self._locked_seat(session)
            store, suppressed, locked.record_budget = records.spend(
                locked.record_budget, group="refused", now=time.time())
            if store:
                after: dict[str, Any] = {
                    "type": message.type, "to": str(message.to),
                    "visit_id": str(self.room.visit_id),
                    "lobby_state": seat.state if seat else None,
                }
                if suppressed:
                    after["suppressed"] = suppressed
                await audit.record(
                    session, actor=f"participant:{self.pid}",
                    action="signalling.rejected_before_admit", object_type="participant",
                    object_id=str(self.pid), organisation_id=self.org_id, after=after,
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
            kind = str(message.get("type"))
            for _attempt in range(3):
                if messages.may_deliver(kind, self.room.seats.get(message.get("from", "")),
                                        self.room.seats.get(me)):
                    self._queue_relayed(messages.as_received(kind, message))
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
        previous, self.phase = self.phase, p.phase_of(seat.state, visit_status=room.visit.status)
        if self.phase is p.Phase.ADMITTED and previous is not p.Phase.ADMITTED:
            self._send_media_grant(seat.role)
        view = json.dumps(view_for(seat, room.seats, room.visit), separators=(",", ":"))
        if view != self.last_view:
            self.last_view = view
            self._queue('{"type":"state",' + view[1:])
        if room.visit.status == "ended":
            self._bye("ended")
        elif seat.state == "removed":
            self._bye("removed")

    def _send_media_grant(self, role: str) -> None:
        """Just admitted: a backend whose server the browser reaches itself (LiveKit) gets
        its short-lived token to this socket only, never before admit."""
        assert self.room is not None and self.pid is not None
        backend = backend_named(self.ctx, self.media_backend)
        info = backend.join_info(MediaSeat(visit_id=self.room.visit_id,
                                           participant_id=self.pid, role=role))
        if info.token is not None:
            self._queue(p.encode("media", **info.to_dict()))

    # ------------------------------------------------------------------ output

    def _queue(self, frame: str | None) -> None:
        try:
            self.outbox.put_nowait(frame)
        except asyncio.QueueFull:
            # A client this far behind on its own frames cannot follow the call; it
            # reconnects and resyncs.
            self.closing = "slow"
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().create_task(self.ws.close(
                    code=BYE_CODES["slow"], reason=CLOSE_REASONS["slow"]))

    def _queue_relayed(self, message: dict[str, Any]) -> None:
        """Queue a peer's frame unless the outbox is nearly full: what others send this
        socket is dropped then, never a reason to close it."""
        if self.outbox.qsize() >= OUTBOX_SIZE - OUTBOX_RESERVED:
            self.relay_dropped += 1
            if _is_power_of_ten(self.relay_dropped):
                log.warning("signalling_relay_dropped_receiver_behind",
                            participant_id=str(self.pid), dropped=self.relay_dropped)
            return
        try:
            frame = json.dumps(message, separators=(",", ":"), allow_nan=False)
        except ValueError:
            return
        self._queue(frame)

    def _bye(self, reason: str) -> None:
        if self.closing is not None:
            return
        self._queue(p.encode("bye", reason=reason))
        self.closing = reason
        self._queue(None)

    def _close_after_flush(self, reason: str) -> None:
        """Close with ``reason``'s code once the frames already queued are sent."""
        if self.closing is not None:
            return
        self.closing = reason
        with contextlib.suppress(asyncio.QueueFull):
            self.outbox.put_nowait(None)

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
                await self.ws.close(code=BYE_CODES.get(self.closing, 1000),
                                    reason=CLOSE_REASONS.get(self.closing, ""))

    async def _send_now(self, frame: str) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self.ws.send_text(frame)

    async def _close_now(self, reason: str) -> None:
        """Close before the writer runs (refused, silent or abusive before hello)."""
        self.closing = reason
        with contextlib.suppress(Exception):
            await self.ws.close(code=BYE_CODES[reason], reason=CLOSE_REASONS[reason])

    async def _error(self, code: str, message: str, *, rejected: str | None = None) -> None:
        self.errors += 1
        if self.errors > MAX_ERRORS:
            log.warning("signalling_too_many_errors", participant_id=str(self.pid))
            self._close_after_flush("errors")
            return
        self._queue(p.encode("error", code=code, message=message, rejected=rejected))

    async def _refuse(self, exc: OpenVisitError) -> None:
        await self._send_now(p.encode("error", code=exc.code, message=exc.message,
                                      title=exc.title, fatal=True))
        with contextlib.suppress(Exception):
            await self.ws.close(code=4000 + min(exc.status_code, 999) % 1000)

    async def _locked_seat(self, session: AsyncSession) -> tuple[Visit, Participant]:
        assert self.pid is not None
        return await lobby.locked_seat(session, participant_id=self.pid)

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

"""Chat and lobby messages on the signalling socket (issue 15 items 4 and 5).

Like peer signalling, each message goes over the bus to ``signal.<participant id>`` of its
recipient, so the recipient may be served by another web process; the recipient's socket
checks again, against its own room cache, that the message may reach it
(:func:`may_deliver`), before it forwards it.

- ``chat`` from a seat in the call goes to every other seat in the call (never to the
  lobby), and back to its sender as ``mine`` (what the sender's page shows is what was
  accepted). Stored only when the organisation keeps chat (:mod:`openvisit.visits.chat`).
- ``lobby_message`` from a clinician goes to one seat waiting in the lobby: a preset's id
  (each page shows the text in its own language) or short free text, which pages show as
  text, never as HTML. Recorded by kind, never by text.

Neither text is logged: log lines name ids and kinds only.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from openvisit.context import AppContext
from openvisit.logs import get_logger
from openvisit.models.base import utcnow
from openvisit.signalling import protocol as p
from openvisit.signalling.rooms import Room
from openvisit.visits import chat
from openvisit.visits.roster import Seat, may_chat, may_message_lobby
from openvisit.visits.tx import transaction

log = get_logger(__name__)


def signal_channel(participant_id: uuid.UUID | str) -> str:
    return f"signal.{participant_id}"


def may_deliver(kind: str, sender: Seat | None, me: Seat | None) -> bool:
    """May a frame of ``kind`` from ``sender`` reach ``me``? (Peer signalling and chat:
    both in the call; a lobby message: a clinician to a seat in the lobby.)"""
    if kind == "lobby_message":
        return may_message_lobby(sender, me)
    return may_chat(sender, me)


def as_received(kind: str, message: dict[str, Any]) -> dict[str, Any]:
    """The frame its recipient gets: a seat in the lobby learns nobody's id, so a lobby
    message loses its sender."""
    if kind == "lobby_message":
        return {key: value for key, value in message.items() if key != "from"}
    return message


async def send_chat(ctx: AppContext, *, room: Room, sender: Seat, text: str) -> dict[str, Any]:
    """Relay ``text`` from ``sender`` to the other seats in the call (and store it if the
    organisation keeps chat); returns the frame body for the sender."""
    at = utcnow()
    body: dict[str, Any] = {
        "type": "chat", "id": secrets.token_urlsafe(9), "from": sender.id,
        "role": sender.role, "n": sender.seat_no, "text": text, "at": at.isoformat(),
        "visit": str(room.visit_id),
    }
    if room.visit.store_chat:
        async with transaction(ctx) as session:
            await chat.store(session, app=ctx, visit_id=room.visit_id,
                             participant_id=uuid.UUID(sender.id), text=text, at=at)
    targets = [seat for seat in room.seats.values() if may_chat(sender, seat)]
    for seat in targets:
        await ctx.bus.publish(signal_channel(seat.id), body)
    log.info("signalling_chat_relayed", participant_id=sender.id, recipients=len(targets),
             stored=room.visit.store_chat)
    return {key: value for key, value in body.items() if key not in ("type", "visit")}


async def send_lobby_message(ctx: AppContext, *, room: Room, sender: Seat,
                             message: p.LobbyMessage) -> dict[str, Any]:
    """Record the lobby message (by kind), then relay it to its seat; returns the sender's
    confirmation body."""
    async with transaction(ctx) as session:
        await chat.lobby_message_sent(session, app=ctx, visit_id=room.visit_id,
                                      actor_id=uuid.UUID(sender.id), target_id=message.to,
                                      preset=message.preset)
    content: dict[str, Any] = ({"preset": message.preset} if message.preset is not None
                               else {"text": message.text})
    at = utcnow().isoformat()
    await ctx.bus.publish(signal_channel(message.to), {
        "type": "lobby_message", "from": sender.id, "at": at, "visit": str(room.visit_id),
        **content})
    log.info("signalling_lobby_message", participant_id=sender.id, to=str(message.to),
             message=message.preset or "text")
    return {"to": str(message.to), "at": at, **content}

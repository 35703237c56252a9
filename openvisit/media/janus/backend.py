"""The Janus backend: one private VideoRoom per visit, its ``allowed`` list kept by the lobby.

Room and credentials (all derived from ``OPENVISIT_SECRET_KEY``, so every process computes
the same ones and nothing is stored):

- the room id is 52 bits of the visit id (Janus room ids are integers, and browsers' JSON
  numbers are exact only up to 2**53);
- the room ``secret`` (needed to edit, kick and destroy) never leaves OpenVisit;
- each seat's token (an HMAC of visit, participant and token version) is what a VideoRoom
  publisher ``join`` must present once ``allowed`` checking is on. It is added to the room's
  ``allowed`` list on admit and removed on back-to-lobby, remove and end, when the seat's
  publisher is also kicked. Janus checks ``allowed`` on publisher joins only; subscriptions
  are gated by ``require_pvtid`` (they must carry the private id Janus hands a publisher in
  the room) and are cut when that publisher is kicked. So a waiting seat can neither publish
  nor subscribe, whoever holds its token.

Janus's VideoRoom answers 427 when a room exists, 426 when it does not and 428 for an
unknown feed: the idempotent steps treat those as done.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

from openvisit.context import AppContext
from openvisit.crypto import derive_key
from openvisit.logs import get_logger
from openvisit.media.backend import JoinInfo, Seat
from openvisit.media.janus.client import JanusClient, JanusError

log = get_logger(__name__)

ROOM_EXISTS, NO_SUCH_ROOM, NO_SUCH_FEED = 427, 426, 428
#: Most publishers a room takes (Janus refuses the next one); the lobby caps admissions.
MAX_PUBLISHERS = 64


def room_id(visit_id: uuid.UUID) -> int:
    """The visit's VideoRoom id: the top 52 bits of its UUID (exact in JSON everywhere)."""
    return visit_id.int >> 76


def feed_id(participant_id: uuid.UUID) -> int:
    """The seat's publisher id in the room (unique per seat, so a kick finds it)."""
    return (participant_id.int >> 76) or 1


class JanusBackend:
    """The VideoRoom of each visit, on the Janus at ``settings.janus_url``."""

    name = "janus"
    calls_out = True

    def __init__(self, client: JanusClient, *, secret_key: str, admin_key: str = "") -> None:
        self.client = client
        self.admin_key = admin_key
        self._key = derive_key(secret_key, purpose="openvisit janus room")

    # ------------------------------------------------------------------ credentials

    def _mac(self, text: str) -> str:
        digest = hmac.new(self._key, text.encode(), hashlib.sha256).digest()[:24]
        return base64.urlsafe_b64encode(digest).decode()

    def room_secret(self, visit_id: uuid.UUID) -> str:
        return self._mac(f"room|{visit_id}")

    def seat_token(self, seat: Seat) -> str:
        """The seat's VideoRoom token: valid only while it is in the room's ``allowed`` list."""
        return self._mac(f"seat|{seat.visit_id}|{seat.participant_id}|{seat.token_version}")

    # ------------------------------------------------------------------ the interface

    async def open_room(self, visit_id: uuid.UUID) -> None:
        body: dict[str, object] = {
            "request": "create", "room": room_id(visit_id), "permanent": False,
            "is_private": True, "secret": self.room_secret(visit_id),
            "publishers": MAX_PUBLISHERS, "description": f"visit {visit_id}",
            # Subscriptions need the private_id Janus gives a publisher on joining, and die
            # with it when it is kicked: the ``allowed`` tokens gate publishers only.
            "require_pvtid": True, "lock_record": True,
        }
        if self.admin_key:
            body["admin_key"] = self.admin_key
        async with self.client.handle() as handle:
            try:
                await handle.request(body)
            except JanusError as exc:
                if exc.janus_code != ROOM_EXISTS:
                    raise
            # Checking on from the start: an empty list admits nobody.
            await handle.request({"request": "allowed", "room": room_id(visit_id),
                                  "secret": self.room_secret(visit_id), "action": "enable"})
        log.info("janus_room_opened", visit_id=str(visit_id))

    async def grant(self, seat: Seat) -> None:
        await self.open_room(seat.visit_id)
        async with self.client.handle() as handle:
            await handle.request({
                "request": "allowed", "room": room_id(seat.visit_id), "action": "add",
                "secret": self.room_secret(seat.visit_id), "allowed": [self.seat_token(seat)],
            })
        log.info("janus_seat_granted", visit_id=str(seat.visit_id),
                 participant_id=str(seat.participant_id))

    async def revoke(self, seat: Seat) -> None:
        room, secret = room_id(seat.visit_id), self.room_secret(seat.visit_id)
        # Every version up to the current one: a removed seat's version was just bumped.
        tokens = [self.seat_token(Seat(seat.visit_id, seat.participant_id, seat.role, v))
                  for v in range(max(0, seat.token_version - 1), seat.token_version + 1)]
        async with self.client.handle() as handle:
            try:
                await handle.request({"request": "allowed", "room": room, "action": "remove",
                                      "secret": secret, "allowed": tokens})
                await handle.request({"request": "kick", "room": room, "secret": secret,
                                      "id": feed_id(seat.participant_id)})
            except JanusError as exc:
                if exc.janus_code not in (NO_SUCH_ROOM, NO_SUCH_FEED):
                    raise
        log.info("janus_seat_revoked", visit_id=str(seat.visit_id),
                 participant_id=str(seat.participant_id))

    async def close_room(self, visit_id: uuid.UUID) -> None:
        async with self.client.handle() as handle:
            try:
                await handle.request({"request": "destroy", "room": room_id(visit_id),
                                      "secret": self.room_secret(visit_id)})
            except JanusError as exc:
                if exc.janus_code != NO_SUCH_ROOM:
                    raise
        log.info("janus_room_closed", visit_id=str(visit_id))

    def join_info(self, seat: Seat) -> JoinInfo:
        # The browser talks to OpenVisit's signalling only; OpenVisit holds the Janus handles.
        return JoinInfo(backend=self.name)

    async def check(self) -> str:
        try:
            info = await self.client.info()
        except JanusError as exc:
            return f"unavailable ({exc.message})"
        if "janus.plugin.videoroom" not in (info.get("plugins") or {}):
            return "unavailable (Janus has no VideoRoom plugin)"
        return "ok"

    async def aclose(self) -> None:
        await self.client.aclose()


def janus_backend(app: AppContext) -> JanusBackend:
    settings = app.settings
    client = JanusClient(settings.janus_url, api_secret=settings.janus_api_secret,
                         timeout=settings.janus_timeout_seconds)
    return JanusBackend(client, secret_key=settings.secret_key,
                        admin_key=settings.janus_admin_key)

"""The LiveKit backend: a room per visit, a short-lived token per admitted seat.

The browser talks to LiveKit itself, so here the grant is a credential: an access token
(JWT, HS256 with the API secret) whose identity is the participant id, for the visit's room
only, with publish and subscribe rights, lasting ``media_grant_ttl_seconds``. Only an
admitted seat's socket is sent one (:func:`openvisit.media.service.join_info`). LiveKit
cannot revoke a token it has issued, so revocation removes the participant from the room at
once, and the webhook receiver (:mod:`.hooks`) removes anyone who joins while their seat is
not admitted (a page that kept an old token): the lobby holds either way.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from livekit import api

from openvisit.context import AppContext
from openvisit.logs import get_logger
from openvisit.media.backend import JoinInfo, Seat

log = get_logger(__name__)


def room_name(visit_id: uuid.UUID) -> str:
    return f"visit-{visit_id}"


class LiveKitBackend:
    """Rooms and tokens on the LiveKit server at ``settings.livekit_url``."""

    name = "livekit"
    calls_out = True

    def __init__(self, *, url: str, api_key: str, api_secret: str, ttl_seconds: int) -> None:
        self.url = url
        self.api_key = api_key
        self.api_secret = api_secret
        self.ttl = timedelta(seconds=ttl_seconds)

    def _api(self) -> api.LiveKitAPI:
        # One per batch of calls: its HTTP session belongs to the running event loop.
        http_url = self.url.replace("wss://", "https://").replace("ws://", "http://")
        return api.LiveKitAPI(http_url, self.api_key, self.api_secret)

    def token_for(self, seat: Seat) -> str:
        """The seat's access token: join this visit's room, publish and subscribe."""
        grants = api.VideoGrants(room_join=True, room=room_name(seat.visit_id),
                                 can_publish=True, can_subscribe=True, can_publish_data=True,
                                 can_update_own_metadata=False)
        return (api.AccessToken(self.api_key, self.api_secret)
                .with_identity(str(seat.participant_id))
                .with_kind("standard")
                .with_ttl(self.ttl)
                .with_grants(grants)
                .to_jwt())

    def verifier(self) -> api.TokenVerifier:
        return api.TokenVerifier(self.api_key, self.api_secret)

    def webhooks(self) -> api.WebhookReceiver:
        return api.WebhookReceiver(self.verifier())

    async def open_room(self, visit_id: uuid.UUID) -> None:
        async with self._api() as lk:
            await lk.room.create_room(api.CreateRoomRequest(
                name=room_name(visit_id), empty_timeout=300, max_participants=64))
        log.info("livekit_room_opened", visit_id=str(visit_id))

    async def grant(self, seat: Seat) -> None:
        # The token is the grant (sent on the seat's socket); the room must exist for it.
        await self.open_room(seat.visit_id)

    async def revoke(self, seat: Seat) -> None:
        async with self._api() as lk:
            try:
                await lk.room.remove_participant(api.RoomParticipantIdentity(
                    room=room_name(seat.visit_id), identity=str(seat.participant_id)))
            except api.TwirpError as exc:
                if exc.code != api.TwirpErrorCode.NOT_FOUND:
                    raise
        log.info("livekit_seat_revoked", visit_id=str(seat.visit_id),
                 participant_id=str(seat.participant_id))

    async def close_room(self, visit_id: uuid.UUID) -> None:
        async with self._api() as lk:
            await lk.room.delete_room(api.DeleteRoomRequest(room=room_name(visit_id)))
        log.info("livekit_room_closed", visit_id=str(visit_id))

    def join_info(self, seat: Seat) -> JoinInfo:
        from openvisit.models.base import utcnow

        return JoinInfo(backend=self.name, url=self.url, token=self.token_for(seat),
                        expires_at=utcnow() + self.ttl)

    async def check(self) -> str:
        try:
            async with self._api() as lk:
                await lk.room.list_rooms(api.ListRoomsRequest(names=["openvisit-readyz"]))
        except Exception as exc:  # any failure means not ready
            return f"unavailable ({type(exc).__name__})"
        return "ok"

    async def aclose(self) -> None:
        return None  # every call opens and closes its own client


def livekit_backend(app: AppContext) -> LiveKitBackend:
    settings = app.settings
    return LiveKitBackend(url=settings.livekit_url, api_key=settings.livekit_api_key,
                          api_secret=settings.livekit_api_secret,
                          ttl_seconds=settings.media_grant_ttl_seconds)

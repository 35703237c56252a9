"""LiveKit webhooks: ``POST /hooks/livekit``, verified with ``livekit-api``'s WebhookReceiver.

LiveKit signs each webhook with a JWT in ``Authorization`` (HS256, the API key as issuer)
whose ``sha256`` claim is the body's hash; :class:`livekit.api.WebhookReceiver` checks both.
A request that fails is refused with 401 and changes nothing. ``participant_joined`` of a
seat that is not admitted (a page that kept a token from before it was sent back) enqueues
its revocation: the lobby holds even against an old token. Other events are logged by name.
LiveKit retries webhooks; every effect here is idempotent.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response

from openvisit.errors import NotAuthenticated, NotFound
from openvisit.logs import get_logger
from openvisit.media import service as media
from openvisit.media.backends import livekit
from openvisit.web.deps import CtxDep

log = get_logger(__name__)
router = APIRouter(prefix="/hooks/livekit", tags=["media"], include_in_schema=False)
ROOM_PREFIX = "visit-"


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


@router.post("")
async def livekit_webhook(request: Request, ctx: CtxDep) -> Response:
    """Verify and apply one LiveKit webhook; 204."""
    settings = ctx.settings
    if not (settings.livekit_api_key and settings.livekit_api_secret):
        raise NotFound("LiveKit webhooks are not configured on this deployment "
                       "(OPENVISIT_LIVEKIT_API_KEY and _SECRET are empty).")
    receiver = livekit(ctx).webhooks()  # raises, naming the extra, if it is missing
    body = (await request.body()).decode("utf-8", errors="replace")
    try:
        event = receiver.receive(body, request.headers.get("Authorization", ""))
    except Exception:  # the SDK raises bare Exception (and jwt's errors) for a bad signature
        log.warning("livekit_webhook_rejected")
        raise NotAuthenticated("The request is not signed by this deployment's LiveKit.") from None
    room = event.room.name if event.HasField("room") else ""
    visit_id = _uuid(room[len(ROOM_PREFIX):]) if room.startswith(ROOM_PREFIX) else None
    identity = event.participant.identity if event.HasField("participant") else ""
    participant_id = _uuid(identity)
    log.info("livekit_webhook", kind=event.event, visit_id=str(visit_id) if visit_id else None,
             participant_id=str(participant_id) if participant_id else None)
    if event.event == "participant_joined" and visit_id is not None:
        if participant_id is None:  # not a seat OpenVisit issued a token for
            log.warning("livekit_unknown_participant", visit_id=str(visit_id))
        else:
            async with ctx.transaction() as session:
                await media.media_joined(session, app=ctx, visit_id=visit_id,
                                         participant_id=participant_id)
    return Response(status_code=204)

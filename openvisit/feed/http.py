"""``POST /hl7/siu``: the scheduling feed over HTTPS with a signed payload (EHR-SPEC §6).

The same message layer as MLLP (:class:`~openvisit.feed.intake.SiuFeed`), so the same
ACK semantics (HL7 v2.5.1 Ch. 2 §2.9): the body of the answer is the ACK
(``application/hl7-v2``) with HTTP 200 for AA/AE/AR (CA/CE/CR), 503 plus ``Retry-After`` for
our own temporary failure (resend later), and 204 when enhanced mode asked for no ACK. A
payload whose signature or claims fail is refused with 401 and a JSON error before anything
is read from it. The endpoint is named by ``?endpoint=<uuid>`` or the
``X-OpenVisit-Endpoint`` header. The verifier is pluggable (:class:`.signing.Verifier`).
The body is read as a stream and refused (413) the moment it passes twice the MLLP frame
limit, so a huge or endless chunked upload costs no memory (:func:`read_capped`).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit import nonces
from openvisit.context import AppContext
from openvisit.errors import InvalidInput, NotFound, OpenVisitError
from openvisit.feed.intake import SiuFeed
from openvisit.feed.senders import directory_for
from openvisit.feed.signing import JwsVerifier, SignatureRefused, Verifier
from openvisit.models import utcnow
from openvisit.web.deps import CtxDep

router = APIRouter(tags=["scheduling feed"])

HL7_MEDIA_TYPE = "application/hl7-v2"
PATH = "/hl7/siu"
JTI_SCOPE = "hl7_jws"


class PayloadTooLarge(OpenVisitError):
    status_code = 413
    code = "payload_too_large"


async def read_capped(request: Request, *, limit: int) -> bytes:
    """The request body, read as it arrives and refused as soon as it passes ``limit``.

    A declared Content-Length over the limit is refused before any byte is read; a chunked
    body (no length) is counted while it streams, so memory never holds more than ``limit``
    plus one chunk, however much the client sends. Raises :class:`PayloadTooLarge` (413) or
    :class:`InvalidInput` for a Content-Length that is not a number.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise InvalidInput("Content-Length is not a number of bytes.")
        if int(declared) > limit:
            raise PayloadTooLarge(f"The payload is larger than {limit} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            # Not read further: the server closes the connection after this answer.
            raise PayloadTooLarge(f"The payload is larger than {limit} bytes.")
    return bytes(body)


def verifier_for(app: AppContext) -> Verifier:
    """The process's verifier: ``app.services.siu_verifier`` if one was plugged in, else the
    :class:`JwsVerifier` (made on first use)."""
    found = app.services.siu_verifier
    if found is None:
        found = JwsVerifier(skew=timedelta(seconds=app.settings.hl7_jws_skew_seconds))
        app.services.siu_verifier = found
    return found


def siu_feed(app: AppContext) -> SiuFeed:
    """The process's message layer for HTTPS (made on first use)."""
    feed = app.services.siu_feed
    if feed is None:
        feed = app.services.siu_feed = SiuFeed(app)
    return feed


def _endpoint_id(query: str | None, header: str | None) -> uuid.UUID:
    text = query or header
    if not text:
        raise InvalidInput(
            "Name the OpenVisit endpoint: ?endpoint=<id> or the X-OpenVisit-Endpoint header."
        )
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        raise InvalidInput(f"{text[:60]!r} is not an endpoint id.") from None


@router.post(
    PATH,
    response_class=Response,
    responses={
        200: {"content": {HL7_MEDIA_TYPE: {}}, "description": "the ACK (AA, AE or AR)"},
        401: {"description": "signature or claims refused (JSON error)"},
        503: {"content": {HL7_MEDIA_TYPE: {}}, "description": "temporary error: resend later"},
    },
)
async def receive_siu(
    request: Request,
    ctx: CtxDep,
    endpoint: Annotated[str | None, Query(description="The OpenVisit endpoint id.")] = None,
    x_openvisit_endpoint: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
    content_type: Annotated[str, Header()] = "",
) -> Response:
    """Accept one signed SIU message; answer with its ACK (see the module docstring)."""
    endpoint_id = _endpoint_id(endpoint, x_openvisit_endpoint)
    body = await read_capped(request, limit=ctx.settings.mllp_max_frame_bytes * 2)
    feed_endpoint = await directory_for(ctx).get(endpoint_id)
    if feed_endpoint is None:
        raise NotFound(f"There is no OpenVisit endpoint {endpoint_id}.")
    now = utcnow()
    async with ctx.transaction() as session:
        verified = await verifier_for(ctx).verify(
            session,
            endpoint=feed_endpoint,
            body=body,
            content_type=content_type,
            authorization=authorization,
            audience=f"{ctx.settings.public_url}{PATH}",
            now=now,
        )
    ttl = verified.expires_at - now + timedelta(seconds=ctx.settings.hl7_jws_skew_seconds)

    async def consume_jti(tx: AsyncSession) -> None:
        # In the message's own transaction: a delivery that fails on our side can be retried
        # with the same signature; one that was accepted cannot be replayed.
        fresh = await nonces.remember_once(
            tx, scope=JTI_SCOPE, value=f"{endpoint_id}:{verified.jti}", ttl=ttl
        )
        if not fresh:
            raise SignatureRefused(
                "This jti was already used (a replay); sign each delivery with a new jti."
            )

    reply = await siu_feed(ctx).handle(
        verified.message, endpoint_id=endpoint_id, before_commit=consume_jti, transport="https"
    )
    if reply.ack is None:
        return Response(status_code=204)
    headers = {"Retry-After": "30"} if reply.temporary else None
    return Response(
        reply.ack,
        status_code=503 if reply.temporary else 200,
        media_type=HL7_MEDIA_TYPE,
        headers=headers,
    )

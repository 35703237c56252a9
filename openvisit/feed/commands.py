"""Feed set-up for the command line (and the portal): senders, status map, certificates.

Plain async functions over an :class:`~openvisit.context.AppContext`; ``openvisit.cli`` wraps
them as ``openvisit endpoint certificate`` and ``openvisit endpoint hl7-senders``. Every change
is audited and bumps the endpoint's version.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.audit import record, snapshot
from openvisit.certificates import ParsedCertificate, parse_certificate, store_certificate
from openvisit.context import AppContext
from openvisit.errors import Conflict, InvalidInput, NotFound
from openvisit.feed import repository
from openvisit.feed.senders import SenderPattern, invalidate
from openvisit.feed.service import FHIR_STATUSES, hl7_options
from openvisit.models import EhrEndpoint, utcnow


def endpoint_uuid(text: str) -> uuid.UUID:
    """Read an endpoint id; raises :class:`InvalidInput` when it is not a UUID."""
    try:
        return uuid.UUID(str(text).strip())
    except ValueError:
        raise InvalidInput(
            f"{text!r} is not an endpoint id (see `openvisit endpoint list`)."
        ) from None


async def _endpoint(session: AsyncSession, endpoint_id: uuid.UUID) -> EhrEndpoint:
    endpoint = await repository.endpoint(session, endpoint_id)
    if endpoint is None:
        raise NotFound(f"There is no EHR endpoint {endpoint_id}.")
    return endpoint


async def configure_feed(
    session: AsyncSession,
    *,
    endpoint: EhrEndpoint,
    actor: str,
    senders: Sequence[str] | None = None,
    status_map: Mapping[str, str] | None = None,
    jws_issuer: str | None = None,
) -> dict[str, Any]:
    """Set the endpoint's ``options["hl7"]`` entries that are given; returns the new block.

    Raises :class:`InvalidInput` for a malformed sender or a status outside FHIR's
    Appointment.status, and :class:`Conflict` when another endpoint already lists a sender
    (the listener could not tell the two apart).
    """
    before = snapshot(endpoint)
    block = dict(hl7_options(endpoint))
    if senders is not None:
        patterns = [SenderPattern.parse(text) for text in senders]
        await _refuse_shared(session, endpoint=endpoint, patterns=patterns)
        block["senders"] = list(dict.fromkeys(str(p) for p in patterns))
    if status_map is not None:
        for code, status in status_map.items():
            if status not in FHIR_STATUSES:
                raise InvalidInput(
                    f"{status!r} (for SCH-25 code {code!r}) is not an Appointment status; use "
                    + ", ".join(sorted(FHIR_STATUSES))
                    + "."
                )
        block["status_map"] = {code.strip(): status for code, status in status_map.items()}
    if jws_issuer is not None:
        block["jws_issuer"] = jws_issuer.strip() or None
    endpoint.options = {**(endpoint.options or {}), "hl7": block}
    endpoint.version += 1
    await session.flush()
    await record(
        session,
        actor=actor,
        action="endpoint.hl7_feed",
        obj=endpoint,
        before=before,
        organisation_id=endpoint.organisation_id,
    )
    return block


async def _refuse_shared(
    session: AsyncSession, *, endpoint: EhrEndpoint, patterns: Sequence[SenderPattern]
) -> None:
    wanted = {str(p).casefold() for p in patterns}
    for other, _region in await repository.feed_endpoints(session):
        if other.id == endpoint.id:
            continue
        raw = hl7_options(other).get("senders")
        theirs = {str(t).casefold() for t in raw} if isinstance(raw, list) else set()
        shared = wanted & theirs
        if shared:
            raise Conflict(
                f"The sender {sorted(shared)[0]} is already listed by endpoint {other.id} "
                f"({other.environment}); one sender can feed only one endpoint."
            )


async def set_hl7_senders(
    ctx: AppContext,
    *,
    endpoint_id: str,
    senders: Sequence[str],
    actor: str = "cli",
    jws_issuer: str | None = None,
) -> list[str]:
    """Replace the endpoint's accepted senders (``"APP^FACILITY"`` or ``"APP"``); returns them.

    An empty list stops the feed for the endpoint. ``jws_issuer`` (when given; ``""`` clears
    it) is the ``iss`` signed HTTPS payloads must carry; without one, ``iss`` must equal one of
    the senders as written here.
    """
    async with ctx.transaction() as session:
        endpoint = await _endpoint(session, endpoint_uuid(endpoint_id))
        block = await configure_feed(
            session, endpoint=endpoint, actor=actor, senders=senders, jws_issuer=jws_issuer
        )
    invalidate(ctx)
    return list(block.get("senders") or [])


async def set_status_map(
    ctx: AppContext, *, endpoint_id: str, mapping: Mapping[str, str], actor: str = "cli"
) -> dict[str, str]:
    """Replace the endpoint's local SCH-25 codes (merged over the defaults at use)."""
    async with ctx.transaction() as session:
        endpoint = await _endpoint(session, endpoint_uuid(endpoint_id))
        block = await configure_feed(session, endpoint=endpoint, actor=actor, status_map=mapping)
    invalidate(ctx)
    return dict(block.get("status_map") or {})


async def upload_certificate(
    ctx: AppContext,
    *,
    endpoint_id: str,
    path: Path,
    actor: str = "cli",
    now: datetime | None = None,
) -> ParsedCertificate:
    """Store the certificate in ``path`` for the endpoint's organisation and environment.

    Returns what was read (subject, thumbprint, validity). Raises :class:`InvalidInput` for an
    unreadable file and everything :func:`~openvisit.certificates.parse_certificate` refuses.
    """
    try:
        data = await asyncio.to_thread(Path(path).read_bytes)
    except OSError as exc:
        raise InvalidInput(f"{path} cannot be read ({exc.strerror}).") from exc
    moment = now or utcnow()
    async with ctx.transaction() as session:
        endpoint = await _endpoint(session, endpoint_uuid(endpoint_id))
        await store_certificate(
            session,
            organisation_id=endpoint.organisation_id,
            environment=endpoint.environment,
            data=data,
            actor=actor,
            now=moment,
        )
    return parse_certificate(data, now=moment)

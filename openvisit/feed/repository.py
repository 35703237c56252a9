"""Every query of the scheduling feed (the service and the listener call these, never SQL)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import bindparam, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.models import (
    Appointment,
    Contact,
    EhrEndpoint,
    InboundMessage,
    Organisation,
    Visit,
)

# The feed's per-message queries are built once: building the expression is a noticeable
# share of the listener's CPU per message, and the compiled form is cached by SQLAlchemy.
_CANDIDATES = select(Appointment).where(
    Appointment.endpoint_id.in_(bindparam("endpoint_ids", expanding=True)),
    or_(
        Appointment.ehr_appointment_id.in_(bindparam("keys", expanding=True)),
        Appointment.placer_appointment_id.in_(bindparam("keys", expanding=True)),
    ),
)
_INBOUND_MANY = select(InboundMessage).where(
    InboundMessage.sender.in_(bindparam("senders", expanding=True)),
    InboundMessage.control_id.in_(bindparam("control_ids", expanding=True)),
)
_CONTACTS = select(Contact).where(
    Contact.appointment_id.in_(bindparam("appointment_ids", expanding=True))
)


async def inbound_messages(
    session: AsyncSession, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], InboundMessage]:
    """The messages already accepted among ``keys`` (sender, MSH-10), by key."""
    if not keys:
        return {}
    rows = await session.scalars(
        _INBOUND_MANY,
        {"senders": sorted({s for s, _ in keys}), "control_ids": sorted({c for _, c in keys})},
    )
    wanted = set(keys)
    return {(r.sender, r.control_id): r for r in rows if (r.sender, r.control_id) in wanted}


async def record_inbound(session: AsyncSession, rows: Sequence[dict[str, object]]) -> None:
    """Record accepted messages (sender, control_id, event, ack_code, ack, received_at) in
    one statement; a (sender, MSH-10) already recorded raises ``IntegrityError``."""
    if rows:
        await session.execute(insert(InboundMessage), list(rows))


async def appointment_candidates(
    session: AsyncSession, keys: Sequence[tuple[uuid.UUID, str]]
) -> Sequence[Appointment]:
    """Every appointment of the named endpoints whose filler or placer id is one of the keys
    (endpoint, SCH-1/SCH-2 value): a superset that :func:`match_appointment` chooses from."""
    if not keys:
        return []
    return (
        await session.scalars(
            _CANDIDATES,
            {"endpoint_ids": sorted({e for e, _ in keys}), "keys": sorted({k for _, k in keys})},
        )
    ).all()


def match_appointment(
    candidates: Sequence[Appointment],
    *,
    endpoint_id: uuid.UUID,
    filler: str | None,
    placer: str | None,
) -> Appointment | None:
    """The endpoint's appointment for SCH-2 (filler id), else for SCH-1 (placer id).

    An appointment first seen with only a placer id is keyed by it; once a filler id arrives
    it is found through the placer id and re-keyed by the caller. Placer matches are limited to
    rows the feed created, so a FHIR id that happens to equal a placer id is never taken.
    """
    rows = [r for r in candidates if r.endpoint_id == endpoint_id]
    if filler is not None:
        by_filler = next((r for r in rows if r.ehr_appointment_id == filler), None)
        if by_filler is not None or placer is None:
            return by_filler
        return next(
            (
                r
                for r in rows
                if r.source == "hl7"
                and r.placer_appointment_id == placer
                and r.ehr_appointment_id == placer
            ),
            None,
        )
    if placer is None:
        return None
    named = [r for r in rows if placer in (r.ehr_appointment_id, r.placer_appointment_id)]
    return next(
        (r for r in named if r.ehr_appointment_id == placer),
        next((r for r in named if r.source == "hl7"), None),
    )


async def contacts_for(
    session: AsyncSession, appointment_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, Contact]]:
    """Each appointment's contacts by kind (``sms``, ``email``)."""
    found: dict[uuid.UUID, dict[str, Contact]] = {}
    if not appointment_ids:
        return found
    for row in await session.scalars(_CONTACTS, {"appointment_ids": list(appointment_ids)}):
        found.setdefault(row.appointment_id, {})[row.kind] = row
    return found


async def feed_endpoints(
    session: AsyncSession,
) -> Sequence[tuple[EhrEndpoint, str]]:
    """Every endpoint with its organisation's default phone region."""
    rows = await session.execute(
        select(EhrEndpoint, Organisation.default_phone_region).join(
            Organisation, Organisation.id == EhrEndpoint.organisation_id
        )
    )
    return [(endpoint, region) for endpoint, region in rows.all()]


async def endpoint(session: AsyncSession, endpoint_id: uuid.UUID) -> EhrEndpoint | None:
    return await session.get(EhrEndpoint, endpoint_id)


async def visits_for(
    session: AsyncSession, appointment_ids: Sequence[uuid.UUID]
) -> Sequence[Visit]:
    """The visits opened for these appointments (at most one each)."""
    if not appointment_ids:
        return []
    return (
        await session.scalars(select(Visit).where(Visit.appointment_id.in_(appointment_ids)))
    ).all()

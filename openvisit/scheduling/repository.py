"""Every query of the scheduling feed (the service and the listener call these, never SQL)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.models import Appointment, Contact, EhrEndpoint, InboundMessage, Organisation

# The feed's per-message queries are built once: building the expression is a noticeable
# share of the listener's CPU per message, and the compiled form is cached by SQLAlchemy.
_INBOUND = select(InboundMessage).where(
    InboundMessage.sender == bindparam("sender"),
    InboundMessage.control_id == bindparam("control_id"),
)
_BY_KEYS = select(Appointment).where(
    Appointment.endpoint_id == bindparam("endpoint_id"),
    Appointment.ehr_appointment_id.in_(bindparam("keys", expanding=True)),
)
_BY_PLACER = select(Appointment).where(
    Appointment.endpoint_id == bindparam("endpoint_id"),
    or_(
        Appointment.ehr_appointment_id == bindparam("placer"),
        Appointment.placer_appointment_id == bindparam("placer"),
    ),
)
_CONTACTS = select(Contact).where(Contact.appointment_id == bindparam("appointment_id"))


async def inbound_message(
    session: AsyncSession, *, sender: str, control_id: str
) -> InboundMessage | None:
    """The message already accepted from ``sender`` with this MSH-10, if any."""
    return await session.scalar(_INBOUND, {"sender": sender, "control_id": control_id})


async def find_appointment(
    session: AsyncSession, *, endpoint_id: uuid.UUID, filler: str | None, placer: str | None
) -> Appointment | None:
    """The endpoint's appointment for SCH-2 (filler id), else for SCH-1 (placer id).

    An appointment first seen with only a placer id is keyed by it; once a filler id arrives
    it is found through the placer id and re-keyed by the caller. Placer matches are limited to
    rows the feed created, so a FHIR id that happens to equal a placer id is never taken.
    """
    if filler is not None:
        keys = [filler] if placer is None else [filler, placer]
        rows = (await session.scalars(_BY_KEYS, {"endpoint_id": endpoint_id, "keys": keys})).all()
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
    rows = (await session.scalars(_BY_PLACER, {"endpoint_id": endpoint_id, "placer": placer})).all()
    return next(
        (r for r in rows if r.ehr_appointment_id == placer),
        next((r for r in rows if r.source == "hl7"), None),
    )


async def contacts(session: AsyncSession, appointment_id: uuid.UUID) -> dict[str, Contact]:
    """The appointment's contacts by kind (``sms``, ``email``)."""
    rows = await session.scalars(_CONTACTS, {"appointment_id": appointment_id})
    return {row.kind: row for row in rows}


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

"""Queries of the launch: the local copy of an EHR appointment and the IdP ↔ EHR user links."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.models import Appointment, ProviderLink


async def appointment_by_ehr_id(
    session: AsyncSession, *, endpoint_id: uuid.UUID, ehr_appointment_id: str
) -> Appointment | None:
    return await session.scalar(
        select(Appointment).where(
            Appointment.endpoint_id == endpoint_id,
            Appointment.ehr_appointment_id == ehr_appointment_id,
        )
    )


async def provider_link(
    session: AsyncSession, *, endpoint_id: uuid.UUID, ehr_user_id: str
) -> ProviderLink | None:
    """The IdP subject linked to this EHR user at this endpoint, if any."""
    return await session.scalar(
        select(ProviderLink).where(
            ProviderLink.endpoint_id == endpoint_id, ProviderLink.ehr_user_id == ehr_user_id
        )
    )

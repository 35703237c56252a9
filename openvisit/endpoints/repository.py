"""Queries for EHR endpoints."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.models import EhrEndpoint


async def by_fhir_base(session: AsyncSession, fhir_base: str) -> list[EhrEndpoint]:
    """Every endpoint (any organisation) registered for this normalised FHIR base."""
    rows = await session.scalars(select(EhrEndpoint).where(EhrEndpoint.fhir_base == fhir_base))
    return list(rows.all())


async def by_id(session: AsyncSession, endpoint_id: uuid.UUID) -> EhrEndpoint | None:
    return await session.get(EhrEndpoint, endpoint_id)


async def for_organisation(
    session: AsyncSession, organisation_id: uuid.UUID | None = None
) -> list[EhrEndpoint]:
    query = select(EhrEndpoint).order_by(EhrEndpoint.environment, EhrEndpoint.fhir_base)
    if organisation_id is not None:
        query = query.where(EhrEndpoint.organisation_id == organisation_id)
    return list((await session.scalars(query)).all())

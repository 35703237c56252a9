"""Queries for EHR endpoints."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.models import EhrEndpoint, Organisation


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


async def frame_ancestors_of(session: AsyncSession, endpoint_id: uuid.UUID) -> list[str]:
    """The EHR origins the endpoint's organisation lets frame its pages."""
    found = await session.scalar(
        select(Organisation.frame_ancestors)
        .join(EhrEndpoint, EhrEndpoint.organisation_id == Organisation.id)
        .where(EhrEndpoint.id == endpoint_id)
    )
    return list(found or [])


async def all_frame_ancestors(session: AsyncSession) -> list[str]:
    """Every organisation's EHR origins: the launch pages are framed before the endpoint (and
    so the organisation) is known."""
    rows = await session.scalars(select(Organisation.frame_ancestors))
    return list(dict.fromkeys(origin for row in rows.all() for origin in (row or [])))

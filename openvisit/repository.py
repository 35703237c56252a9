"""Every query of the core modules (:mod:`openvisit.certificates`, :mod:`openvisit.nonces`).

Those modules are services shared by several domain packages; like every repository this one
builds SQL and never commits, and the services call it, never SQLAlchemy.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.db import rowcount
from openvisit.models import Certificate, SeenNonce

# ------------------------------------------------------------------------ certificates


async def certificate_by_thumbprint(
    session: AsyncSession, *, organisation_id: uuid.UUID, environment: str, thumbprint: str
) -> Certificate | None:
    """The organisation's certificate of ``environment`` with this SHA-256 thumbprint."""
    return await session.scalar(
        select(Certificate).where(
            Certificate.organisation_id == organisation_id,
            Certificate.environment == environment,
            Certificate.thumbprint_sha256 == thumbprint,
        )
    )


async def active_certificates(
    session: AsyncSession, *, organisation_id: uuid.UUID, environment: str,
    valid_at: datetime | None,
) -> list[Certificate]:
    """The organisation's active certificates of ``environment``, newest first; with
    ``valid_at`` only those inside their validity then."""
    query = (
        select(Certificate)
        .where(
            Certificate.organisation_id == organisation_id,
            Certificate.environment == environment,
            Certificate.is_active.is_(True),
        )
        .order_by(Certificate.created_at.desc())
    )
    if valid_at is not None:
        query = query.where(Certificate.not_before <= valid_at, Certificate.not_after > valid_at)
    return list((await session.scalars(query)).all())


# ------------------------------------------------------------------------------ nonces


async def nonce(session: AsyncSession, *, scope: str, digest: str) -> SeenNonce | None:
    return await session.get(SeenNonce, (scope, digest))


async def mark_nonce_used(session: AsyncSession, *, scope: str, digest: str,
                          now: datetime) -> bool:
    """Mark an unused nonce used; False if it was used already (two concurrent uses: one
    wins, because the update is conditional)."""
    result = await session.execute(
        update(SeenNonce)
        .where(SeenNonce.scope == scope, SeenNonce.value == digest, SeenNonce.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) > 0


async def delete_expired_nonces(session: AsyncSession, *, before: datetime, limit: int) -> int:
    """Delete at most ``limit`` nonces that expired before ``before``, oldest first."""
    oldest = (
        select(SeenNonce.scope, SeenNonce.value)
        .where(SeenNonce.expires_at < before)
        .order_by(SeenNonce.expires_at)
        .limit(limit)
    )
    result = await session.execute(
        delete(SeenNonce)
        .where(tuple_(SeenNonce.scope, SeenNonce.value).in_(oldest))
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)

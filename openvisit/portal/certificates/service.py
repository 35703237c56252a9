"""The certificate step: upload, list and retire the sender certificates per environment.

Parsing and storage are :mod:`openvisit.certificates`; this adds who may do it and what the
portal shows (status: valid, expiring soon, expired, retired).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.audit import record, snapshot
from openvisit.certificates import store_certificate
from openvisit.errors import NotFound
from openvisit.models import Certificate, utcnow
from openvisit.models.endpoint import ENVIRONMENTS
from openvisit.portal import repository
from openvisit.portal.signin.sessions import Principal

EXPIRING_SOON = timedelta(days=30)


@dataclass(frozen=True)
class CertificateView:
    row: Certificate
    status: str  # valid | expiring | expired | retired

    @property
    def thumbprint_pairs(self) -> str:
        """``AB:CD:…`` as certificate tools print it."""
        text = self.row.thumbprint_sha256.upper()
        return ":".join(text[i:i + 2] for i in range(0, len(text), 2))


def status_of(row: Certificate, *, now: datetime) -> str:
    if not row.is_active:
        return "retired"
    if row.not_after <= now:
        return "expired"
    if row.not_after - now <= EXPIRING_SOON:
        return "expiring"
    return "valid"


async def list_by_environment(
    session: AsyncSession, *, principal: Principal
) -> dict[str, list[CertificateView]]:
    now = utcnow()
    out: dict[str, list[CertificateView]] = {env: [] for env in ENVIRONMENTS}
    for row in await repository.certificates_of(session, principal.organisation_id):
        out.setdefault(row.environment, []).append(CertificateView(row, status_of(row, now=now)))
    return out


async def upload(
    session: AsyncSession, *, principal: Principal, environment: str, data: bytes
) -> Certificate:
    """Store an uploaded certificate (see :func:`openvisit.certificates.store_certificate`).

    Raises :class:`~openvisit.errors.InvalidInput` with the parser's message: private key,
    expired, not yet valid, weak key, or not a certificate at all.
    """
    principal.require("org_admin", doing="upload certificates")
    return await store_certificate(session, organisation_id=principal.organisation_id,
                                   environment=environment, data=data, actor=principal.actor,
                                   now=utcnow())


async def retire(session: AsyncSession, *, principal: Principal,
                 certificate_id: uuid.UUID) -> Certificate:
    """Stop trusting a certificate (signed feeds with it are refused from now on)."""
    principal.require("org_admin", doing="retire certificates")
    row = await session.get(Certificate, certificate_id)
    if row is None or row.organisation_id != principal.organisation_id:
        raise NotFound("There is no such certificate in your organisation.")
    if row.is_active:
        before = snapshot(row)
        row.is_active = False
        await session.flush()
        await record(session, actor=principal.actor, action="certificate.retire", obj=row,
                     before=before, organisation_id=principal.organisation_id)
    return row

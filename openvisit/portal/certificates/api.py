"""JSON API of the certificate step (``/api/portal``): list, upload, retire."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from openvisit.portal.certificates import service as certs
from openvisit.portal.schemas import CertificateIn, CertificateOut
from openvisit.portal.web import PrincipalDep
from openvisit.web.deps import SessionDep
from openvisit.web.schemas import error_responses

router = APIRouter(
    prefix="/api/portal",
    tags=["portal"],
    responses=error_responses(401, 403, 404, 409, 422, 429, 502),
)


@router.get("/certificates", response_model=list[CertificateOut])
async def certificates(session: SessionDep, principal: PrincipalDep) -> list[CertificateOut]:
    by_env = await certs.list_by_environment(session, principal=principal)
    return [CertificateOut.of(v.row, status=v.status) for views in by_env.values() for v in views]


@router.post("/certificates", response_model=CertificateOut, status_code=201)
async def certificate_upload(body: CertificateIn, session: SessionDep,
                             principal: PrincipalDep) -> CertificateOut:
    """Upload a public certificate (PEM or base64 DER) for one environment."""
    row = await certs.upload(session, principal=principal, environment=body.environment,
                             data=body.certificate.encode())
    return CertificateOut.of(row, status="valid")


@router.delete("/certificates/{certificate_id}", status_code=204)
async def certificate_retire(certificate_id: uuid.UUID, session: SessionDep,
                             principal: PrincipalDep) -> None:
    await certs.retire(session, principal=principal, certificate_id=certificate_id)

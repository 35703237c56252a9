"""Portal pages of the certificate step: upload, list and retire sender certificates."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from openvisit.errors import InvalidInput
from openvisit.models.endpoint import ENVIRONMENTS
from openvisit.portal.certificates import service as certs
from openvisit.portal.web import (
    PortalRoute,
    PrincipalDep,
    form_text,
    remember_session,
    render,
    savepoint,
    see_other,
)
from openvisit.web.deps import SessionDep

router = APIRouter(route_class=PortalRoute, include_in_schema=False,
                   dependencies=[Depends(remember_session)])


@router.get("/portal/certificates")
async def certificates_page(request: Request, session: SessionDep,
                            principal: PrincipalDep) -> Response:
    return render(request, "portal/certificates.html", {
        "by_env": await certs.list_by_environment(session, principal=principal),
        "environments": ENVIRONMENTS, "error": None, "error_env": None}, principal=principal)


@router.post("/portal/certificates")
async def certificate_upload(request: Request, session: SessionDep,
                             principal: PrincipalDep) -> Response:
    """Upload a file or pasted text; the page shows the result or exactly what is wrong."""
    form = await request.form()
    environment = form_text(form, "environment")
    upload = form.get("file")
    data, source = b"", ""
    if isinstance(upload, UploadFile):
        data, source = await upload.read(), upload.filename or ""
    if not data.strip():
        data, source = form_text(form, "pasted").encode(), ""
    try:
        async with savepoint(session):
            row = await certs.upload(session, principal=principal, environment=environment,
                                     data=data)
    except InvalidInput as exc:
        message = exc.message[:1].upper() + exc.message[1:]
        # Say which file, so the admin knows what to fix.
        exc = InvalidInput(f"{source}: {message}" if source else message, details=exc.details)
        return render(request, "portal/certificates.html", {
            "by_env": await certs.list_by_environment(session, principal=principal),
            "environments": ENVIRONMENTS, "error": exc, "error_env": environment},
            principal=principal, status_code=422)
    return see_other(f"/portal/certificates?notice=uploaded#cert-{row.id}")


@router.post("/portal/certificates/{certificate_id}/retire")
async def certificate_retire(session: SessionDep, principal: PrincipalDep,
                             certificate_id: uuid.UUID) -> Response:
    await certs.retire(session, principal=principal, certificate_id=certificate_id)
    return see_other("/portal/certificates?notice=retired")

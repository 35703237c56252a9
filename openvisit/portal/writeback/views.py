"""Portal page of an endpoint's write-back: profile, what is written, the test write, and the
recent write-backs with their state and a re-run button for the failed ones."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from openvisit.errors import OpenVisitError
from openvisit.models import EhrEndpoint
from openvisit.portal.endpoints import service as admin
from openvisit.portal.signin.sessions import Principal
from openvisit.portal.web import (
    PortalRoute,
    PrincipalDep,
    form_bool,
    form_text,
    remember_session,
    render,
    savepoint,
    see_other,
)
from openvisit.portal.writeback import service as portal_writeback
from openvisit.web.deps import CtxDep, SessionDep
from openvisit.writeback.service import TestWriteResult

router = APIRouter(route_class=PortalRoute, include_in_schema=False,
                   dependencies=[Depends(remember_session)])

WHAT_LABELS = {"audit": "AuditEvent", "encounter": "Encounter status",
               "appointment_status": "Appointment status", "devicetest": "Device-test result",
               "message": "Message sent", "arrived": "Patient arrived (Communication)",
               "arrived_webhook": "Patient arrived (webhook)",
               "connection_status": "Epic connection status",
               "video_link": "Video link in the appointment"}


def _form_values(settings: Any) -> dict[str, Any]:
    data: dict[str, Any] = settings.model_dump()
    data.pop("webhook_secret_enc", None)
    return data


async def _page(request: Request, session: Any, principal: Principal, endpoint: EhrEndpoint,
                *, values: dict[str, Any] | None = None, error: OpenVisitError | None = None,
                test: TestWriteResult | None = None, status_code: int = 200) -> Response:
    view = await portal_writeback.page(session, principal=principal, endpoint=endpoint)
    return render(request, "portal/endpoint_writeback.html", {
        "endpoint": endpoint, "view": view, "error": error, "test": test,
        "values": values if values is not None else _form_values(view.settings),
        "profiles": list(portal_writeback.PROFILE_LABELS.items()),
        "what_labels": WHAT_LABELS,
    }, principal=principal, status_code=status_code)


@router.get("/portal/endpoints/{endpoint_id}/writeback")
async def writeback_page(request: Request, session: SessionDep, principal: PrincipalDep,
                         endpoint_id: uuid.UUID) -> Response:
    endpoint = await admin.get_for(session, principal=principal, endpoint_id=endpoint_id)
    return await _page(request, session, principal, endpoint)


@router.post("/portal/endpoints/{endpoint_id}/writeback")
async def writeback_save(request: Request, session: SessionDep, ctx: CtxDep,
                         principal: PrincipalDep, endpoint_id: uuid.UUID) -> Response:
    endpoint = await admin.get_for(session, principal=principal, endpoint_id=endpoint_id)
    form = await request.form()
    data = portal_writeback.SettingsInput(
        enabled=form_bool(form, "enabled"), profile=form_text(form, "profile"),
        devicetest=form_text(form, "devicetest"),
        switches={name: form_bool(form, name) for name in portal_writeback.SWITCHES},
        webhook_url=form_text(form, "webhook_url"),
        webhook_secret=form_text(form, "webhook_secret"),
        clear_webhook_secret=form_bool(form, "clear_webhook_secret"),
        scopes=form_text(form, "scopes"))
    try:
        async with savepoint(session):
            await portal_writeback.save(session, app=ctx, principal=principal,
                                        endpoint=endpoint, data=data)
    except OpenVisitError as exc:
        await session.refresh(endpoint)
        values = {"enabled": data.enabled, "profile": data.profile,
                  "devicetest": data.devicetest, "webhook_url": data.webhook_url,
                  "scopes": data.scopes, **data.switches}  # the secret is never echoed
        return await _page(request, session, principal, endpoint, values=values, error=exc,
                           status_code=exc.status_code)
    return see_other(f"/portal/endpoints/{endpoint.id}/writeback?notice=writeback_saved")


@router.post("/portal/endpoints/{endpoint_id}/writeback/test")
async def writeback_test(request: Request, ctx: CtxDep, principal: PrincipalDep,
                         endpoint_id: uuid.UUID) -> Response:
    """Write one AuditEvent to the (test) EHR now, no transaction open meanwhile; the page
    then shows what the EHR answered."""
    try:
        result = await portal_writeback.test_write(ctx, principal=principal,
                                                   endpoint_id=endpoint_id)
        error = None
    except OpenVisitError as exc:
        result, error = None, exc
    async with ctx.db.read() as session:
        endpoint = await admin.get_for(session, principal=principal, endpoint_id=endpoint_id)
        return await _page(request, session, principal, endpoint, test=result, error=error,
                           status_code=error.status_code if error else 200)


@router.post("/portal/endpoints/{endpoint_id}/writeback/{row_id}/rerun")
async def writeback_rerun(request: Request, session: SessionDep, principal: PrincipalDep,
                          endpoint_id: uuid.UUID, row_id: int) -> Response:
    endpoint = await admin.get_for(session, principal=principal, endpoint_id=endpoint_id)
    try:
        async with savepoint(session):
            await portal_writeback.rerun(session, principal=principal, endpoint=endpoint,
                                         row_id=row_id)
    except OpenVisitError as exc:
        return await _page(request, session, principal, endpoint, error=exc,
                           status_code=exc.status_code)
    return see_other(f"/portal/endpoints/{endpoint.id}/writeback?notice=writeback_rerun"
                     f"#wb-{row_id}")

"""Portal pages of the review step: read and download the integration records, replace the
device-test context token."""

from __future__ import annotations

import json
import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from openvisit.errors import OpenVisitError
from openvisit.portal.endpoints import service as admin
from openvisit.portal.records import service as records_service
from openvisit.portal.web import (
    PortalRoute,
    PrincipalDep,
    form_text,
    remember_session,
    render,
    savepoint,
    see_other,
)
from openvisit.web.deps import CtxDep, SessionDep

router = APIRouter(route_class=PortalRoute, include_in_schema=False,
                   dependencies=[Depends(remember_session)])


@router.get("/portal/records")
async def records_index(request: Request, session: SessionDep,
                        principal: PrincipalDep) -> Response:
    principal.require("org_admin", "approver", doing="read the integration records")
    endpoints = await admin.list_for(session, principal=principal)
    return render(request, "portal/records_index.html", {"endpoints": endpoints},
                  principal=principal)


@router.get("/portal/endpoints/{endpoint_id}/records")
async def records_page(request: Request, session: SessionDep, ctx: CtxDep,
                       principal: PrincipalDep, endpoint_id: uuid.UUID) -> Response:
    endpoint = await admin.get_for(session, principal=principal, endpoint_id=endpoint_id)
    items = await records_service.build_records(session, app=ctx, principal=principal,
                                                endpoint=endpoint)
    return render(request, "portal/records.html", {
        "endpoint": endpoint, "records": items, "feed": records_service.feed_state(endpoint),
        "values": {}, "error": None}, principal=principal)


@router.post("/portal/endpoints/{endpoint_id}/feed")
async def feed_save(request: Request, session: SessionDep, ctx: CtxDep, principal: PrincipalDep,
                    endpoint_id: uuid.UUID) -> Response:
    """The HL7 senders that feed this endpoint (one per line; none turns the feed off)."""
    endpoint = await admin.get_for(session, principal=principal, endpoint_id=endpoint_id)
    form = await request.form()
    text = form_text(form, "senders")
    try:
        async with savepoint(session):
            await records_service.set_feed_senders(session, app=ctx, principal=principal,
                                                   endpoint=endpoint,
                                                   lines=text.splitlines())
    except OpenVisitError as exc:
        await session.refresh(endpoint)
        items = await records_service.build_records(session, app=ctx, principal=principal,
                                                    endpoint=endpoint)
        return render(request, "portal/records.html", {
            "endpoint": endpoint, "records": items,
            "feed": records_service.feed_state(endpoint), "values": {"senders": text},
            "error": exc}, principal=principal, status_code=exc.status_code)
    return see_other(f"/portal/endpoints/{endpoint.id}/records?notice=feed_saved#feed")


def _download(payload: object, filename: str) -> Response:
    return Response(json.dumps(payload, indent=2, ensure_ascii=False) + "\n",
                    media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"',
                             "Cache-Control": "no-store"})


@router.get("/portal/endpoints/{endpoint_id}/records.json")
async def records_download(session: SessionDep, ctx: CtxDep, principal: PrincipalDep,
                           endpoint_id: uuid.UUID) -> Response:
    """All five records as one JSON file named after the environment."""
    endpoint = await admin.get_for(session, principal=principal, endpoint_id=endpoint_id)
    items = await records_service.build_records(session, app=ctx, principal=principal,
                                                endpoint=endpoint)
    payload = {"environment": endpoint.environment, "fhir_base": endpoint.fhir_base,
               "records": [r.as_json(endpoint=endpoint) for r in items]}
    return _download(payload, f"openvisit-{endpoint.environment}-records-"
                              f"{str(endpoint.id)[:8]}.json")


@router.get("/portal/endpoints/{endpoint_id}/records/{kind}.json")
async def record_download(session: SessionDep, ctx: CtxDep, principal: PrincipalDep,
                          endpoint_id: uuid.UUID, kind: str) -> Response:
    """One record as a JSON file named after the environment and the record."""
    endpoint = await admin.get_for(session, principal=principal, endpoint_id=endpoint_id)
    items = await records_service.build_records(session, app=ctx, principal=principal,
                                                endpoint=endpoint)
    item = records_service.find_record(items, kind)
    return _download(item.as_json(endpoint=endpoint),
                     f"openvisit-{endpoint.environment}-{kind.replace('_', '-')}.json")


@router.post("/portal/endpoints/{endpoint_id}/context-token")
async def rotate_token(session: SessionDep, principal: PrincipalDep,
                       endpoint_id: uuid.UUID) -> Response:
    """Revoke the device-test context token and issue a new one."""
    endpoint = await admin.get_for(session, principal=principal, endpoint_id=endpoint_id)
    await records_service.rotate_context_token(session, principal=principal, endpoint=endpoint)
    return see_other(f"/portal/endpoints/{endpoint.id}/records?notice=token_replaced")

"""JSON API of the EHR endpoints (``/api/portal``): the live check, create, read, change,
check again, remove."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from openvisit.portal.endpoints import service as admin
from openvisit.portal.endpoints.service import EndpointInput
from openvisit.portal.schemas import CheckIn, CheckOut, EndpointIn, EndpointOut, EndpointPatch
from openvisit.portal.web import PrincipalDep
from openvisit.web.deps import CtxDep, SessionDep
from openvisit.web.schemas import error_responses

router = APIRouter(
    prefix="/api/portal",
    tags=["portal"],
    responses=error_responses(401, 403, 404, 409, 422, 429, 502),
)


@router.post("/checks", response_model=CheckOut)
async def check(body: CheckIn, ctx: CtxDep, principal: PrincipalDep) -> CheckOut:
    """Run the live FHIR base check without saving anything (org admins only)."""
    principal.require("org_admin", doing="run the live check of a FHIR base")
    result = await admin.live_check(ctx, fhir_base=body.fhir_base, vendor=body.vendor,
                                    environment=body.environment, auth_method=body.auth_method)
    return CheckOut.model_validate(result.as_dict())


@router.get("/endpoints", response_model=list[EndpointOut])
async def endpoints(session: SessionDep, principal: PrincipalDep) -> list[EndpointOut]:
    return [EndpointOut.of(e) for e in await admin.list_for(session, principal=principal)]


@router.post("/endpoints", response_model=EndpointOut, status_code=201)
async def endpoint_create(body: EndpointIn, ctx: CtxDep,
                          principal: PrincipalDep) -> EndpointOut:
    """Add an endpoint; the FHIR base is checked live first (422 with every step if not)."""
    data = EndpointInput(**body.model_dump(exclude={"save_failed_check"}))
    endpoint, _ = await admin.create(ctx, principal=principal, data=data,
                                     save_failed_check=body.save_failed_check)
    return EndpointOut.of(endpoint)


@router.get("/endpoints/{endpoint_id}", response_model=EndpointOut)
async def endpoint(endpoint_id: uuid.UUID, session: SessionDep,
                   principal: PrincipalDep) -> EndpointOut:
    return EndpointOut.of(await admin.get_for(session, principal=principal,
                                              endpoint_id=endpoint_id))


@router.patch("/endpoints/{endpoint_id}", response_model=EndpointOut)
async def endpoint_patch(endpoint_id: uuid.UUID, body: EndpointPatch, ctx: CtxDep,
                         principal: PrincipalDep) -> EndpointOut:
    """Change an endpoint. Launch-relevant changes send an approved one back for approval
    (``state`` says so); launches from it are refused until it is approved again."""
    found = await admin.snapshot_for(ctx, principal=principal, endpoint_id=endpoint_id)
    data = EndpointInput(**body.model_dump(exclude={"save_failed_check"}, exclude_unset=True))
    saved, _, _ = await admin.update(ctx, principal=principal, endpoint=found, data=data,
                                     save_failed_check=body.save_failed_check)
    return EndpointOut.of(saved)


@router.delete("/endpoints/{endpoint_id}", status_code=204)
async def endpoint_delete(endpoint_id: uuid.UUID, session: SessionDep,
                          principal: PrincipalDep) -> None:
    found = await admin.get_for(session, principal=principal, endpoint_id=endpoint_id)
    await admin.remove(session, principal=principal, endpoint=found)


@router.post("/endpoints/{endpoint_id}/check", response_model=CheckOut)
async def endpoint_recheck(endpoint_id: uuid.UUID, ctx: CtxDep,
                           principal: PrincipalDep) -> CheckOut:
    _, result = await admin.recheck(ctx, principal=principal, endpoint_id=endpoint_id)
    return CheckOut.model_validate(result.as_dict())

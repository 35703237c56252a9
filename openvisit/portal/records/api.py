"""JSON API of the review step (``/api/portal``): the integration records and the
device-test context token."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter

from openvisit.portal.endpoints import service as admin
from openvisit.portal.records import service as records_service
from openvisit.portal.web import PrincipalDep
from openvisit.web.deps import CtxDep, SessionDep
from openvisit.web.schemas import error_responses

router = APIRouter(
    prefix="/api/portal",
    tags=["portal"],
    responses=error_responses(401, 403, 404, 409, 422, 429, 502),
)


@router.get("/endpoints/{endpoint_id}/records")
async def endpoint_records(endpoint_id: uuid.UUID, session: SessionDep, ctx: CtxDep,
                           principal: PrincipalDep) -> dict[str, Any]:
    """The five integration records, as in the portal's download."""
    found = await admin.get_for(session, principal=principal, endpoint_id=endpoint_id)
    items = await records_service.build_records(session, app=ctx, principal=principal,
                                                endpoint=found)
    return {"environment": found.environment, "fhir_base": found.fhir_base,
            "records": [r.as_json(endpoint=found) for r in items]}


@router.post("/endpoints/{endpoint_id}/context-token")
async def endpoint_rotate_token(endpoint_id: uuid.UUID, session: SessionDep, ctx: CtxDep,
                                principal: PrincipalDep) -> dict[str, str]:
    """Revoke the device-test context token and issue a new one."""
    found = await admin.get_for(session, principal=principal, endpoint_id=endpoint_id)
    token = await records_service.rotate_context_token(session, principal=principal,
                                                       endpoint=found)
    return {"id": str(token.id), "context_token": records_service.sign_context_token(ctx, token)}

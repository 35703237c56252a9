"""JSON API of the approval step (``/api/portal``): start the approver's SMART sign-in."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from openvisit.portal.approval import service as approval
from openvisit.portal.schemas import ApprovalStartOut
from openvisit.portal.web import PrincipalDep
from openvisit.web.deps import CtxDep
from openvisit.web.schemas import error_responses

router = APIRouter(
    prefix="/api/portal",
    tags=["portal"],
    responses=error_responses(401, 403, 404, 409, 422, 429, 502),
)


@router.post("/endpoints/{endpoint_id}/approval", response_model=ApprovalStartOut)
async def approval_start(endpoint_id: uuid.UUID, ctx: CtxDep,
                         principal: PrincipalDep) -> ApprovalStartOut:
    """Start the approver's SMART sign-in; needs a person's portal session, not a token."""
    url = await approval.begin(app=ctx, principal=principal, endpoint_id=endpoint_id)
    return ApprovalStartOut(authorize_url=url)

"""Portal pages of the approval step: the approval list, the approver's SMART sign-in to the
endpoint's EHR and its redirect URI."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from openvisit.portal.approval import service as approval
from openvisit.portal.endpoints import service as admin
from openvisit.portal.web import (
    PortalRoute,
    PrincipalDep,
    problem,
    remember_session,
    render,
    see_other,
)
from openvisit.web.deps import CtxDep, SessionDep
from openvisit.web.templating import templates

router = APIRouter(route_class=PortalRoute, include_in_schema=False,
                   dependencies=[Depends(remember_session)])


@router.get("/portal/approval")
async def approval_page(request: Request, session: SessionDep, ctx: CtxDep,
                        principal: PrincipalDep) -> Response:
    """Every endpoint with its approval state; approvers start the EHR sign-in from here."""
    endpoints = await admin.list_for(session, principal=principal)
    return render(request, "portal/approval.html", {
        "endpoints": endpoints, "since": {e.id: admin.changes_since_approval(e) for e in endpoints},
        "redirect_uri": approval.redirect_uri(ctx),
    }, principal=principal)


@router.post("/portal/endpoints/{endpoint_id}/approve")
async def approve_start(request: Request, ctx: CtxDep, principal: PrincipalDep,
                        endpoint_id: uuid.UUID) -> Response:
    """Send the approver to the endpoint's EHR to sign in (SMART standalone launch).

    Answered with a page that moves on by itself rather than a redirect: a redirect after a
    form post is bound by the portal's ``form-action 'self'``, and the EHR is elsewhere.
    """
    target = await approval.begin(app=ctx, principal=principal, endpoint_id=endpoint_id)
    return templates.TemplateResponse(request, "launch/redirect.html", {"target": target},
                                      headers={"Cache-Control": "no-store"})


@router.get("/portal/approval/callback")
async def approve_callback(request: Request, ctx: CtxDep, principal: PrincipalDep,
                           state: str | None = None, code: str | None = None,
                           error: str | None = None,
                           error_description: str | None = None) -> Response:
    """The EHR's redirect URI for the approval sign-in (no transaction stays open while the
    EHR is called: :func:`approval.complete` reads, calls out, then writes)."""
    outcome = await approval.complete(app=ctx, principal=principal, state=state, code=code,
                                      error=error, error_description=error_description)
    if outcome.refusal is not None:
        # Returned, not raised: shown in the portal, with what was recorded already committed.
        return problem(request, outcome.refusal, back="/portal/approval")
    assert outcome.endpoint is not None
    return see_other(f"/portal/endpoints/{outcome.endpoint.id}/records?notice=approved")

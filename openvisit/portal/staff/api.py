"""JSON API for staff accounts and API tokens (``/api/portal``)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from openvisit.errors import InvalidInput
from openvisit.portal.schemas import ApiTokenIn, ApiTokenOut, StaffIn, StaffOut, StaffPatch
from openvisit.portal.signin import sessions
from openvisit.portal.staff import service as staff
from openvisit.portal.web import PrincipalDep
from openvisit.web.deps import CtxDep, SessionDep
from openvisit.web.schemas import error_responses

router = APIRouter(
    prefix="/api/portal", tags=["portal"], responses=error_responses(401, 403, 404, 409, 422, 429)
)


@router.get("/staff", response_model=list[StaffOut])
async def staff_list(session: SessionDep, principal: PrincipalDep) -> list[StaffOut]:
    principal.require("org_admin", doing="list staff accounts")
    return [StaffOut.of(a) for a in await staff.list_staff(session, principal=principal)]


@router.post("/staff", response_model=StaffOut, status_code=201)
async def staff_add(body: StaffIn, session: SessionDep, ctx: CtxDep,
                    principal: PrincipalDep) -> StaffOut:
    """Add a local account (username + password) or an IdP user (subject)."""
    roles: list[str] = list(body.roles)
    if body.kind == "idp":
        account = await staff.add_idp_user(session, principal=principal, settings=ctx.settings,
                                           subject=body.subject or "", roles=roles)
    else:
        if not body.username or not body.password:
            raise InvalidInput("A local account needs a username and a password.",
                               details={"field": "username" if not body.username else "password"})
        account = await staff.add_local(session, app=ctx, principal=principal,
                                        username=body.username,
                                        password=body.password, roles=roles)
    return StaffOut.of(account)


@router.patch("/staff/{account_id}", response_model=StaffOut)
async def staff_patch(account_id: uuid.UUID, body: StaffPatch, session: SessionDep,
                      principal: PrincipalDep) -> StaffOut:
    """Change roles or (de)activate; the last active org admin cannot be removed."""
    account = await staff.update_staff(
        session, principal=principal, account_id=account_id,
        roles=list(body.roles) if body.roles is not None else None, active=body.active)
    return StaffOut.of(account)


@router.get("/api-tokens", response_model=list[ApiTokenOut])
async def tokens(session: SessionDep, principal: PrincipalDep) -> list[ApiTokenOut]:
    return [ApiTokenOut.of(t)
            for t in await sessions.list_api_tokens(session, principal=principal)]


@router.post("/api-tokens", response_model=ApiTokenOut, status_code=201)
async def token_create(body: ApiTokenIn, session: SessionDep,
                       principal: PrincipalDep) -> ApiTokenOut:
    """Create a token; ``token`` is in this answer only (store it now)."""
    row, secret = await sessions.create_api_token(
        session, principal=principal, name=body.name, roles=list(body.roles),
        expires_in_days=body.expires_in_days)
    return ApiTokenOut.of(row, secret=secret)


@router.delete("/api-tokens/{token_id}", status_code=204)
async def token_revoke(token_id: uuid.UUID, session: SessionDep,
                       principal: PrincipalDep) -> None:
    await sessions.revoke_api_token(session, principal=principal, token_id=token_id)

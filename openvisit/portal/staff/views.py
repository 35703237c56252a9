"""Portal pages for staff accounts and API tokens."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from openvisit.errors import InvalidInput, OpenVisitError
from openvisit.portal.signin import sessions
from openvisit.portal.signin.service import ROLES
from openvisit.portal.signin.sessions import ROLE_LABELS, Principal
from openvisit.portal.staff import service as staff
from openvisit.portal.web import (
    PortalRoute,
    PrincipalDep,
    form_list,
    form_text,
    remember_session,
    render,
    savepoint,
    see_other,
)
from openvisit.web.deps import CtxDep, SessionDep

router = APIRouter(route_class=PortalRoute, include_in_schema=False,
                   dependencies=[Depends(remember_session)])


async def _staff_page(request: Request, session: Any, ctx: Any, principal: Principal, *,
                      error: OpenVisitError | None = None, form_name: str | None = None,
                      values: dict[str, Any] | None = None, new_token: str | None = None,
                      ) -> Response:
    principal.require("org_admin", doing="manage staff and API tokens")
    return render(request, "portal/staff.html", {
        "accounts": await staff.list_staff(session, principal=principal),
        "tokens": await sessions.list_api_tokens(session, principal=principal),
        "roles": ROLES, "role_labels": ROLE_LABELS, "error": error, "form_name": form_name,
        "values": values or {}, "new_token": new_token,
        "idp_enabled": bool(ctx.settings.oidc_issuer), "idp_issuer": ctx.settings.oidc_issuer,
        "describe": sessions.describe_account,
    }, principal=principal, status_code=error.status_code if error else 200)


@router.get("/portal/staff")
async def staff_page(request: Request, session: SessionDep, ctx: CtxDep,
                     principal: PrincipalDep) -> Response:
    return await _staff_page(request, session, ctx, principal)


@router.post("/portal/staff")
async def staff_add(request: Request, session: SessionDep, ctx: CtxDep,
                    principal: PrincipalDep) -> Response:
    """Add a local account (``kind=local``) or an IdP user (``kind=idp``)."""
    form = await request.form()
    kind = form_text(form, "kind")
    try:
        async with savepoint(session):
            if kind == "idp":
                await staff.add_idp_user(session, principal=principal, settings=ctx.settings,
                                         subject=form_text(form, "subject"),
                                         roles=form_list(form, "roles"))
            else:
                password = form.get("password")
                await staff.add_local(session, app=ctx, principal=principal,
                                      username=form_text(form, "username"),
                                      password=password if isinstance(password, str) else "",
                                      roles=form_list(form, "roles"))
    except OpenVisitError as exc:
        values: dict[str, Any] = {k: v for k, v in form.multi_items() if k != "password"}
        values["roles"] = form_list(form, "roles")
        return await _staff_page(request, session, ctx, principal, error=exc,
                                 form_name=kind or "local", values=values)
    return see_other("/portal/staff?notice=staff_added")


@router.post("/portal/staff/{account_id}")
async def staff_update(request: Request, session: SessionDep, ctx: CtxDep,
                       principal: PrincipalDep, account_id: uuid.UUID) -> Response:
    form = await request.form()
    action = form_text(form, "action")
    try:
        async with savepoint(session):
            if action in ("deactivate", "reactivate"):
                await staff.update_staff(session, principal=principal, account_id=account_id,
                                         active=action == "reactivate")
            else:
                await staff.update_staff(session, principal=principal, account_id=account_id,
                                         roles=form_list(form, "roles"))
    except OpenVisitError as exc:
        return await _staff_page(request, session, ctx, principal, error=exc,
                                 form_name=f"account-{account_id}")
    return see_other("/portal/staff?notice=staff_saved")


@router.post("/portal/api-tokens")
async def token_create(request: Request, session: SessionDep, ctx: CtxDep,
                       principal: PrincipalDep) -> Response:
    """Create an API token and show it once."""
    form = await request.form()
    days = form_text(form, "expires_in_days")
    try:
        if days and not days.isdigit():
            raise InvalidInput("Expiry is a number of days, or empty for never.",
                               details={"field": "expires_in_days"})
        async with savepoint(session):
            _, secret = await sessions.create_api_token(
                session, principal=principal, name=form_text(form, "name"),
                roles=form_list(form, "roles"), expires_in_days=int(days) if days else None)
    except OpenVisitError as exc:
        values = {**dict(form.multi_items()), "roles": form_list(form, "roles")}
        return await _staff_page(request, session, ctx, principal, error=exc, form_name="token",
                                 values=values)
    return await _staff_page(request, session, ctx, principal, new_token=secret)


@router.post("/portal/api-tokens/{token_id}/revoke")
async def token_revoke(session: SessionDep, principal: PrincipalDep,
                       token_id: uuid.UUID) -> Response:
    await sessions.revoke_api_token(session, principal=principal, token_id=token_id)
    return see_other("/portal/staff?notice=token_revoked")

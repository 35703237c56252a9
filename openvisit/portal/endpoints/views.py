"""Portal pages of the EHR endpoints: list, add (with the live check), show, change,
check again, remove. An Epic endpoint's link keys are :mod:`.views_epic`."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from openvisit.ehr_endpoints.service import basic_form_encoded
from openvisit.errors import InvalidInput, OpenVisitError
from openvisit.models import EhrEndpoint
from openvisit.models.endpoint import AUTH_METHODS, ENVIRONMENTS, VENDORS
from openvisit.portal.endpoints import service as admin
from openvisit.portal.endpoints.service import CheckFailed, EndpointInput
from openvisit.portal.signin.sessions import Principal
from openvisit.portal.web import (
    PortalRoute,
    PrincipalDep,
    form_bool,
    form_text,
    remember_session,
    render,
    see_other,
)
from openvisit.web.deps import CtxDep, SessionDep

router = APIRouter(route_class=PortalRoute, include_in_schema=False,
                   dependencies=[Depends(remember_session)])

CHOICES = {"environments": ENVIRONMENTS, "vendors": VENDORS, "auth_methods": AUTH_METHODS}
VENDOR_LABELS = {"generic": "Any SMART on FHIR EHR", "epic": "Epic", "oracle": "Oracle Health"}


@router.get("/portal/endpoints")
async def endpoints_page(request: Request, session: SessionDep,
                         principal: PrincipalDep) -> Response:
    endpoints = await admin.list_for(session, principal=principal)
    return render(request, "portal/endpoints.html",
                  {"endpoints": endpoints, "checks": {e.id: admin.last_check(e) for e in endpoints},
                   "vendor_labels": VENDOR_LABELS}, principal=principal)


def _input(form: FormData, *, editing: bool) -> EndpointInput:
    secret = form_text(form, "client_secret")
    return EndpointInput(
        fhir_base=form_text(form, "fhir_base"), environment=form_text(form, "environment"),
        vendor=form_text(form, "vendor"), client_id=form_text(form, "client_id"),
        auth_method=form_text(form, "auth_method"),
        client_secret=secret if secret or not editing else None,
        name=form_text(form, "name"), approver_ehr_user=form_text(form, "approver_ehr_user"),
        timezone=form_text(form, "timezone") or None,
        raw_basic_credentials=form_bool(form, "raw_basic_credentials"),
    )


def _form_page(request: Request, principal: Principal, *, endpoint: EhrEndpoint | None,
               values: dict[str, Any], error: OpenVisitError | None = None,
               check: Any = None, confirm: list[str] | None = None,
               status_code: int = 200) -> Response:
    return render(request, "portal/endpoint_form.html", {
        "endpoint": endpoint, "values": values, "error": error, "check": check,
        "confirm": confirm or [], "vendor_labels": VENDOR_LABELS, **CHOICES,
    }, principal=principal, status_code=status_code)


@router.get("/portal/endpoints/new")
async def endpoint_new(request: Request, principal: PrincipalDep,
                       environment: str = "test") -> Response:
    principal.require("org_admin", doing="add EHR endpoints")
    values = {"environment": environment if environment in ENVIRONMENTS else "test",
              "vendor": "generic", "auth_method": "private_key_jwt"}
    return _form_page(request, principal, endpoint=None, values=values)


@router.post("/portal/endpoints/check")
async def endpoint_check(request: Request, ctx: CtxDep, principal: PrincipalDep) -> Response:
    """The live check as an htmx fragment (nothing is saved; org admins only)."""
    principal.require("org_admin", doing="run the live check of a FHIR base")
    form = await request.form()
    result = await admin.live_check(
        ctx, fhir_base=form_text(form, "fhir_base"), vendor=form_text(form, "vendor") or "generic",
        environment=form_text(form, "environment") or "test",
        auth_method=form_text(form, "auth_method") or "private_key_jwt")
    return render(request, "portal/_check.html", {"check": result.as_dict()},
                  principal=principal)


@router.post("/portal/endpoints")
async def endpoint_create(request: Request, ctx: CtxDep, principal: PrincipalDep) -> Response:
    """Check live, then save (no transaction is open during the check)."""
    form = await request.form()
    try:
        endpoint, _ = await admin.create(ctx, principal=principal,
                                         data=_input(form, editing=False),
                                         save_failed_check=form_bool(form, "save_draft"))
    except CheckFailed as exc:
        return _form_page(request, principal, endpoint=None, values=dict(form), error=exc,
                          check=exc.result.as_dict(), status_code=422)
    except InvalidInput as exc:
        return _form_page(request, principal, endpoint=None, values=dict(form), error=exc,
                          status_code=422)
    except OpenVisitError as exc:
        return _form_page(request, principal, endpoint=None, values=dict(form), error=exc,
                          status_code=exc.status_code)
    return see_other(f"/portal/endpoints/{endpoint.id}?notice=created")


@router.get("/portal/endpoints/{endpoint_id}")
async def endpoint_page(request: Request, session: SessionDep, ctx: CtxDep,
                        principal: PrincipalDep, endpoint_id: uuid.UUID) -> Response:
    endpoint = await admin.get_for(session, principal=principal, endpoint_id=endpoint_id)
    return render(request, "portal/endpoint.html", {
        "endpoint": endpoint, "check": admin.last_check(endpoint),
        "since_approval": admin.changes_since_approval(endpoint),
        "basic_warning": admin.basic_encoding_warning(endpoint),
        "epic_link": admin.epic_link_summary(endpoint),
        "vendor_labels": VENDOR_LABELS,
        "redirect_uri": f"{ctx.settings.public_url}/portal/approval/callback",
    }, principal=principal)


@router.get("/portal/endpoints/{endpoint_id}/edit")
async def endpoint_edit(request: Request, session: SessionDep, principal: PrincipalDep,
                        endpoint_id: uuid.UUID) -> Response:
    principal.require("org_admin", doing="change EHR endpoints")
    endpoint = await admin.get_for(session, principal=principal, endpoint_id=endpoint_id)
    values: dict[str, Any] = {k: getattr(endpoint, k) or "" for k in (
        "name", "environment", "vendor", "fhir_base", "client_id", "auth_method",
        "approver_ehr_user", "timezone")}
    values["raw_basic_credentials"] = not basic_form_encoded(endpoint)
    return _form_page(request, principal, endpoint=endpoint, values=values,
                      check=admin.last_check(endpoint))


@router.post("/portal/endpoints/{endpoint_id}")
async def endpoint_save(request: Request, ctx: CtxDep, principal: PrincipalDep,
                        endpoint_id: uuid.UUID) -> Response:
    """Save a change: read the endpoint, check live if needed (no transaction open), write."""
    endpoint = await admin.snapshot_for(ctx, principal=principal, endpoint_id=endpoint_id)
    form = await request.form()
    data = _input(form, editing=True)
    pending = admin.launch_changes(endpoint, data)
    if endpoint.state == "approved" and pending and not form_bool(form, "confirm_reapproval"):
        return _form_page(request, principal, endpoint=endpoint, values=dict(form),
                          confirm=pending)
    try:
        await admin.update(ctx, principal=principal, endpoint=endpoint, data=data,
                           save_failed_check=form_bool(form, "save_draft"))
    except CheckFailed as exc:
        return _form_page(request, principal, endpoint=endpoint, values=dict(form), error=exc,
                          check=exc.result.as_dict(), status_code=422)
    except OpenVisitError as exc:
        return _form_page(request, principal, endpoint=endpoint, values=dict(form), error=exc,
                          status_code=exc.status_code)
    return see_other(f"/portal/endpoints/{endpoint.id}?notice=saved")


@router.post("/portal/endpoints/{endpoint_id}/check")
async def endpoint_recheck(ctx: CtxDep, principal: PrincipalDep,
                           endpoint_id: uuid.UUID) -> Response:
    """Run the live check again (read → check with no transaction open → write)."""
    endpoint, result = await admin.recheck(ctx, principal=principal, endpoint_id=endpoint_id)
    notice = "check_ok" if result.ok else "check_failed"
    return see_other(f"/portal/endpoints/{endpoint.id}?notice={notice}")


@router.post("/portal/endpoints/{endpoint_id}/delete")
async def endpoint_delete(session: SessionDep, principal: PrincipalDep,
                          endpoint_id: uuid.UUID) -> Response:
    endpoint = await admin.get_for(session, principal=principal, endpoint_id=endpoint_id)
    await admin.remove(session, principal=principal, endpoint=endpoint)
    return see_other("/portal/endpoints?notice=removed")

"""Portal pages of the set-up step: the dashboard and the organisation."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from openvisit import i18n
from openvisit.errors import InvalidInput
from openvisit.portal.setup import service as setup_service
from openvisit.portal.setup.service import overview
from openvisit.portal.sms import service as sms_service
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
from openvisit.web.deps import CtxDep, SessionDep

router = APIRouter(route_class=PortalRoute, include_in_schema=False,
                   dependencies=[Depends(remember_session)])


@router.get("/portal")
async def dashboard(request: Request, session: SessionDep, principal: PrincipalDep) -> Response:
    """Where the set-up stands, step by step, and what to do next."""
    return render(request, "portal/dashboard.html",
                  {"overview": await overview(session, principal=principal)},
                  principal=principal)


# --- organisation --------------------------------------------------------------------------


async def _organisation_page(request: Request, session: Any, ctx: Any, principal: Any, *,
                             values: dict[str, Any], error: InvalidInput | None = None,
                             status_code: int = 200) -> Response:
    org = await sms_service.organisation_of(session, principal)
    return render(request, "portal/organisation.html",
                  {"org": org, "regions": ctx.settings.portal_regions, "values": values,
                   "error": error, "languages": i18n.LANGUAGES,
                   "departments": await setup_service.department_names(
                       session, principal=principal)},
                  principal=principal, status_code=status_code)


@router.get("/portal/organisation")
async def organisation_page(request: Request, session: SessionDep, ctx: CtxDep,
                            principal: PrincipalDep) -> Response:
    return await _organisation_page(request, session, ctx, principal, values={})


@router.post("/portal/organisation")
async def organisation_save(request: Request, session: SessionDep, ctx: CtxDep,
                            principal: PrincipalDep) -> Response:
    form = await request.form()
    limit_text = form_text(form, "allocation_limit")
    data = sms_service.OrganisationInput(
        display_name=form_text(form, "display_name"), region=form_text(form, "region"),
        default_phone_region=form_text(form, "default_phone_region"),
        timezone=form_text(form, "timezone"), unlimited=form_bool(form, "unlimited"),
        frame_ancestors=form_text(form, "frame_ancestors").splitlines(),
        provider_label_mode=form_text(form, "provider_label_mode") or None,
        store_chat=form_bool(form, "store_chat"))
    guests_text = form_text(form, "patient_guests_max")
    try:
        if guests_text:
            if not guests_text.isdigit():
                raise InvalidInput("The number of people a patient may invite is a whole "
                                   "number from 0 to 10.",
                                   details={"field": "patient_guests_max"})
            data.patient_guests_max = int(guests_text)
        for kind in ("visit", "message", "audit"):
            name = f"retention_{kind}_days"
            days = form_text(form, name)
            if days:
                if not days.isdigit():
                    raise InvalidInput("Write how long to keep it as a whole number of days, "
                                       "e.g. 400.", details={"field": name})
                setattr(data, name, int(days))
        if not data.unlimited:
            if not limit_text.isdigit():
                raise InvalidInput("The monthly visit allocation is a whole number (e.g. 500), "
                                   "or tick \"unlimited\".", details={"field": "allocation_limit"})
            data.allocation_limit = int(limit_text)
        async with savepoint(session):
            await sms_service.update_organisation(session, principal=principal,
                                                  settings=ctx.settings, data=data)
    except InvalidInput as exc:
        return await _organisation_page(request, session, ctx, principal, values=dict(form),
                                        error=exc, status_code=422)
    return see_other("/portal/organisation?notice=saved")


@router.post("/portal/organisation/departments")
async def department_save(request: Request, session: SessionDep, ctx: CtxDep,
                          principal: PrincipalDep) -> Response:
    """Name a department code (for every language, or one)."""
    form = await request.form()
    try:
        async with savepoint(session):
            await setup_service.name_department(
                session, principal=principal, code=form_text(form, "code"),
                name=form_text(form, "name"), language=form_text(form, "language") or None)
    except InvalidInput as exc:
        return await _organisation_page(request, session, ctx, principal, values=dict(form),
                                        error=exc, status_code=422)
    return see_other("/portal/organisation?notice=department_saved#departments")


@router.post("/portal/organisation/departments/remove")
async def department_remove(request: Request, session: SessionDep,
                            principal: PrincipalDep) -> Response:
    form = await request.form()
    await setup_service.forget_department(session, principal=principal,
                                          code=form_text(form, "code"),
                                          language=form_text(form, "language"))
    return see_other("/portal/organisation?notice=department_removed#departments")

"""Portal pages of the SMS step: consents, numbers, per-endpoint SMS."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from openvisit import i18n
from openvisit.errors import InvalidInput, OpenVisitError
from openvisit.portal.endpoints import service as admin
from openvisit.portal.signin.sessions import Principal
from openvisit.portal.sms import numbers as numbers_service
from openvisit.portal.sms import service as sms_service
from openvisit.portal.web import (
    PortalRoute,
    PrincipalDep,
    form_bool,
    form_list,
    form_text,
    format_phone,
    remember_session,
    render,
    savepoint,
    see_other,
)
from openvisit.web.deps import CtxDep, SessionDep

router = APIRouter(route_class=PortalRoute, include_in_schema=False,
                   dependencies=[Depends(remember_session)])


async def _sms_context(session: Any, ctx: Any, principal: Principal) -> dict[str, Any]:
    org = await sms_service.organisation_of(session, principal)
    endpoints = await admin.list_for(session, principal=principal)
    numbers = await numbers_service.list_numbers(session, principal=principal)
    links = await numbers_service.links_by_number(session, principal=principal)
    sms_rows = await sms_service.sms_settings_of(session, endpoints)
    by_endpoint = {e: n for n, es in links.items() for e in es}
    return {"org": org, "consents": sms_service.consents_given(org), "endpoints": endpoints,
            "numbers": numbers, "links": links, "sms_rows": sms_rows,
            "number_of": by_endpoint, "numbers_by_id": {n.id: n for n in numbers},
            "provider": ctx.settings.sms_provider,
            "can_provision": numbers_service.can_provision(ctx.settings.sms_provider),
            "step_label": numbers_service.step_label}


@router.get("/portal/sms")
async def sms_page(request: Request, session: SessionDep, ctx: CtxDep,
                   principal: PrincipalDep) -> Response:
    return render(request, "portal/sms.html", await _sms_context(session, ctx, principal),
                  principal=principal)


async def _sms_error(request: Request, session: Any, ctx: Any, principal: Principal,
                     exc: OpenVisitError, values: dict[str, Any] | None = None) -> Response:
    context = await _sms_context(session, ctx, principal)
    return render(request, "portal/sms.html", {**context, "error": exc, "values": values or {}},
                  principal=principal, status_code=exc.status_code)


@router.post("/portal/sms/consents")
async def sms_consents(request: Request, session: SessionDep, principal: PrincipalDep) -> Response:
    form = await request.form()
    await sms_service.set_consents(session, principal=principal, send=form_bool(form, "send"),
                                   patients=form_bool(form, "patients"))
    return see_other("/portal/sms?notice=consents")


@router.post("/portal/sms/numbers")
async def number_request(request: Request, session: SessionDep, ctx: CtxDep,
                         principal: PrincipalDep) -> Response:
    """Start provisioning; the browser goes to the progress page."""
    try:
        async with savepoint(session):
            number = await numbers_service.request_number(session, app=ctx, principal=principal)
    except InvalidInput as exc:
        return await _sms_error(request, session, ctx, principal, exc)
    return see_other(f"/portal/sms/numbers/{number.id}")


@router.post("/portal/sms/numbers/register")
async def number_register(request: Request, session: SessionDep, ctx: CtxDep,
                          principal: PrincipalDep) -> Response:
    form = await request.form()
    try:
        async with savepoint(session):
            await numbers_service.register_existing(session, app=ctx, principal=principal,
                                                    text=form_text(form, "e164"))
    except OpenVisitError as exc:
        return await _sms_error(request, session, ctx, principal, exc, dict(form))
    return see_other("/portal/sms?notice=number_added")


@router.get("/portal/sms/numbers/{number_id}")
async def number_page(request: Request, session: SessionDep, principal: PrincipalDep,
                      number_id: uuid.UUID) -> Response:
    number = await numbers_service.get_number(session, principal=principal, number_id=number_id)
    return render(request, "portal/number.html", {
        "number": number, "label": numbers_service.step_label(number),
        "steps": numbers_service.STEPS}, principal=principal)


@router.get("/portal/sms/numbers/{number_id}/progress")
async def number_progress(request: Request, session: SessionDep, principal: PrincipalDep,
                          number_id: uuid.UUID) -> Response:
    """The progress fragment htmx polls; it stops polling once the number is ready or failed."""
    number = await numbers_service.get_number(session, principal=principal, number_id=number_id)
    return render(request, "portal/_number_progress.html", {
        "number": number, "label": numbers_service.step_label(number),
        "steps": numbers_service.STEPS}, principal=principal)


@router.post("/portal/sms/numbers/{number_id}/links")
async def number_links(request: Request, session: SessionDep, ctx: CtxDep,
                       principal: PrincipalDep, number_id: uuid.UUID) -> Response:
    form = await request.form()
    try:
        ids = [uuid.UUID(v) for v in form_list(form, "endpoint_id")]
        async with savepoint(session):
            await numbers_service.set_links(session, principal=principal, number_id=number_id,
                                            endpoint_ids=ids)
    except (OpenVisitError, ValueError) as exc:
        error = exc if isinstance(exc, OpenVisitError) else InvalidInput("Unknown endpoint.")
        return await _sms_error(request, session, ctx, principal, error)
    return see_other("/portal/sms?notice=linked")


@router.post("/portal/sms/numbers/{number_id}/release")
async def number_release(request: Request, session: SessionDep, ctx: CtxDep,
                         principal: PrincipalDep, number_id: uuid.UUID) -> Response:
    try:
        async with savepoint(session):
            await numbers_service.release(session, principal=principal, number_id=number_id)
    except OpenVisitError as exc:
        return await _sms_error(request, session, ctx, principal, exc)
    return see_other("/portal/sms?notice=released")


@router.get("/portal/endpoints/{endpoint_id}/sms")
async def endpoint_sms_page(request: Request, session: SessionDep, ctx: CtxDep,
                            principal: PrincipalDep, endpoint_id: uuid.UUID) -> Response:
    endpoint = await admin.get_for(session, principal=principal, endpoint_id=endpoint_id)
    row = await sms_service.endpoint_sms(session, endpoint)
    number_id = await sms_service.sending_number_id(session, endpoint)
    values = {
        "enabled": row.enabled, "confirmations_enabled": row.confirmations_enabled,
        "reminder_offsets": sms_service.format_offsets(list(row.reminder_offsets_minutes or [])),
        "quiet_hours_start": row.quiet_hours_start or "",
        "quiet_hours_end": row.quiet_hours_end or "",
        "default_language": row.default_language,
        "rate_limit_per_minute": row.rate_limit_per_minute,
        "sms_transliterate": row.sms_transliterate,
        "number_id": str(number_id) if number_id else "",
    }
    return await _endpoint_sms_form(request, session, ctx, principal, endpoint, values)


async def _endpoint_sms_form(request: Request, session: Any, ctx: Any, principal: Principal,
                             endpoint: Any, values: dict[str, Any],
                             error: OpenVisitError | None = None) -> Response:
    org = await sms_service.organisation_of(session, principal)
    numbers = [n for n in await numbers_service.list_numbers(session, principal=principal)
               if n.state == "active"]
    return render(request, "portal/endpoint_sms.html", {
        "endpoint": endpoint, "values": values, "error": error,
        "number_options": [(str(n.id), format_phone(n.e164)) for n in numbers],
        "consents": sms_service.consents_given(org), "languages": i18n.LANGUAGES,
        "fallback_sender": ctx.settings.sms_sender,
    }, principal=principal, status_code=error.status_code if error else 200)


@router.post("/portal/endpoints/{endpoint_id}/sms")
async def endpoint_sms_save(request: Request, session: SessionDep, ctx: CtxDep,
                            principal: PrincipalDep, endpoint_id: uuid.UUID) -> Response:
    endpoint = await admin.get_for(session, principal=principal, endpoint_id=endpoint_id)
    form = await request.form()
    values: dict[str, Any] = {**dict(form), "enabled": form_bool(form, "enabled"),
                              "confirmations_enabled": form_bool(form, "confirmations_enabled"),
                              "sms_transliterate": form_bool(form, "sms_transliterate")}
    try:
        rate = form_text(form, "rate_limit_per_minute") or "60"
        if not rate.isdigit():
            raise InvalidInput("The send rate is a whole number of messages per minute.",
                               details={"field": "rate_limit_per_minute"})
        number_text = form_text(form, "number_id")
        data = sms_service.EndpointSmsInput(
            enabled=values["enabled"], confirmations_enabled=values["confirmations_enabled"],
            number_id=uuid.UUID(number_text) if number_text else None,
            reminder_offsets=sms_service.parse_offsets(form_text(form, "reminder_offsets")),
            quiet_hours_start=form_text(form, "quiet_hours_start") or None,
            quiet_hours_end=form_text(form, "quiet_hours_end") or None,
            default_language=form_text(form, "default_language") or "en",
            rate_limit_per_minute=int(rate), sms_transliterate=values["sms_transliterate"])
        async with savepoint(session):
            await sms_service.configure_endpoint_sms(session, principal=principal,
                                                     settings=ctx.settings, endpoint=endpoint,
                                                     data=data)
    except OpenVisitError as exc:
        return await _endpoint_sms_form(request, session, ctx, principal, endpoint, values, exc)
    return see_other("/portal/sms?notice=sms_saved")

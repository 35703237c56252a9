"""JSON API of the SMS step (``/api/portal``): per-endpoint SMS, the consents, the numbers."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter

from openvisit.portal.endpoints import service as admin
from openvisit.portal.schemas import (
    ConsentsIn,
    EndpointSmsIO,
    NumberLinksIn,
    NumberOut,
    NumberRegisterIn,
    OrganisationOut,
)
from openvisit.portal.sms import numbers as numbers_service
from openvisit.portal.sms import service as sms_service
from openvisit.portal.web import PrincipalDep
from openvisit.web.deps import CtxDep, SessionDep
from openvisit.web.schemas import error_responses

router = APIRouter(
    prefix="/api/portal",
    tags=["portal"],
    responses=error_responses(401, 403, 404, 409, 422, 429, 502),
)


@router.get("/endpoints/{endpoint_id}/sms", response_model=EndpointSmsIO)
async def endpoint_sms(endpoint_id: uuid.UUID, session: SessionDep,
                       principal: PrincipalDep) -> EndpointSmsIO:
    found = await admin.get_for(session, principal=principal, endpoint_id=endpoint_id)
    row = await sms_service.endpoint_sms(session, found)
    links = await numbers_service.links_by_number(session, principal=principal)
    number = next((n for n, es in links.items() if found.id in es), None)
    return EndpointSmsIO(
        enabled=row.enabled, number_id=number, confirmations_enabled=row.confirmations_enabled,
        reminder_offsets_minutes=list(row.reminder_offsets_minutes or []),
        quiet_hours_start=row.quiet_hours_start, quiet_hours_end=row.quiet_hours_end,
        default_language=row.default_language, rate_limit_per_minute=row.rate_limit_per_minute,
        sms_transliterate=row.sms_transliterate)


@router.put("/endpoints/{endpoint_id}/sms", response_model=EndpointSmsIO)
async def endpoint_sms_put(endpoint_id: uuid.UUID, body: EndpointSmsIO, session: SessionDep,
                           ctx: CtxDep, principal: PrincipalDep) -> EndpointSmsIO:
    """Confirmations, reminder offsets, quiet hours and the sending number of one endpoint."""
    found = await admin.get_for(session, principal=principal, endpoint_id=endpoint_id)
    offsets = sms_service.parse_offsets(", ".join(str(m) for m in body.reminder_offsets_minutes))
    data = sms_service.EndpointSmsInput(**{**body.model_dump(exclude={"reminder_offsets_minutes"}),
                                           "reminder_offsets": offsets})
    await sms_service.configure_endpoint_sms(session, principal=principal, settings=ctx.settings,
                                             endpoint=found, data=data)
    return await endpoint_sms(endpoint_id, session, principal)


@router.put("/sms/consents", response_model=OrganisationOut)
async def consents(body: ConsentsIn, session: SessionDep,
                   principal: PrincipalDep) -> OrganisationOut:
    """Give or withdraw the two SMS consents (withdrawing turns SMS off everywhere)."""
    return OrganisationOut.of(await sms_service.set_consents(
        session, principal=principal, send=body.send, patients=body.patients))


async def _number_out(session: Any, principal: Any, number: Any) -> NumberOut:
    links = await numbers_service.links_by_number(session, principal=principal)
    return NumberOut.of(number, endpoint_ids=links.get(number.id, []))


@router.get("/numbers", response_model=list[NumberOut])
async def numbers(session: SessionDep, principal: PrincipalDep) -> list[NumberOut]:
    links = await numbers_service.links_by_number(session, principal=principal)
    return [NumberOut.of(n, endpoint_ids=links.get(n.id, []))
            for n in await numbers_service.list_numbers(session, principal=principal)]


@router.post("/numbers", response_model=NumberOut, status_code=202)
async def number_request(session: SessionDep, ctx: CtxDep,
                         principal: PrincipalDep) -> NumberOut:
    """Start provisioning a number (202); poll ``GET /numbers/{id}`` for ``progress``."""
    number = await numbers_service.request_number(session, app=ctx, principal=principal)
    return NumberOut.of(number, endpoint_ids=[])


@router.post("/numbers/register", response_model=NumberOut, status_code=201)
async def number_register(body: NumberRegisterIn, session: SessionDep, ctx: CtxDep,
                          principal: PrincipalDep) -> NumberOut:
    """Register a number the organisation already has at its SMS provider."""
    number = await numbers_service.register_existing(session, app=ctx, principal=principal,
                                                     text=body.e164)
    return NumberOut.of(number, endpoint_ids=[])


@router.get("/numbers/{number_id}", response_model=NumberOut)
async def number(number_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> NumberOut:
    found = await numbers_service.get_number(session, principal=principal, number_id=number_id)
    return await _number_out(session, principal, found)


@router.put("/numbers/{number_id}/endpoints", response_model=NumberOut)
async def number_links(number_id: uuid.UUID, body: NumberLinksIn, session: SessionDep,
                       principal: PrincipalDep) -> NumberOut:
    """Make the number serve exactly these endpoints."""
    await numbers_service.set_links(session, principal=principal, number_id=number_id,
                                    endpoint_ids=body.endpoint_ids)
    found = await numbers_service.get_number(session, principal=principal, number_id=number_id)
    return await _number_out(session, principal, found)


@router.delete("/numbers/{number_id}", status_code=204)
async def number_release(number_id: uuid.UUID, session: SessionDep,
                         principal: PrincipalDep) -> None:
    await numbers_service.release(session, principal=principal, number_id=number_id)

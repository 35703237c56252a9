"""JSON API (``/api/portal``) for hospitals that configure by code: organisation, endpoints,
live check, approval start, SMS, numbers, certificates and integration records.

Authenticate with ``Authorization: Bearer ovt_…`` (an API token from the portal) or the
portal's session cookie plus ``X-CSRF-Token`` on changes. Errors are
``{"error": {"code", "message", "details": {"field": …}}}``.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter

from openvisit.portal.endpoints import approval, certs
from openvisit.portal.endpoints import service as admin
from openvisit.portal.endpoints.service import EndpointInput
from openvisit.portal.records import service as records_service
from openvisit.portal.schemas import (
    ApprovalStartOut,
    CertificateIn,
    CertificateOut,
    CheckIn,
    CheckOut,
    ConsentsIn,
    EndpointIn,
    EndpointOut,
    EndpointPatch,
    EndpointSmsIO,
    MeOut,
    NumberLinksIn,
    NumberOut,
    NumberRegisterIn,
    OrganisationOut,
    OrganisationPatch,
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


@router.get("/me", response_model=MeOut)
async def me(session: SessionDep, principal: PrincipalDep) -> MeOut:
    """Who is calling, with which roles (and the CSRF token for cookie sessions)."""
    org = await sms_service.organisation_of(session, principal)
    return MeOut(organisation_id=org.id, organisation_name=org.display_name,
                 display=principal.display, roles=sorted(principal.roles),
                 via=principal.via,
                 csrf_token=principal.csrf_token)


@router.get("/organisation", response_model=OrganisationOut)
async def organisation(session: SessionDep, principal: PrincipalDep) -> OrganisationOut:
    return OrganisationOut.of(await sms_service.organisation_of(session, principal))


@router.patch("/organisation", response_model=OrganisationOut)
async def organisation_patch(body: OrganisationPatch, session: SessionDep, ctx: CtxDep,
                             principal: PrincipalDep) -> OrganisationOut:
    """Change name, data region, monthly allocation, phone region or time zone."""
    data = sms_service.OrganisationInput(**body.model_dump())
    return OrganisationOut.of(await sms_service.update_organisation(
        session, principal=principal, settings=ctx.settings, data=data))


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


@router.post("/endpoints/{endpoint_id}/approval", response_model=ApprovalStartOut)
async def approval_start(endpoint_id: uuid.UUID, ctx: CtxDep,
                         principal: PrincipalDep) -> ApprovalStartOut:
    """Start the approver's SMART sign-in; needs a person's portal session, not a token."""
    url = await approval.begin(app=ctx, principal=principal, endpoint_id=endpoint_id)
    return ApprovalStartOut(authorize_url=url)


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


@router.get("/certificates", response_model=list[CertificateOut])
async def certificates(session: SessionDep, principal: PrincipalDep) -> list[CertificateOut]:
    by_env = await certs.list_by_environment(session, principal=principal)
    return [CertificateOut.of(v.row, status=v.status) for views in by_env.values() for v in views]


@router.post("/certificates", response_model=CertificateOut, status_code=201)
async def certificate_upload(body: CertificateIn, session: SessionDep,
                             principal: PrincipalDep) -> CertificateOut:
    """Upload a public certificate (PEM or base64 DER) for one environment."""
    row = await certs.upload(session, principal=principal, environment=body.environment,
                             data=body.certificate.encode())
    return CertificateOut.of(row, status="valid")


@router.delete("/certificates/{certificate_id}", status_code=204)
async def certificate_retire(certificate_id: uuid.UUID, session: SessionDep,
                             principal: PrincipalDep) -> None:
    await certs.retire(session, principal=principal, certificate_id=certificate_id)

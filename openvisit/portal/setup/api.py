"""JSON API of the set-up step (``/api/portal``): who is calling, and the organisation."""

from __future__ import annotations

from fastapi import APIRouter

from openvisit.portal.schemas import MeOut, OrganisationOut, OrganisationPatch
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
